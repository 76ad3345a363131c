"""evaluator: device state, alert rules and alert lifecycle from pulse:observations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis
from starlette.applications import Starlette

from services.common.db import Database
from services.common.http import ops_routes, serve
from services.common.lifecycle import sleep_or_stop
from services.common.service import service_main
from services.evaluator.alerts import Outbox
from services.evaluator.engine import Evaluator
from services.evaluator.runner import ShardRunner
from services.evaluator.settings import EvaluatorSettings
from services.evaluator.sharding import Leases

__all__ = ["EvaluatorService", "build", "main"]

log = logging.getLogger("pulse.evaluator")


class EvaluatorService:
    """One evaluator process: the shards it owns, the alert outbox, health; `run(stop)`."""

    def __init__(self, settings: EvaluatorSettings, db: Database, r: aioredis.Redis, *, http: bool = True) -> None:
        self.settings = settings
        self.db = db
        self.redis = r
        self.outbox = Outbox(
            db, r, settings.streams.alerts, maxlen=settings.stream_maxlen, on_published=self._on_published
        )
        self.leases = (
            Leases(r, settings.consumer_name, settings.shards, ttl_ms=settings.lease_ttl_ms)
            if settings.shards > 1
            else None
        )
        self.runners: dict[int, tuple[ShardRunner, asyncio.Event, asyncio.Task[None]]] = {}
        self.http = http
        self.app = Starlette(routes=ops_routes({"postgres": db.ping, "redis": r.ping}))
        self.ready = asyncio.Event()

    @property
    def evaluator(self) -> Evaluator:
        """The evaluator of the lowest shard this process owns (the only one without sharding)."""
        return self.runners[min(self.runners)][0].evaluator

    @property
    def shards(self) -> set[int]:
        return set(self.runners)

    async def run(self, stop: asyncio.Event) -> None:
        await self.outbox.publish_pending()  # events a previous run committed but never sent
        side_stop = asyncio.Event()
        side = [asyncio.create_task(self.outbox.run(side_stop, self.settings.outbox_s))]
        if self.http:
            side.append(
                asyncio.create_task(serve(self.app, self.settings.http_host, self.settings.http_port, side_stop))
            )
        try:
            await self._rebalance()
            self.ready.set()
            while not stop.is_set():
                await sleep_or_stop(stop, self.settings.lease_ttl_ms / 3000)
                crashed = [t for _, _, t in self.runners.values() if t.done() and t.exception() is not None]
                if crashed:
                    raise crashed[0].exception()  # type: ignore[misc]
                if not stop.is_set():
                    await self._rebalance()
        except asyncio.CancelledError:  # killed: no drain; leases expire on their own
            tasks = [t for _, _, t in self.runners.values()] + side
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            if not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                await self._stop_shards(set(self.runners))
                if self.leases is not None:
                    await self.leases.release_all()
                side_stop.set()
                await asyncio.gather(*side, return_exceptions=True)

    async def _rebalance(self) -> None:
        if self.leases is None:
            if not self.runners:
                await self._start_shard(0)
            return
        try:
            acquired, lost = await self.leases.step()
        except aioredis.RedisError as exc:
            log.warning("shard leases not renewed", extra={"error": repr(exc)})
            return
        if lost:
            log.info("shards handed over", extra={"shards": sorted(lost)})
            await self._stop_shards(lost)
        for shard in sorted(acquired):
            log.info("shard acquired", extra={"shard": shard})
            await self._start_shard(shard)

    async def _start_shard(self, shard: int) -> None:
        runner = ShardRunner(self.settings, self.db, self.redis, self.outbox, shard)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        self.runners[shard] = (runner, stop, task)
        ready = asyncio.create_task(runner.ready.wait())
        await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if task.done():
            task.result()  # a failed start-up is a crash

    async def _stop_shards(self, shards: Iterable[int]) -> None:
        stopping = [self.runners.pop(s) for s in shards if s in self.runners]
        for _, stop, _ in stopping:
            stop.set()
        await asyncio.gather(*(t for _, _, t in stopping), return_exceptions=True)

    def _on_published(self, messages: Iterable[Mapping[str, Any]]) -> None:
        batch = list(messages)
        for runner, _, _ in self.runners.values():
            runner.evaluator.forget_resolved(batch)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.db.close()


async def build(settings: EvaluatorSettings, *, http: bool = True) -> EvaluatorService:
    db = await Database.connect(settings.database_url, max_size=settings.db_pool_max)
    r = aioredis.from_url(settings.redis_url)
    return EvaluatorService(settings, db, r, http=http)


async def run(settings: EvaluatorSettings, stop: asyncio.Event) -> None:
    service = await build(settings)
    try:
        await service.run(stop)
    finally:
        await service.close()


def main() -> None:
    service_main("evaluator", EvaluatorSettings, run)


if __name__ == "__main__":
    main()
