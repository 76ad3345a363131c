"""An ingest service running in-process against the session's real PostgreSQL, Redis and Mosquitto."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import asyncpg
import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from services.common.config import load
from services.common.credentials import hash_secret, new_device_token
from services.devstack import MosquittoServer, RedisServer, free_port
from services.ingest.__main__ import IngestService, build
from services.ingest.settings import IngestSettings
from tests.conftest import DbUrls
from tests.support import eventually

STREAM = "pulse:observations"


@dataclass
class Fleet:
    """Tenants and devices seeded for a test: tokens[(tenant, device)] is the device token."""

    tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    def token(self, tenant_id: str, device_id: str) -> str:
        return self.tokens[(tenant_id, device_id)]


async def seed(admin: asyncpg.Connection, fleet: Fleet, tenant_id: str, devices: dict[str, str | None]) -> None:
    """Tenant `tenant_id` with active devices {device_id: site_id}."""
    await admin.execute("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", tenant_id)
    for device_id, site_id in devices.items():
        token = new_device_token()
        await admin.execute(
            "INSERT INTO devices (tenant_id, device_id, site_id, status, token_hash, activated_at)"
            " VALUES ($1, $2, $3, 'active', $4, now())",
            tenant_id,
            device_id,
            site_id,
            hash_secret(token),
        )
        fleet.tokens[(tenant_id, device_id)] = token


@dataclass
class Ingest:
    service: IngestService
    base_url: str
    mqtt_url: str
    redis: aioredis.Redis
    fleet: Fleet
    admin: asyncpg.Connection

    def payload(
        self, tenant_id: str, device_id: str, /, *, site_id: str | None = "site-1", seq: int = 1, **extra: Any
    ) -> bytes:
        body: dict[str, Any] = {
            "site_id": site_id,
            "seq": seq,
            "provision_token": self.fleet.token(tenant_id, device_id),
            "metrics": {"temp_c": 21.5, "humidity": 40, "door_open": False},
        }
        body.update(extra)
        return msgspec.json.encode({k: v for k, v in body.items() if v is not None})

    async def observations(self) -> list[dict[str, Any]]:
        entries = await self.redis.xrange(STREAM)
        return [msgspec.json.decode(fields[b"data"]) for _id, fields in entries]

    async def wait_observations(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return await eventually(lambda: self.observations(), lambda obs: len(obs) >= n, timeout)

    async def quarantined(self) -> list[asyncpg.Record]:
        await self.service.quarantine.flush()
        return await self.admin.fetch("SELECT * FROM quarantine_events ORDER BY id")


def ingest_env(
    db_urls: DbUrls, redis_server: RedisServer, mqtt_server: MosquittoServer, **extra: str
) -> dict[str, str]:
    return {
        "PULSE_DATABASE_URL": db_urls.service,
        "PULSE_REDIS_URL": redis_server.url(),
        "PULSE_MQTT_URL": mqtt_server.url(),
        "PULSE_HTTP_HOST": "127.0.0.1",
        "PULSE_HTTP_PORT": str(free_port()),
        "PULSE_INGEST_MQTT_CLIENT_ID": f"ingest-test-{uuid.uuid4().hex[:8]}",
        "PULSE_INGEST_MQTT_SESSION_EXPIRY_S": "0",
        "PULSE_INGEST_SETTINGS_REFRESH_S": "0.2",
        "PULSE_INGEST_TELEMETRY_WRITER": "false",
        **extra,
    }


@asynccontextmanager
async def running_ingest(
    env: dict[str, str], admin: asyncpg.Connection, r: aioredis.Redis, fleet: Fleet
) -> AsyncIterator[Ingest]:
    settings = load(IngestSettings, {"PULSE_DB_POOL_MAX": "5", **env})
    service = await build(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    base_url = f"http://127.0.0.1:{settings.http_port}"
    try:
        await asyncio.wait_for(service.mqtt.connected.wait(), 10)
        async with httpx.AsyncClient() as client:
            await eventually(lambda: _healthy(client, base_url), bool, 10)
        yield Ingest(service, base_url, settings.mqtt_url, r, fleet, admin)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await service.close()


async def _healthy(client: httpx.AsyncClient, base_url: str) -> bool:
    try:
        return (await client.get(f"{base_url}/healthz")).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
async def fleet(admin_conn: asyncpg.Connection) -> Fleet:
    fleet = Fleet()
    await seed(admin_conn, fleet, "tenant-a", {"dev-1": "site-1", "dev-2": "site-1", "any-site": None})
    await seed(admin_conn, fleet, "tenant-b", {"dev-1": "site-9"})
    return fleet


@pytest.fixture
async def ingest(
    db_urls: DbUrls,
    redis_server: RedisServer,
    mqtt_server: MosquittoServer,
    admin_conn: asyncpg.Connection,
    redis_client: aioredis.Redis,
    fleet: Fleet,
) -> AsyncIterator[Ingest]:
    async with running_ingest(
        ingest_env(db_urls, redis_server, mqtt_server), admin_conn, redis_client, fleet
    ) as running:
        yield running


@asynccontextmanager
async def mqtt_client(url: str) -> AsyncIterator[aiomqtt.Client]:
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), identifier=f"dev-{uuid.uuid4().hex[:8]}") as client:
        yield client
