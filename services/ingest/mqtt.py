"""MQTT intake: QoS 1 with manual acks, so the broker's in-flight window is the backpressure.

A message is acked only after its observation is in Redis (or it was quarantined), so a
crash loses nothing: the persistent session (fixed client id, session expiry) gets the
unacked messages redelivered. MQTT 5 Receive Maximum bounds what the broker sends before it
waits for our acks — the buffer is bounded and never drops a message (the reference
platform's queue dropped when full).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import Histogram

from services.ingest.core import Ingestor
from services.ingest.reasons import Rejected
from services.ingest.settings import IngestSettings

__all__ = ["MqttIntake"]

log = logging.getLogger("pulse.ingest.mqtt")

LATENCY = Histogram(
    "pulse_ingest_mqtt_accept_seconds",
    "From MQTT receipt to the observation being in Redis",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


class MqttIntake:
    def __init__(self, ingestor: Ingestor, settings: IngestSettings) -> None:
        self.ingestor = ingestor
        self.settings = settings
        self.connected = asyncio.Event()
        self.received = 0

    def _client(self) -> aiomqtt.Client:
        url = urlsplit(self.settings.mqtt_url)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.ReceiveMaximum = self.settings.mqtt_receive_max
        props.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
        return aiomqtt.Client(
            url.hostname or "127.0.0.1",
            url.port or (8883 if url.scheme == "mqtts" else 1883),
            identifier=self.settings.mqtt_client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,  # keep the session: unacked QoS 1 messages survive a restart
            properties=props,
            username=self.settings.mqtt_username or url.username,
            password=self.settings.mqtt_password.get() if self.settings.mqtt_password else url.password,
            tls_params=aiomqtt.TLSParameters() if url.scheme == "mqtts" else None,
        )

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                client = self._client()
                ack = _manual_acks(client)  # before connecting: redelivered messages arrive at once
                async with client:
                    await client.subscribe(self.settings.subscription, qos=1)
                    log.info("mqtt subscribed", extra={"subscription": self.settings.subscription})
                    self.connected.set()
                    backoff = 0.5
                    reader = asyncio.ensure_future(self._read(client, ack))
                    stopper = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    stopper.cancel()
                    if not reader.done():
                        reader.cancel()  # stop intake; what is in hand is acked once published
                    await asyncio.gather(reader, return_exceptions=True)
                    if reader.done() and not reader.cancelled() and reader.exception() is not None:
                        raise reader.exception()  # type: ignore[misc]
                    await self._drain()
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                if stop.is_set():
                    break
                log.warning("mqtt connection lost; reconnecting", extra={"error": str(exc), "retry_s": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        self.connected.clear()

    async def _drain(self, timeout_s: float = 10.0) -> None:
        """Wait until the publisher has flushed what was accepted, so those acks go out."""
        deadline = time.monotonic() + timeout_s
        while self.ingestor.publisher.backlog and time.monotonic() < deadline:  # noqa: ASYNC110 - brief poll at shutdown
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)  # let the done-callbacks send their acks

    async def _read(self, client: aiomqtt.Client, ack: Callable[[int, int], None]) -> None:
        ingest = self.ingestor.from_mqtt
        async for message in client.messages:
            self.received += 1
            mid, qos = message.mid, message.qos
            received = time.perf_counter()
            payload = message.payload
            body = payload if isinstance(payload, bytes) else str(payload or "").encode()
            try:
                _, published = await ingest(message.topic.value, body)
            except Rejected:
                ack(mid, qos)  # quarantined: recorded, nothing to redeliver
                continue

            def done(fut: asyncio.Future[None], mid: int = mid, qos: int = qos, t0: float = received) -> None:
                if not fut.cancelled() and fut.exception() is None:
                    ack(mid, qos)
                    LATENCY.observe(time.perf_counter() - t0)

            published.add_done_callback(done)


def _manual_acks(client: aiomqtt.Client) -> Callable[[int, int], None]:
    """Turn on paho's manual acks under aiomqtt (which does not expose them) and return ack()."""
    paho = client._client
    paho.manual_ack_set(True)

    def ack(mid: int, qos: int) -> None:
        if qos > 0:
            paho.ack(mid, qos)

    return ack
