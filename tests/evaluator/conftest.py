"""An evaluator running in-process against the session's real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

from services.common import constants
from services.common.bus import publish_many
from services.common.config import load
from services.devstack import RedisServer
from services.evaluator.__main__ import EvaluatorService, build
from services.evaluator.settings import EvaluatorSettings
from tests import support
from tests.conftest import DbUrls

FAST = {
    "PULSE_EVALUATOR_STALE_AFTER_S": "1.0",
    "PULSE_EVALUATOR_OFFLINE_AFTER_S": "2.0",
    "PULSE_EVALUATOR_TICK_S": "0.05",
    "PULSE_EVALUATOR_FLUSH_S": "0.2",
    "PULSE_EVALUATOR_REFRESH_S": "0.2",
    "PULSE_EVALUATOR_OUTBOX_S": "0.1",
    "PULSE_EVALUATOR_CLAIM_IDLE_MS": "300",
    "PULSE_DB_POOL_MAX": "4",
}


async def eventually(fetch: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 8.0) -> Any:
    """tests.support.eventually with this suite's shorter default wait."""
    return await support.eventually(fetch, ok, timeout)


async def seed(admin: asyncpg.Connection, tenant_id: str, devices: dict[str, str | None]) -> None:
    """Tenant `tenant_id` with active devices {device_id: site_id}."""
    await admin.execute("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", tenant_id)
    for device_id, site_id in devices.items():
        await admin.execute(
            "INSERT INTO devices (tenant_id, device_id, site_id, status) VALUES ($1, $2, $3, 'active')",
            tenant_id,
            device_id,
            site_id,
        )


def observation(
    tenant_id: str,
    device_id: str,
    *,
    site_id: str | None = "site-1",
    source: str = "mqtt",
    kind: str = "telemetry",
    metrics: dict[str, float] | None = None,
    states: dict[str, str] | None = None,
    received_at: datetime | None = None,
) -> dict[str, Any]:
    at = (received_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return {
        "id": uuid.uuid4().hex,
        "tenant_id": tenant_id,
        "device_id": device_id,
        "site_id": site_id,
        "source": source,
        "kind": kind,
        "ts": at,
        "received_at": at,
        "metrics": metrics or {},
        "states": states or {},
        "tags": {},
    }


@dataclass
class Harness:
    env: dict[str, str]
    redis: aioredis.Redis
    admin: asyncpg.Connection

    async def send(self, *observations: dict[str, Any], stream: str = constants.STREAM_OBSERVATIONS) -> None:
        await publish_many(self.redis, stream, observations, maxlen=100_000)

    async def stream(self, name: str) -> list[dict[str, Any]]:
        return [msgspec.json.decode(f[b"data"]) for _id, f in await self.redis.xrange(name)]

    async def statuses(self, device_id: str | None = None) -> list[str]:
        return [
            m["status"]
            for m in await self.stream(constants.STREAM_DEVICE_STATUS)
            if device_id is None or m["device_id"] == device_id
        ]

    async def alert_messages(self, fingerprint: str | None = None) -> list[dict[str, Any]]:
        msgs = await self.stream(constants.STREAM_ALERTS)
        return [m for m in msgs if fingerprint is None or m["fingerprint"] == fingerprint]

    async def alert_statuses(self, fingerprint: str) -> list[str]:
        return [m["status"] for m in await self.alert_messages(fingerprint)]

    async def wait_alert_statuses(self, fingerprint: str, expected: list[str], timeout: float = 8.0) -> None:
        await eventually(lambda: self.alert_statuses(fingerprint), lambda s: s == expected, timeout)

    async def alerts(self, fingerprint: str) -> list[asyncpg.Record]:
        return await self.admin.fetch(
            "SELECT * FROM alerts WHERE fingerprint = $1 ORDER BY first_seen_at, created_at", fingerprint
        )

    async def add_rule(self, tenant_id: str, name: str, **columns: Any) -> str:
        cols = {"metric": "temp_c", "comparison": ">", "threshold": 30.0, **columns}
        names = ", ".join(["tenant_id", "name", *cols])
        params = ", ".join(f"${i}" for i in range(1, len(cols) + 3))
        rule_id = await self.admin.fetchval(
            f"INSERT INTO alert_rules ({names}) VALUES ({params}) RETURNING rule_id", tenant_id, name, *cols.values()
        )
        return str(rule_id)

    @asynccontextmanager
    async def running(self, **extra: str) -> AsyncIterator[EvaluatorService]:
        """An evaluator that stops gracefully at the end of the block."""
        run = await self.start(**extra)
        try:
            yield run.service
        finally:
            run.stop.set()
            await asyncio.wait_for(run.task, 15)
            await run.service.close()

    async def start(self, **extra: str) -> Running:
        settings = load(EvaluatorSettings, {**self.env, **extra})
        service = await build(settings, http=False)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        await eventually(lambda: service.ready.is_set() or task.done(), bool, 10)
        if task.done():
            task.result()
        return Running(service, task, stop)


@dataclass
class Running:
    service: EvaluatorService
    task: asyncio.Task[None]
    stop: asyncio.Event

    async def kill(self) -> None:
        """Abrupt end: the task is cancelled wherever it is; nothing is drained or flushed."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.service.close()


@pytest.fixture
async def harness(
    db_urls: DbUrls, admin_conn: asyncpg.Connection, redis_server: RedisServer, redis_client: aioredis.Redis
) -> Harness:
    env = {
        "PULSE_DATABASE_URL": db_urls.service,
        "PULSE_REDIS_URL": redis_server.url(),
        "PULSE_EVALUATOR_CONSUMER": "evaluator-test",
        **FAST,
    }
    return Harness(env, redis_client, admin_conn)
