"""Telemetry writer: the `telemetry-writer` group on pulse:observations, into the telemetry store.

Each batch of entries is decoded into Observations and written to the store in one call; the
bus acks the entries only after `write` returns, i.e. after the store confirmed them. While the
store is down (`StoreUnavailable`) the handler raises `RetryLater`: the entries stay pending,
no failure is counted, and the bus hands them out again (XAUTOCLAIM after claim_idle_ms) once
the store answers. Ingest keeps publishing meanwhile; the stream is the buffer. An entry that
is not a valid observation fails on its own (the bus isolates it) and is dead-lettered after
max_failures. Writes are idempotent, so entries handled twice are stored once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis
from prometheus_client import Counter

from services.common import constants
from services.common.bus import ConsumerConfig, Entry, RetryLater, StreamConsumer
from services.common.observations import Observation
from services.common.telemetry import StoreUnavailable, TelemetryStore

__all__ = ["TelemetryWriter", "WriterOptions", "decode_observations"]

log = logging.getLogger("pulse.ingest.writer")

_WRITTEN = Counter("pulse_telemetry_written_total", "Observations written to the telemetry store", ["backend"])
_UNAVAILABLE = Counter(
    "pulse_telemetry_store_unavailable_total", "Batches put back because the telemetry store was down", ["backend"]
)


@dataclass(frozen=True)
class WriterOptions:
    batch_size: int = 500
    block_ms: int = 1000
    claim_idle_ms: int = 30_000
    claim_interval_s: float = 5.0
    max_failures: int = 5
    # Every retry after an outage re-delivers the pending entries (XAUTOCLAIM); a long store
    # outage must not make them look like entries that crash their consumer.
    max_deliveries: int = 1000


def decode_observations(entries: list[Entry]) -> list[Observation]:
    """The entries as Observations; raises msgspec.ValidationError for an entry that is not one."""
    return [msgspec.convert(e.data, Observation) for e in entries]


class TelemetryWriter:
    """One consumer of the telemetry-writer group; `run(stop)` returns after `stop` is set."""

    def __init__(
        self,
        redis: aioredis.Redis,
        store: TelemetryStore,
        *,
        stream: str = constants.STREAM_OBSERVATIONS,
        consumer: str | None = None,
        options: WriterOptions | None = None,
    ) -> None:
        opts = options or WriterOptions()
        self.store = store
        self.written = 0
        self.unavailable = 0  # batches put back because the store was down
        self.config = ConsumerConfig(
            stream=stream,
            group=constants.GROUP_TELEMETRY_WRITER,
            consumer=consumer or f"{socket.gethostname()}-{os.getpid()}",
            batch_size=opts.batch_size,
            block_ms=opts.block_ms,
            claim_idle_ms=opts.claim_idle_ms,
            claim_interval_s=opts.claim_interval_s,
            max_failures=opts.max_failures,
            max_deliveries=opts.max_deliveries,
        )
        self.consumer = StreamConsumer(redis, self.config, self.handle)
        self._backend = str(store.backend)

    async def handle(self, entries: list[Entry]) -> None:
        observations = decode_observations(entries)
        try:
            await self.store.write(observations)
        except StoreUnavailable as exc:
            self.unavailable += 1
            _UNAVAILABLE.labels(self._backend).inc()
            raise RetryLater(str(exc)) from exc
        self.written += len(observations)
        _WRITTEN.labels(self._backend).inc(len(observations))

    async def run(self, stop: asyncio.Event) -> None:
        log.info("telemetry writer started", extra=self.summary())
        await self.consumer.run(stop)

    def summary(self) -> dict[str, Any]:
        return {
            "backend": self._backend,
            "stream": self.config.stream,
            "group": self.config.group,
            "consumer": self.config.consumer,
            "batch_size": self.config.batch_size,
        }
