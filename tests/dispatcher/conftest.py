"""A dispatcher consuming the session Redis's pulse:alerts in-process, and alert-event helpers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
import redis.asyncio as aioredis

from services.common.bus import ConsumerConfig, StreamConsumer, publish
from services.common.db import Database
from services.dispatcher.dispatcher import Dispatcher
from tests.delivery_worker import seed
from tests.ingest.conftest import eventually

ALERTS = "pulse:alerts"
DELIVERIES = "pulse:deliveries"


@dataclass
class Running:
    dispatcher: Dispatcher
    consumer: StreamConsumer

    async def wait_handled(self, n: int, timeout: float = 10.0) -> None:
        await eventually(lambda: self.consumer.stats.handled, lambda h: h >= n, timeout)


@asynccontextmanager
async def running_dispatcher(db: Database, r: aioredis.Redis) -> AsyncIterator[Running]:
    dispatcher = Dispatcher(db, r, deliveries_stream=DELIVERIES, maxlen=10_000)
    config = ConsumerConfig(
        stream=ALERTS, group="dispatcher", consumer=f"test-{uuid.uuid4().hex[:6]}", block_ms=100, claim_idle_ms=500
    )
    consumer = StreamConsumer(r, config, dispatcher.handle)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield Running(dispatcher, consumer)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def publish_event(
    admin: asyncpg.Connection,
    r: aioredis.Redis,
    alert_id: uuid.UUID,
    status: str = "OPEN",
    *,
    event_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Write the alert_events row (unless given) and publish it on pulse:alerts, like the evaluator."""
    a = await admin.fetchrow("SELECT * FROM alerts WHERE alert_id = $1", alert_id)
    if event_id is None:
        event_id = await seed.event(admin, a["tenant_id"], alert_id, status, a["severity"])
    message: dict[str, Any] = {
        "event_id": str(event_id),
        "alert_id": str(alert_id),
        "tenant_id": a["tenant_id"],
        "device_id": a["device_id"],
        "alert_type": a["alert_type"],
        "severity": a["severity"],
        "status": status,
        "fingerprint": a["fingerprint"],
        "summary": a["summary"],
        "at": "2026-01-01T00:00:00+00:00",
    }
    await publish(r, ALERTS, message, maxlen=10_000)
    return event_id


async def announced(r: aioredis.Redis) -> list[str]:
    entries = await r.xrange(DELIVERIES)
    return [msgspec.json.decode(fields[b"data"])["job_id"] for _id, fields in entries]


async def route(admin: asyncpg.Connection, integration_id: uuid.UUID, **columns: Any) -> uuid.UUID:
    tenant_id = await admin.fetchval("SELECT tenant_id FROM integrations WHERE integration_id = $1", integration_id)
    names = ["tenant_id", "integration_id", *columns]
    params = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    route_id: uuid.UUID = await admin.fetchval(
        f"INSERT INTO integration_routes ({', '.join(names)}) VALUES ({params}) RETURNING route_id",
        tenant_id,
        integration_id,
        *columns.values(),
    )
    return route_id
