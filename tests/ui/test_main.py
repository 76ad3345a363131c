"""`python -m services.ui` as its own process: start-up line, serving, SIGTERM drains and exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.common import __version__
from services.devstack import RedisServer, free_port
from tests.conftest import DbUrls
from tests.ui.conftest import KEY_A, KEY_B

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


async def test_ui_process_logs_its_start_up_serves_the_admin_api_and_stops_on_sigterm(
    db_urls: DbUrls, admin_conn: object, redis_server: RedisServer
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PULSE_MODE": "DEV",
        "PULSE_DATABASE_URL": db_urls.service,
        "PULSE_REDIS_URL": redis_server.url(),
        "PULSE_ADMIN_KEYS": f"{KEY_A},{KEY_B}",
        "PULSE_HTTP_HOST": "127.0.0.1",
        "PULSE_HTTP_PORT": str(port),
        "PULSE_UI_ACTIVATION_TTL_S": "900",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.ui"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(300):
                try:
                    ready = await client.get("/readyz")
                    break
                except httpx.ConnectError:
                    assert proc.poll() is None, proc.communicate()[1].decode()
                    await asyncio.sleep(0.05)
            assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
            created = await client.post(
                "/api/admin/tenants", json={"tenant_id": "acme", "name": "ACME"}, headers={"X-Admin-Key": KEY_B}
            )
            assert created.status_code == 201
            refused = await client.get("/api/admin/tenants", headers={"X-Admin-Key": "guess"})
            assert refused.status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in err.decode().splitlines()]
    assert all(line["service"] == "ui" for line in lines)
    start = next(line for line in lines if line["msg"] == "ui starting")
    assert start["version"] == __version__ and start["listen"] == f"http://127.0.0.1:{port}"
    assert start["config"]["admin_keys"] == 2 and start["config"]["activation_ttl_s"] == 900
    assert any(line["msg"] == "admin request refused" for line in lines)
    assert lines[-1]["msg"] == "ui stopped"
    for secret in (KEY_A, KEY_B, "guess"):
        assert secret not in err.decode()


def test_ui_refuses_to_start_with_bad_settings() -> None:
    env = {**os.environ, "PULSE_UI_ACTIVATION_TTL_S": "ten", "PULSE_MODE": "PROD"}
    proc = subprocess.run([sys.executable, "-m", "services.ui"], cwd=ROOT, env=env, capture_output=True, timeout=30)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "PULSE_UI_ACTIVATION_TTL_S" in err
