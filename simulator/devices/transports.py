"""How messages reach ingest: MQTT (one connection for the fleet), HTTP one per request, or HTTP batches.

Each transport records every message's fate in `Stats`: delivered (and, over HTTP, accepted or
refused with ingest's reason code) or an error kind when it could not be delivered at all.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ssl
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import httpx
import msgspec

from simulator.devices.config import FleetConfig, SimulatorError, TransportKind
from simulator.devices.device import Outgoing
from simulator.devices.report import Stats

__all__ = ["HttpBatchTransport", "HttpTransport", "MqttTransport", "Transport", "build_transport"]

_TIMEOUT_S = 10.0


class Transport(abc.ABC):
    """Connect once, `send` lists of messages concurrently, `close` at the end."""

    kind: TransportKind
    target: str
    linger_s = 0.0  # the scheduler may send messages this early to group them

    def __init__(self, stats: Stats, *, max_in_flight: int) -> None:
        self.stats = stats
        self._slots = asyncio.Semaphore(max_in_flight)

    @abc.abstractmethod
    async def connect(self, wait_s: float) -> None: ...

    @abc.abstractmethod
    async def send(self, messages: Sequence[Outgoing]) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class MqttTransport(Transport):
    """QoS 1 publishes over one connection; a lost connection is re-established in the background."""

    kind = TransportKind.MQTT

    def __init__(self, url: str, stats: Stats, *, max_in_flight: int) -> None:
        super().__init__(stats, max_in_flight=max_in_flight)
        self.target = url
        self._url = urlsplit(url)
        self._max_in_flight = max_in_flight
        self._client: aiomqtt.Client | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    def _new_client(self) -> aiomqtt.Client:
        secure = self._url.scheme == "mqtts"
        client = aiomqtt.Client(
            self._url.hostname or "127.0.0.1",
            self._url.port or (8883 if secure else 1883),
            identifier=f"pulse-sim-{uuid.uuid4().hex[:10]}",
            username=unquote(self._url.username) if self._url.username else None,
            password=unquote(self._url.password) if self._url.password else None,
            tls_context=ssl.create_default_context() if secure else None,
            max_inflight_messages=self._max_in_flight,
            timeout=_TIMEOUT_S,
        )
        # many publishes awaiting their PUBACK is the plan here, not a warning sign (bounded by _slots)
        client.pending_calls_threshold = self._max_in_flight + 1
        return client

    async def connect(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            client = self._new_client()
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as exc:
                if time.monotonic() >= deadline:
                    raise SimulatorError(
                        f"MQTT broker unreachable at {self.target} ({exc}); start one (`pulse dev` runs Mosquitto)"
                        ", pass --mqtt-url, or --wait SECONDS to wait for it"
                    ) from None
                await asyncio.sleep(0.5)
                continue
            self._client = client
            return

    async def send(self, messages: Sequence[Outgoing]) -> None:
        await asyncio.gather(*(self._publish(m) for m in messages))

    async def _publish(self, msg: Outgoing) -> None:
        async with self._slots:
            client = self._client
            if client is None:
                self.stats.error(msg, "NOT_CONNECTED")
                return
            try:
                await client.publish(msg.topic, msg.body(), qos=1, timeout=_TIMEOUT_S)
            except aiomqtt.MqttError:
                self.stats.error(msg, "MQTT_ERROR")
                self._lost(client)
                return
        self.stats.published(msg)

    def _lost(self, client: aiomqtt.Client) -> None:
        if self._client is client and not self._closed:
            self._client = None
            self._reconnecting = asyncio.create_task(self._reconnect(client))

    async def _reconnect(self, old: aiomqtt.Client) -> None:
        with contextlib.suppress(Exception):
            await old.__aexit__(None, None, None)
        backoff = 0.5
        while not self._closed:
            client = self._new_client()
            try:
                await client.__aenter__()
            except aiomqtt.MqttError:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._client = client
            return

    async def close(self) -> None:
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            await asyncio.gather(self._reconnecting, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)


class HttpTransport(Transport):
    """POST /ingest/v1/tenant/{tenant}/device/{device}/{msg_type}, one message per request."""

    kind = TransportKind.HTTP

    def __init__(self, url: str, stats: Stats, *, max_in_flight: int) -> None:
        super().__init__(stats, max_in_flight=max_in_flight)
        self.target = url
        limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
        self._http = httpx.AsyncClient(base_url=url, timeout=_TIMEOUT_S, limits=limits)

    async def connect(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                await self._http.get("/healthz")
                return
            except httpx.TransportError as exc:
                if time.monotonic() >= deadline:
                    raise SimulatorError(
                        f"ingest unreachable at {self.target} ({type(exc).__name__}); start it (`pulse dev`,"
                        " or `pulse run ingest`), pass --ingest-url, or --wait SECONDS to wait for it"
                    ) from None
                await asyncio.sleep(0.5)

    async def send(self, messages: Sequence[Outgoing]) -> None:
        await asyncio.gather(*(self._post_one(m) for m in messages))

    async def _post_one(self, msg: Outgoing) -> None:
        c = msg.creds
        path = f"/ingest/v1/tenant/{c.tenant_id}/device/{c.device_id}/{msg.msg_type}"
        headers = {"X-Provision-Token": msg.token, "Content-Type": "application/json"}
        async with self._slots:
            try:
                response = await self._http.post(path, content=msg.body(), headers=headers)
            except httpx.TimeoutException:
                self.stats.error(msg, "TIMEOUT")
                return
            except httpx.TransportError as exc:
                self.stats.error(msg, _transport_error(exc))
                return
        if response.status_code == 202:
            self.stats.accepted(msg)
        else:
            self.stats.rejected(msg, _reason(response))

    async def close(self) -> None:
        await self._http.aclose()


class HttpBatchTransport(HttpTransport):
    """POST /ingest/v1/batch with every message due at once; broken JSON cannot ride in a batch, so it goes alone."""

    kind = TransportKind.HTTP_BATCH

    def __init__(self, url: str, stats: Stats, *, max_in_flight: int, batch_size: int, linger_s: float) -> None:
        super().__init__(url, stats, max_in_flight=max_in_flight)
        self.batch_size = batch_size
        self.linger_s = linger_s

    async def send(self, messages: Sequence[Outgoing]) -> None:
        alone = [m for m in messages if m.raw is not None]
        batchable = [m for m in messages if m.raw is None]
        chunks = [batchable[i : i + self.batch_size] for i in range(0, len(batchable), self.batch_size)]
        await asyncio.gather(*(self._post_one(m) for m in alone), *(self._post_batch(c) for c in chunks))

    async def _post_batch(self, chunk: Sequence[Outgoing]) -> None:
        items = [
            {
                **(m.payload or {}),
                "tenant_id": m.creds.tenant_id,
                "device_id": m.creds.device_id,
                "msg_type": m.msg_type,
            }
            for m in chunk
        ]
        body = msgspec.json.encode({"messages": items})
        kind: str | None = None
        async with self._slots:
            try:
                response = await self._http.post(
                    "/ingest/v1/batch", content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.TimeoutException:
                kind = "TIMEOUT"
            except httpx.TransportError as exc:
                kind = _transport_error(exc)
        if kind is not None:
            for m in chunk:
                self.stats.error(m, kind)
            return
        results = _json(response).get("results")
        if not isinstance(results, list) or len(results) != len(chunk):
            reason = _reason(response)  # the whole batch was refused
            for m in chunk:
                self.stats.rejected(m, reason)
            return
        for result in results:
            m = chunk[int(result["index"])]
            if result.get("status") == "accepted":
                self.stats.accepted(m)
            else:
                self.stats.rejected(m, str(result.get("reason") or "REJECTED"))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _reason(response: httpx.Response) -> str:
    error = _json(response).get("error")
    return error if isinstance(error, str) else f"HTTP_{response.status_code}"


def _transport_error(exc: httpx.TransportError) -> str:
    return "CONNECT_ERROR" if isinstance(exc, httpx.ConnectError) else type(exc).__name__.upper()


def build_transport(config: FleetConfig, stats: Stats) -> Transport:
    if config.transport is TransportKind.MQTT:
        return MqttTransport(config.mqtt_url, stats, max_in_flight=config.max_in_flight)
    if config.transport is TransportKind.HTTP:
        return HttpTransport(config.ingest_url, stats, max_in_flight=config.http_connections)
    return HttpBatchTransport(
        config.ingest_url,
        stats,
        max_in_flight=config.http_connections,
        batch_size=config.batch_size,
        linger_s=config.batch_linger_s,
    )
