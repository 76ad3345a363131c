from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

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


def test_pulse_dev_starts_servers_migrates_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    ports = {"pg": free_port(), "redis": free_port(), "mqtt": free_port()}
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
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "press Ctrl-C" in line:
            break
    output = "".join(lines)
    assert "press Ctrl-C" in output, output
    assert "migrations:" in output
    assert all(_listening(p) for p in ports.values())
    applied, login = asyncio.run(_inspect(ports["pg"]))
    assert applied == len(discover())  # every migration file is applied
    assert login == "pulse_service"  # the services' login role exists

    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "postgres stopped" in rest and "redis stopped" in rest and "mosquitto stopped" in rest
    assert not any(_listening(p) for p in ports.values())
