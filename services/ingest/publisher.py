"""Accepted observations onto `pulse:observations` in pipelined batches.

`add()` queues an encoded entry and returns the future of the batch it joins; the future
resolves once Redis has the entry (XADD done; a batch is one script call). While Redis is away the batch is retried with
backoff — nothing is dropped; callers wait (MQTT: the broker's in-flight window fills and it
stops sending; HTTP: the request times out with 503 and the device retries).
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from prometheus_client import Histogram

from services.common.bus import publish_encoded

__all__ = ["ObservationPublisher"]

log = logging.getLogger("pulse.ingest.publisher")

_BATCH = Histogram(
    "pulse_ingest_publish_batch_size", "Entries per publish round trip", buckets=(1, 10, 50, 100, 250, 500, 1000)
)


class ObservationPublisher:
    def __init__(self, r: aioredis.Redis, stream: str, *, maxlen: int, max_batch: int = 500) -> None:
        self._redis = r
        self._stream = stream
        self._maxlen = maxlen
        self._max_batch = max_batch
        self._items: list[bytes] = []
        self._future: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self.published = 0
        self.last_flush_at = 0.0

    def add(self, data: bytes) -> asyncio.Future[None]:
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        self._items.append(data)
        self._wake.set()
        return self._future

    @property
    def backlog(self) -> int:
        return len(self._items)

    async def _flush(self, items: list[bytes]) -> None:
        backoff = 0.1
        while True:
            try:
                await publish_encoded(self._redis, self._stream, items, maxlen=self._maxlen)
                return
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning("redis unavailable; retrying publish", extra={"entries": len(items), "error": str(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush until `stop` is set and nothing is left."""
        while True:
            if not self._items:
                if stop.is_set():
                    return
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            # everything queued so far forms one batch (a pipeline of up to max_batch per round trip)
            items, future = self._items, self._future
            self._items, self._future = [], None
            for start in range(0, len(items), self._max_batch):
                chunk = items[start : start + self._max_batch]
                await self._flush(chunk)
                _BATCH.observe(len(chunk))
            self.published += len(items)
            self.last_flush_at = time.monotonic()
            if future is not None and not future.done():
                future.set_result(None)
