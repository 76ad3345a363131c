from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from services.devstack import RedisServer, free_port
from tests.conftest import DbUrls
from tests.delivery_worker import seed
from tests.dispatcher.conftest import publish_event, route
from tests.ingest.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]


async def _status(url: str) -> int:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(url)).status_code
    except httpx.TransportError:
        return 0


@pytest.mark.integration
async def test_dispatcher_process_creates_jobs_and_stops_cleanly_on_sigterm(
    db_urls: DbUrls, redis_server: RedisServer, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    integration_id = await seed.integration(admin_conn, config={"url": "http://127.0.0.1:9/"})
    await route(admin_conn, integration_id)
    alert_id = await seed.alert(admin_conn)
    port = free_port()
    env = {
        **os.environ,
        "PULSE_DATABASE_URL": db_urls.service,
        "PULSE_REDIS_URL": redis_server.url(),
        "PULSE_HTTP_HOST": "127.0.0.1",
        "PULSE_HTTP_PORT": str(port),
        "PULSE_DB_POOL_MAX": "2",
    }
    proc = subprocess.Popen([sys.executable, "-m", "services.dispatcher"], cwd=ROOT, env=env)
    try:
        await eventually(lambda: _status(f"http://127.0.0.1:{port}/readyz"), lambda s: s == 200, 20)
        await publish_event(admin_conn, redis_client, alert_id)
        await eventually(lambda: admin_conn.fetchval("SELECT count(*) FROM delivery_jobs"), lambda n: n == 1, 10)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
