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
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from services.common import constants
from services.common.config import DEFAULT_ADMIN_KEY
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


# the ui and ingest keep the ports compose publishes (8080, 8081); the rest follow
_PORT_ORDER = ["ui", "ingest", "evaluator", "dispatcher", "delivery_worker", "ptp-consumer", "energy-ws", "ca-gateway"]


def _service_ports(names: list[str], base: int) -> dict[str, int]:
    return {name: base + _PORT_ORDER.index(name) for name in names}


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_ready(port: int, children: list[tuple[str, subprocess.Popen[bytes]]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for _, p in children):
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _say(msg: str) -> None:
    print(f"[pulse dev] {msg}", flush=True)


def run_dev(
    root: Path, ports: DevPorts, *, services: list[str] | None = None, fleet: tuple[int, int] | None = (1, 3)
) -> int:
    """Run until Ctrl-C; `fleet` = (tenants, devices per tenant) of the simulated fleet, None for none."""
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
            "PULSE_ADMIN_KEYS": DEFAULT_ADMIN_KEY,
            "PULSE_HTTP_HOST": "127.0.0.1",
        }
        names = built_services() if services is None else services
        service_ports = _service_ports(names, ports.http_base)
        logs = root / "logs"
        logs.mkdir(exist_ok=True)
        for name in names:
            port = service_ports[name]
            proc = _spawn(
                [sys.executable, "-m", f"services.{constants.SERVICES[name]}"],
                {**env, "PULSE_HTTP_PORT": str(port)},
                logs / f"{name}.log",
            )
            children.append((name, proc))
            _say(f"{name} started (pid {proc.pid}, http://127.0.0.1:{port}, log: {logs / f'{name}.log'})")
        for name in names:
            if not _wait_ready(service_ports[name], children, timeout=60):
                _say(f"{name} did not become ready; see {logs / f'{name}.log'}")
                stopping = True
        if fleet and not stopping and {"ui", "ingest"} <= set(names):
            sim = _spawn(
                [
                    sys.executable,
                    "-m",
                    "simulator.devices",
                    "--tenants",
                    str(fleet[0]),
                    "--devices",
                    str(fleet[1]),
                    "--rate",
                    "0.5",
                    "--duration",
                    "0",
                    "--wait",
                    "30",
                    "--admin-url",
                    f"http://127.0.0.1:{service_ports['ui']}",
                    "--ingest-url",
                    f"http://127.0.0.1:{service_ports['ingest']}",
                    "--mqtt-url",
                    mq.url(),
                    "--admin-key",
                    DEFAULT_ADMIN_KEY,
                ],
                env,
                logs / "simulator.log",
            )
            children.append(("simulator", sim))
            _say(f"simulated fleet started: {fleet[0]} tenant(s) x {fleet[1]} devices (log: {logs / 'simulator.log'})")
        _say("platform is up. Connect with:")
        for var in ("PULSE_DATABASE_URL", "PULSE_REDIS_URL", "PULSE_MQTT_URL"):
            _say(f"  {var}={env[var]}")
        if "ui" in service_ports:
            _say(f"  admin API: http://127.0.0.1:{service_ports['ui']}/api/admin  (X-Admin-Key: {DEFAULT_ADMIN_KEY})")
        if "ingest" in service_ports:
            _say(f"  device HTTP ingest: http://127.0.0.1:{service_ports['ingest']}/ingest/v1/...")
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
