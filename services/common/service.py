"""The `main()` every service shares: settings, JSON logs, the start-up line, run until SIGTERM."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.common import __version__
from services.common.config import CommonSettings, ConfigError, load
from services.common.lifecycle import run_main
from services.common.logging import setup_logging

__all__ = ["service_main"]

S = TypeVar("S", bound=CommonSettings)


def service_main(name: str, settings_cls: type[S], run: Callable[[S, asyncio.Event], Awaitable[None]]) -> None:
    """Load `settings_cls` (exit 2 naming every bad variable), log one start-up line with the
    version, configuration (no secrets) and address, then `run(settings, stop)` until SIGTERM."""
    setup_logging(name)
    log = logging.getLogger(f"pulse.{name}")
    try:
        settings = load(settings_cls)
    except ConfigError as exc:
        log.error(str(exc), extra={"problems": exc.problems})
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(2)
    setup_logging(name, settings.log_level)
    log.info(
        f"{name} starting",
        extra={
            "version": __version__,
            "config": settings.summary(),
            "listen": f"http://{settings.http_host}:{settings.http_port}",
        },
    )
    run_main(functools.partial(run, settings), grace_s=settings.shutdown_grace_s)
    log.info(f"{name} stopped")
