"""Helpers tests of several services share (fixtures stay in the conftest files)."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["eventually", "localhost_certificate"]


async def eventually(fetch: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    """Poll `fetch` (sync or async) until `ok(value)`; fail with the last value after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = fetch()
        if inspect.isawaitable(value):
            value = await value
        if ok(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.05)


def localhost_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the name `localhost` only (no IP), as (cert.pem, key.pem):
    a TLS check against a vetted IP address instead of the name would fail with it."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key
