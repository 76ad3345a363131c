from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from services.devstack import RedisServer, free_port
from tests.conftest import DbUrls
from tests.delivery_worker import seed
from tests.delivery_worker.receiver import http_receiver
from tests.dispatcher.test_main import _status
from tests.ingest.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
async def test_worker_process_delivers_and_stops_cleanly_on_sigterm(
    db_urls: DbUrls, redis_server: RedisServer, admin_conn: asyncpg.Connection
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PULSE_DATABASE_URL": db_urls.service,
        "PULSE_REDIS_URL": redis_server.url(),
        "PULSE_HTTP_HOST": "127.0.0.1",
        "PULSE_HTTP_PORT": str(port),
        "PULSE_DB_POOL_MAX": "2",
        "PULSE_DELIVERY_ALLOW_CIDRS": "127.0.0.0/8",
        "PULSE_DELIVERY_POLL_S": "0.2",
    }
    async with http_receiver() as receiver:
        job = await seed.job(admin_conn, await seed.integration(admin_conn, config={"url": receiver.url}))
        proc = subprocess.Popen([sys.executable, "-m", "services.delivery_worker"], cwd=ROOT, env=env)
        try:
            await eventually(lambda: _status(f"http://127.0.0.1:{port}/readyz"), lambda s: s == 200, 20)
            state = "SELECT state FROM delivery_jobs WHERE job_id = $1"
            await eventually(lambda: admin_conn.fetchval(state, job["job_id"]), lambda s: s == "DELIVERED", 10)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
