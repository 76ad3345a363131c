"""delivery_worker: claim due delivery jobs from Postgres and deliver them through their channel."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.middleware import Middleware

from services.common.db import Database
from services.common.http import CorrelationMiddleware, ops_routes, serve_while
from services.common.service import service_main
from services.delivery_worker.channels import Channel, build_channels
from services.delivery_worker.settings import DeliverySettings
from services.delivery_worker.worker import Backoff, DeliveryWorker, WorkerConfig

__all__ = ["DeliveryService", "build", "main", "worker_config"]

log = logging.getLogger("pulse.delivery_worker")


def worker_config(settings: DeliverySettings) -> WorkerConfig:
    return WorkerConfig(
        worker_id=settings.worker_id,
        concurrency=settings.concurrency,
        claim_batch=settings.claim_batch,
        poll_s=settings.poll_s,
        lease_s=settings.lease_s,
        max_attempts=settings.max_attempts,
        backoff=Backoff(settings.backoff_base_s, settings.backoff_cap_s, settings.backoff_jitter),
        ui_base_url=settings.ui_base_url,
        wake_stream=settings.streams.deliveries,
    )


class DeliveryService:
    """The worker loop plus /healthz, /readyz, /metrics; `run(stop)` until stopped, then drain."""

    def __init__(
        self, settings: DeliverySettings, db: Database, r: aioredis.Redis, channels: dict[str, Channel]
    ) -> None:
        self.settings = settings
        self.db = db
        self.redis = r
        self.channels = channels
        self.worker = DeliveryWorker(db, channels, worker_config(settings), r)
        routes = ops_routes({"postgres": db.ping, "redis": r.ping})
        self.app = Starlette(routes=routes, middleware=[Middleware(CorrelationMiddleware)])

    async def run(self, stop: asyncio.Event) -> None:
        await serve_while(self.app, self.settings.http_host, self.settings.http_port, self.worker.run(stop))

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        await self.redis.aclose()
        await self.db.close()


async def build(settings: DeliverySettings) -> DeliveryService:
    db = await Database.connect(settings.database_url, max_size=settings.db_pool_max)
    r = aioredis.from_url(settings.redis_url)
    channels = build_channels(settings.policy, timeout_s=settings.timeout_s, max_connections=settings.concurrency)
    return DeliveryService(settings, db, r, channels)


async def run(settings: DeliverySettings, stop: asyncio.Event) -> None:
    service = await build(settings)
    try:
        await service.run(stop)
    finally:
        await service.close()
    w = service.worker
    log.info("delivery_worker totals", extra={"delivered": w.delivered, "failed": w.failed, "retried": w.retried})


def main() -> None:
    service_main("delivery_worker", DeliverySettings, run)


if __name__ == "__main__":
    main()
