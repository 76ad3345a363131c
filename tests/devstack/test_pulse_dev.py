from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.common.migrations import discover
from services.devstack import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _inspect(pg_port: int) -> tuple[int, str]:
    admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pg_port}/pulse")
    service = await asyncpg.connect(f"postgresql://pulse_service@127.0.0.1:{pg_port}/pulse")
    try:
        return await admin.fetchval("SELECT count(*) FROM pulse_schema_migrations"), await service.fetchval(
            "SELECT current_user"
        )
    finally:
        await admin.close()
        await service.close()


def _two_free_ports() -> int:
    """A port p with p and p + 1 free (ui and ingest)."""
    for _ in range(50):
        base = free_port()
        if not _listening(base + 1):
            return base
    raise RuntimeError("no two consecutive free ports")


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def _observed_devices(redis_port: int) -> set[str]:
    r = aioredis.from_url(f"redis://127.0.0.1:{redis_port}/0")
    try:
        entries = await r.xrange("pulse:observations")
        return {json.loads(fields[b"data"])["device_id"] for _id, fields in entries}
    finally:
        await r.aclose()


def test_pulse_dev_runs_the_platform_with_a_fleet_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    ports = {"pg": free_port(), "redis": free_port(), "mqtt": free_port()}
    http = _two_free_ports()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "dev",
            "--data-dir",
            str(tmp_path / "dev"),
            "--pg-port",
            str(ports["pg"]),
            "--redis-port",
            str(ports["redis"]),
            "--mqtt-port",
            str(ports["mqtt"]),
            "--http-port",
            str(http),
            "--fleet-devices",
            "2",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "press Ctrl-C" in line:
            break
    output = "".join(lines)
    try:
        assert "press Ctrl-C" in output, output
        assert "migrations:" in output and "simulated fleet started" in output
        assert all(_listening(p) for p in ports.values())
        applied, login = asyncio.run(_inspect(ports["pg"]))
        assert applied == len(discover())  # every migration file is applied
        assert login == "pulse_service"  # the services' login role exists
        assert _get(f"http://127.0.0.1:{http}/readyz") == 200  # ui
        assert _get(f"http://127.0.0.1:{http + 1}/readyz") == 200  # ingest
        # the simulated fleet provisions itself through the admin API and its data flows in
        deadline = time.monotonic() + 30
        devices: set[str] = set()
        while time.monotonic() < deadline and len(devices) < 2:
            devices = asyncio.run(_observed_devices(ports["redis"]))
            time.sleep(0.5)
        assert len(devices) >= 2, (devices, (tmp_path / "dev" / "logs" / "simulator.log").read_text()[-2000:])
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, rest
    for name in ("simulator", "ingest", "ui", "postgres", "redis", "mosquitto"):
        assert f"{name} stopped" in rest, rest
    assert not any(_listening(p) for p in [*ports.values(), http, http + 1])
