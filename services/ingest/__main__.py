"""ingest: the only device ingress (MQTT + HTTP), publishing accepted observations."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from services.common.config import Mode
from services.common.db import Database
from services.common.http import CorrelationMiddleware, ops_routes, serve
from services.common.service import service_main
from services.common.telemetry import TelemetryStore, open_store
from services.ingest.activation import Activation
from services.ingest.core import Ingestor
from services.ingest.device_cache import DeviceCache
from services.ingest.http_api import http_routes
from services.ingest.mqtt import MqttIntake
from services.ingest.publisher import ObservationPublisher
from services.ingest.quarantine import Quarantine
from services.ingest.settings import IngestSettings
from services.ingest.tenant_settings import IngestPolicy, TenantSettings
from services.ingest.writer import TelemetryWriter

__all__ = ["IngestService", "build", "main", "run"]

log = logging.getLogger("pulse.ingest")


class IngestService:
    """Everything one ingest process runs; `run(stop)` until stopped, then drain and close."""

    def __init__(
        self, settings: IngestSettings, db: Database, r: aioredis.Redis, store: TelemetryStore | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.writer = TelemetryWriter(r, store, stream=settings.streams.observations) if store is not None else None
        self.db = db
        self.redis = r
        base = IngestPolicy(
            mode=settings.mode,
            store_rejects=settings.store_rejects,
            max_payload_bytes=settings.max_payload_bytes,
            rate_per_s=settings.rate_per_s,
            burst=settings.burst,
        )
        forced = Mode.PROD if settings.mode is Mode.PROD else None
        self.tenant_settings = TenantSettings(db, base, forced_mode=forced)
        self.devices = DeviceCache(db, ttl_s=settings.credential_ttl_s)
        self.publisher = ObservationPublisher(r, settings.streams.observations, maxlen=settings.stream_maxlen)
        self.quarantine = Quarantine(db)
        self.ingestor = Ingestor(
            settings=self.tenant_settings, devices=self.devices, publisher=self.publisher, quarantine=self.quarantine
        )
        self.mqtt = MqttIntake(self.ingestor, settings)
        self.activation = Activation(db, r)
        routes = [
            *http_routes(self.ingestor, max_batch=settings.http_max_batch, accept_timeout_s=settings.accept_timeout_s),
            Route("/api/device/activate", self.activation.endpoint, methods=["POST"]),
            *ops_routes({"postgres": db.ping, "redis": r.ping, "mqtt": self._mqtt_ready}),
        ]
        self.app = Starlette(routes=routes, middleware=[Middleware(CorrelationMiddleware)])

    async def _mqtt_ready(self) -> bool:
        return self.mqtt.connected.is_set()

    async def run(self, stop: asyncio.Event) -> None:
        await self.tenant_settings.refresh()
        intake_stop = asyncio.Event()  # intake stops first; publisher and quarantine drain after
        flush_stop = asyncio.Event()
        tasks = [
            asyncio.create_task(self.tenant_settings.run(intake_stop, self.settings.settings_refresh_s)),
            asyncio.create_task(self.devices.listen(self.redis, intake_stop)),
        ]
        await self._preload()
        tasks += [
            asyncio.create_task(self.mqtt.run(intake_stop)),
            asyncio.create_task(serve(self.app, self.settings.http_host, self.settings.http_port, intake_stop)),
        ]
        drains = [
            asyncio.create_task(self.publisher.run(flush_stop)),
            asyncio.create_task(self.quarantine.run(flush_stop)),
        ]
        tasks.extend(self._extra_tasks(intake_stop))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks, *drains], return_when=asyncio.FIRST_COMPLETED)
        crashed = [t for t in done if t is not stopper and t.exception() is not None]
        intake_stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        flush_stop.set()
        await asyncio.gather(*drains, return_exceptions=True)
        stopper.cancel()
        if crashed:
            raise crashed[0].exception()  # type: ignore[misc]

    async def _preload(self) -> None:
        """Warm the credentials cache once invalidations are heard (none can be missed)."""
        try:
            await asyncio.wait_for(self.devices.subscribed.wait(), 10)
            count = await self.devices.preload(self.settings.preload_devices)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            log.warning("device credentials not preloaded; loading on demand", extra={"error": repr(exc)})
            return
        log.info("device credentials preloaded", extra={"devices": count})

    def _extra_tasks(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self.writer.run(stop))] if self.writer is not None else []

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
        await self.redis.aclose()
        await self.db.close()


async def build(settings: IngestSettings) -> IngestService:
    db = await Database.connect(settings.database_url, max_size=settings.db_pool_max)
    r = aioredis.from_url(settings.redis_url)
    store = None
    if settings.telemetry_writer:  # its own pool: bulk writes never starve credential lookups
        store = await open_store(
            settings.telemetry_backend,
            database_url=settings.database_url,
            influxdb3_url=settings.influxdb3_url or None,
            influxdb3_token=settings.influxdb3_token.get() if settings.influxdb3_token else None,
        )
    return IngestService(settings, db, r, store)


async def run(settings: IngestSettings, stop: asyncio.Event) -> None:
    service = await build(settings)
    try:
        await service.run(stop)
    finally:
        await service.close()
    log.info("ingest totals", extra={"accepted": service.ingestor.accepted, "mqtt_received": service.mqtt.received})


def main() -> None:
    service_main("ingest", IngestSettings, run)


if __name__ == "__main__":
    main()
