"""dispatcher: consume pulse:alerts (group dispatcher), create delivery jobs, wake the workers."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.middleware import Middleware

from services.common import constants
from services.common.bus import ConsumerConfig, StreamConsumer
from services.common.db import Database
from services.common.http import CorrelationMiddleware, ops_routes, serve_while
from services.common.service import service_main
from services.dispatcher.dispatcher import Dispatcher
from services.dispatcher.settings import DispatcherSettings

__all__ = ["DispatcherService", "build", "main"]

log = logging.getLogger("pulse.dispatcher")


class DispatcherService:
    """The consumer plus /healthz, /readyz, /metrics; `run(stop)` until stopped, then drain."""

    def __init__(self, settings: DispatcherSettings, db: Database, r: aioredis.Redis) -> None:
        self.settings = settings
        self.db = db
        self.redis = r
        self.dispatcher = Dispatcher(
            db, r, deliveries_stream=settings.streams.deliveries, maxlen=settings.stream_maxlen
        )
        config = ConsumerConfig(
            stream=settings.streams.alerts,
            group=constants.GROUP_DISPATCHER,
            consumer=settings.consumer,
            batch_size=settings.batch_size,
            claim_idle_ms=settings.claim_idle_ms,
        )
        self.consumer = StreamConsumer(r, config, self.dispatcher.handle)
        routes = ops_routes({"postgres": db.ping, "redis": r.ping})
        self.app = Starlette(routes=routes, middleware=[Middleware(CorrelationMiddleware)])

    async def run(self, stop: asyncio.Event) -> None:
        await serve_while(self.app, self.settings.http_host, self.settings.http_port, self.consumer.run(stop))

    async def close(self) -> None:
        await self.redis.aclose()
        await self.db.close()


async def build(settings: DispatcherSettings) -> DispatcherService:
    db = await Database.connect(settings.database_url, max_size=settings.db_pool_max)
    return DispatcherService(settings, db, aioredis.from_url(settings.redis_url))


async def run(settings: DispatcherSettings, stop: asyncio.Event) -> None:
    service = await build(settings)
    try:
        await service.run(stop)
    finally:
        await service.close()
    d = service.dispatcher
    log.info("dispatcher totals", extra={"jobs_created": d.jobs_created, "throttled": d.throttled})


def main() -> None:
    service_main("dispatcher", DispatcherSettings, run)


if __name__ == "__main__":
    main()
