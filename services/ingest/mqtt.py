"""MQTT intake: QoS 1 acknowledged only once handled, so the broker's in-flight window is the backpressure.

A message is acked (PUBACK) only after its observation is in Redis, or it was quarantined, so
a crash loses nothing: the persistent session (fixed client id, session expiry) gets the
unacked messages redelivered. MQTT 5 Receive Maximum bounds what the broker sends before it
waits for our acks — the buffer is bounded and never drops a message (the reference
platform's queue dropped when full).

The client is gmqtt rather than the aiomqtt used elsewhere: it parses packets straight from
the asyncio transport. Draining a queued QoS 1 backlog here, gmqtt read ~59,000 msg/s against
aiomqtt's ~7,000 (docs/ARCHITECTURE.md). gmqtt can ack after an async handler returns, but a
task per message costs more than all of ingest's checks; so QoS 1 publishes are taken over at
the packet handler (`_take_over_qos1`): a message whose device is cached is accepted without a
task, and one callback per published batch sends that batch's PUBACKs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import gmqtt
from gmqtt.mqtt.constants import UNLIMITED_RECONNECTS
from prometheus_client import Histogram

from services.common.lifecycle import sleep_or_stop
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
_ACK = 0  # PUBACK reason code "success"; also sent for quarantined messages (handled, not retried)


class MqttIntake:
    def __init__(self, ingestor: Ingestor, settings: IngestSettings) -> None:
        self.ingestor = ingestor
        self.settings = settings
        self.connected = asyncio.Event()
        self.received = 0
        self._accepting = True
        self._waiting: dict[asyncio.Future[None], list[int]] = {}  # published batch -> its mids
        self._slow: set[asyncio.Future[None]] = set()
        self._puback: Callable[[int], None] = lambda mid: None

    def _client(self) -> gmqtt.Client:
        s = self.settings
        client = gmqtt.Client(
            s.mqtt_client_id,
            clean_session=False,  # keep the session: unacked QoS 1 messages survive a restart
            optimistic_acknowledgement=False,  # never ack on receipt (QoS 1 is taken over below)
            session_expiry_interval=s.mqtt_session_expiry_s,
            receive_maximum=s.mqtt_receive_max,
            logger=logging.getLogger("pulse.ingest.gmqtt"),
        )
        client.set_config({"reconnect_retries": UNLIMITED_RECONNECTS, "reconnect_delay": 2})
        url = urlsplit(s.mqtt_url)
        username = s.mqtt_username or url.username
        if username:
            password = s.mqtt_password.get() if s.mqtt_password else url.password
            client.set_auth_credentials(username, password)
        client.on_message = self._on_message
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._puback = _take_over_qos1(client, self._on_qos1)
        return client

    def _on_connect(self, client: gmqtt.Client, flags: int, rc: int, properties: dict[str, Any]) -> None:
        # subscribing again is harmless and covers a broker that lost the session
        client.subscribe(self.settings.subscription, qos=1)
        log.info("mqtt connected and subscribed", extra={"subscription": self.settings.subscription})
        self.connected.set()

    def _on_disconnect(self, client: gmqtt.Client, packet: Any, exc: Exception | None = None) -> None:
        self.connected.clear()
        if self._accepting:
            log.warning("mqtt connection lost; reconnecting", extra={"error": str(exc) if exc else None})

    def _on_qos1(self, mid: int, topic: str, payload: bytes) -> None:
        """A QoS 1 publish; its PUBACK goes out once it is in Redis (or quarantined)."""
        self.received += 1
        try:
            accepted = self.ingestor.from_mqtt_nowait(topic, payload)
        except Rejected:
            self._puback(mid)  # quarantined: recorded, nothing to redeliver
            return
        if accepted is None:  # credentials not cached: load them off the hot path
            self._spawn(self._slow_path(mid, topic, payload))
            return
        self._ack_when_published(accepted[1], mid)

    async def _slow_path(self, mid: int, topic: str, payload: bytes) -> None:
        try:
            _, published = await self.ingestor.from_mqtt(topic, payload)
        except Rejected:
            self._puback(mid)
            return
        except Exception:
            log.exception("mqtt message not handled; left for redelivery", extra={"topic": topic})
            return
        self._ack_when_published(published, mid)

    def _ack_when_published(self, published: asyncio.Future[None], mid: int) -> None:
        mids = self._waiting.get(published)
        if mids is None:
            mids = self._waiting[published] = []
            started = time.perf_counter()
            published.add_done_callback(lambda fut: self._batch_done(fut, started))
        mids.append(mid)

    def _batch_done(self, published: asyncio.Future[None], started: float) -> None:
        mids = self._waiting.pop(published, [])
        if published.cancelled() or published.exception() is not None:
            return  # not in Redis: no acks, the broker redelivers
        LATENCY.observe(time.perf_counter() - started)
        for mid in mids:
            self._puback(mid)

    def _on_message(self, client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        """QoS 0 messages (QoS 1 ones go through _on_qos1): nothing to ack."""
        self.received += 1
        try:
            if self.ingestor.from_mqtt_nowait(topic, payload) is None:
                self._spawn(self._slow_path_qos0(topic, payload))
        except Rejected:
            pass
        return _ACK

    async def _slow_path_qos0(self, topic: str, payload: bytes) -> None:
        with contextlib.suppress(Rejected):
            await self.ingestor.from_mqtt(topic, payload)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._slow.add(task)  # keep a reference until done (the loop holds tasks weakly)
        task.add_done_callback(self._slow.discard)

    async def run(self, stop: asyncio.Event) -> None:
        url = urlsplit(self.settings.mqtt_url)
        secure = url.scheme == "mqtts"
        client = self._client()
        backoff = 0.5
        while not stop.is_set():
            try:
                await client.connect(
                    url.hostname or "127.0.0.1",
                    url.port or (8883 if secure else 1883),
                    ssl=ssl.create_default_context() if secure else False,
                )
                break
            except (OSError, gmqtt.mqtt.handler.MQTTConnectError) as exc:
                log.warning("mqtt broker unreachable; retrying", extra={"error": str(exc), "retry_s": backoff})
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 10.0)
        await stop.wait()
        # stop intake, let what is in hand reach Redis (its acks go out), then disconnect
        self._accepting = False
        await self._drain()
        if client.is_connected or self.connected.is_set():
            await client.disconnect()
        self.connected.clear()

    async def _drain(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._waiting and time.monotonic() < deadline:  # noqa: ASYNC110 - brief poll at shutdown
            await asyncio.sleep(0.01)


def _take_over_qos1(client: gmqtt.Client, handle: Callable[[int, str, bytes], None]) -> Callable[[int], None]:
    """Route QoS 1 publishes to `handle(mid, topic, payload)`; return puback(mid).

    gmqtt (pinned in constraints.txt) offers ack-after-handling only through a task per
    message; this replaces its QoS 1 handler on this client's package handler instance.
    tests/ingest/test_no_loss.py proves acks, redelivery and backpressure through it.
    """
    handler = client._package_handler

    def qos1(mid: int, packet: bytes, topic: str, properties: Any) -> None:
        handle(mid, topic, packet)

    handler._handle_qos_1_publish_packet = qos1

    def puback(mid: int) -> None:
        if client.is_connected:
            handler._send_puback(mid)

    return puback
