"""One shard's evaluation: its Evaluator, its stream consumer and its timers, start to drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

import redis.asyncio as aioredis

from services.common import constants
from services.common.bus import ConsumerConfig, Entry, RetryLater, StreamConsumer, decode
from services.common.db import Database
from services.common.lifecycle import sleep_or_stop
from services.evaluator.alerts import Outbox
from services.evaluator.engine import Evaluator
from services.evaluator.settings import EvaluatorSettings
from services.evaluator.sharding import shard_stream

__all__ = ["ShardRunner"]

log = logging.getLogger("pulse.evaluator")


class ShardRunner:
    """Evaluates one observations stream (shard); `run(stop)` until stopped, then drains."""

    def __init__(
        self, settings: EvaluatorSettings, db: Database, r: aioredis.Redis, outbox: Outbox, shard: int = 0
    ) -> None:
        self.settings = settings
        self.redis = r
        self.shard = shard
        self.evaluator = Evaluator(settings, db, r, outbox, shard=shard)
        self.consumer = StreamConsumer(
            r,
            ConsumerConfig(
                stream=shard_stream(settings.streams.observations, shard, settings.shards),
                group=constants.GROUP_EVALUATOR,
                consumer=settings.consumer_name,
                batch_size=settings.batch_size,
                block_ms=500,
                claim_idle_ms=settings.claim_idle_ms,
                claim_interval_s=min(5.0, settings.claim_idle_ms / 2000),
            ),
            self.evaluator.handle,
        )
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        ev = self.evaluator
        await ev.load()
        await self._catch_up()
        ev.tick(time.time())  # devices that went silent while no evaluator ran
        await ev.commit()
        intake_stop = asyncio.Event()
        timers_stop = asyncio.Event()
        intake = [asyncio.create_task(self.consumer.run(intake_stop))]
        timers = [
            asyncio.create_task(self._ticker(timers_stop)),
            asyncio.create_task(_every(timers_stop, self.settings.flush_s, ev.flush, "flush")),
            asyncio.create_task(_every(timers_stop, self.settings.refresh_s, ev.refresh, "refresh")),
        ]
        self.ready.set()
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([stopper, *intake, *timers], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # killed: no drain, nothing outlives this task
            for task in [stopper, *intake, *timers]:
                task.cancel()
            await asyncio.gather(stopper, *intake, *timers, return_exceptions=True)
            raise
        crashed = [t for t in done if t is not stopper and t.exception() is not None]
        intake_stop.set()
        await asyncio.gather(*intake, return_exceptions=True)
        timers_stop.set()
        await asyncio.gather(*timers, return_exceptions=True)
        try:  # what is in hand reaches Postgres before exit
            await ev.commit()
            await ev.flush()
        except Exception as exc:
            log.warning("final flush failed", extra={"shard": self.shard, "error": repr(exc)})
        stopper.cancel()
        if crashed:
            raise crashed[0].exception()  # type: ignore[misc]

    async def _catch_up(self) -> None:
        """Handle what is already queued before the first staleness pass.

        Entries this consumer had in hand when it died, then the backlog, for at most
        `catchup_s`: a device whose messages are still queued is not declared STALE for them.
        """
        cfg = self.consumer.config
        await self.consumer.ensure_group()
        deadline = time.monotonic() + self.settings.catchup_s
        handled = 0
        for start in ("0", ">"):
            while time.monotonic() < deadline:
                reply = await self.redis.xreadgroup(cfg.group, cfg.consumer, {cfg.stream: start}, count=cfg.batch_size)
                resp = cast("list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None", reply)
                raw = resp[0][1] if resp else []
                entries = []
                for entry_id, fields in raw:
                    with contextlib.suppress(ValueError):  # malformed: left to the consumer's dead-lettering
                        entries.append(Entry(entry_id.decode(), decode(fields)))
                if not entries:
                    break
                try:
                    await self.evaluator.handle(entries)
                except RetryLater as exc:
                    log.warning("catch-up stopped; the consumer retries", extra={"error": str(exc)})
                    return
                await self.redis.xack(cfg.stream, cfg.group, *[e.id for e in entries])
                handled += len(entries)
        if handled:
            log.info("caught up with queued observations", extra={"shard": self.shard, "entries": handled})

    async def _ticker(self, stop: asyncio.Event) -> None:
        ev = self.evaluator
        while not stop.is_set():
            ev.tick(time.time())
            if ev.has_work():
                try:
                    await ev.commit()
                except RetryLater as exc:
                    log.warning("state transitions not written; retrying", extra={"error": str(exc)})
            await sleep_or_stop(stop, self.settings.tick_s)


async def _every(stop: asyncio.Event, period_s: float, job: Callable[[], Awaitable[None]], name: str) -> None:
    while not stop.is_set():
        await sleep_or_stop(stop, period_s)
        try:
            await job()
        except Exception as exc:  # Postgres down: the work stays queued, the next pass retries
            log.warning(f"{name} failed; retrying", extra={"error": repr(exc)})
