"""`pulse dev`: the platform on this machine with real embedded servers, no Docker.

Starts PostgreSQL, Redis and Mosquitto under .cache/dev/, applies migrations, starts every
Pulse service that is built as a child process, and on Ctrl-C stops them all in reverse.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from services.common import constants
from services.common.migrations import migrate
from services.devstack.servers import MosquittoServer, PostgresServer, RedisServer

__all__ = ["DevPorts", "built_services", "is_built", "run_dev"]

DEV_DB = "pulse"


@dataclass(frozen=True)
class DevPorts:
    postgres: int = 55432
    redis: int = 56379
    mqtt: int = 51883
    http_base: int = 8080  # service n listens on http_base + n


def is_built(pkg: str) -> bool:
    """True when services/<pkg>/__main__.py exists in this build."""
    return (
        importlib.util.find_spec(f"services.{pkg}") is not None
        and importlib.util.find_spec(f"services.{pkg}.__main__") is not None
    )


def built_services() -> list[str]:
    """Service names whose package exists (later issues add them one by one)."""
    return [name for name, pkg in constants.SERVICES.items() if is_built(pkg)]


def _say(msg: str) -> None:
    print(f"[pulse dev] {msg}", flush=True)


def run_dev(root: Path, ports: DevPorts, *, services: list[str] | None = None) -> int:
    root.mkdir(parents=True, exist_ok=True)
    pg = PostgresServer(root / "postgres", ports.postgres)
    rd = RedisServer(root / "redis", ports.redis)
    mq = MosquittoServer(root / "mosquitto", ports.mqtt)
    started: list[PostgresServer | RedisServer | MosquittoServer] = []
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for server in (pg, rd, mq):
            t0 = time.monotonic()
            _say(f"starting {server.name} on 127.0.0.1:{server.port} ...")
            server.start()
            started.append(server)
            _say(f"{server.name} ready in {time.monotonic() - t0:.1f}s (log: {server.log})")
        pg.ensure_database(DEV_DB)
        applied = asyncio.run(migrate(pg.url("postgres", DEV_DB)))
        _say(
            f"migrations: {len(applied)} applied"
            + (f" ({', '.join(m.path.name for m in applied)})" if applied else ", schema up to date")
        )

        env = {
            **os.environ,
            "PULSE_MODE": "DEV",
            "PULSE_DATABASE_URL": pg.url("pulse_service", DEV_DB),
            "PULSE_REDIS_URL": rd.url(),
            "PULSE_MQTT_URL": mq.url(),
            "PULSE_TELEMETRY_BACKEND": "postgres",
        }
        names = built_services() if services is None else services
        for n, name in enumerate(names):
            port = ports.http_base + n
            proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{constants.SERVICES[name]}"],
                env={**env, "PULSE_HTTP_PORT": str(port)},
                start_new_session=True,
            )
            children.append((name, proc))
            _say(f"{name} started (pid {proc.pid}, http://127.0.0.1:{port})")
        _say("platform is up. Connect with:")
        for var in ("PULSE_DATABASE_URL", "PULSE_REDIS_URL", "PULSE_MQTT_URL"):
            _say(f"  {var}={env[var]}")
        if not names:
            _say("no Pulse services are built yet; the servers above are ready for them")
        _say("press Ctrl-C to stop")
        while not stopping:
            for name, proc in children:
                if proc.poll() is not None:
                    _say(f"{name} exited with {proc.returncode}; stopping the platform")
                    stopping = True
            time.sleep(0.2)
        return 0 if all(p.poll() in (None, 0) for _, p in children) else 1
    finally:
        _say("stopping ...")
        for _name, proc in reversed(children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(children):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            _say(f"{name} stopped")
        for server in reversed(started):
            server.stop()
            _say(f"{server.name} stopped")
