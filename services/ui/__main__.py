"""Run the ui container: `python -m services.ui` or `pulse run ui`."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys

import redis.asyncio as aioredis

from services.common import __version__
from services.common.config import ConfigError, load
from services.common.db import Database
from services.common.http import serve
from services.common.lifecycle import run_main
from services.common.logging import setup_logging
from services.ui.app import create_app
from services.ui.settings import UiSettings

__all__ = ["main", "run"]

log = logging.getLogger("pulse.ui")


async def run(settings: UiSettings, stop: asyncio.Event) -> None:
    """Connect, serve until `stop` is set, then close the pools."""
    db = await Database.connect(settings.database_url, max_size=settings.db_pool_max)
    redis = aioredis.from_url(settings.redis_url)
    try:
        app = create_app(settings, db, redis)
        log.info(
            "ui starting",
            extra={
                "version": __version__,
                "settings": settings.summary(),
                "listen": f"http://{settings.http_host}:{settings.http_port}",
            },
        )
        await serve(app, settings.http_host, settings.http_port, stop)
        log.info("ui stopped")
    finally:
        await redis.aclose()
        await db.close()


def main() -> None:
    try:
        settings = load(UiSettings)
    except ConfigError as exc:
        print(f"ui: {exc}", file=sys.stderr)
        sys.exit(2)
    setup_logging("ui", settings.log_level)
    run_main(functools.partial(run, settings), grace_s=settings.shutdown_grace_s)


if __name__ == "__main__":
    main()
