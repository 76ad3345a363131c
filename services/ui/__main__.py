"""Run the ui container: `python -m services.ui` or `pulse run ui`."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from services.common.db import Database
from services.common.http import serve
from services.common.service import service_main
from services.ui.app import create_app
from services.ui.settings import UiSettings

__all__ = ["main", "run"]


async def run(settings: UiSettings, stop: asyncio.Event) -> None:
    """Connect, serve until `stop` is set, then close the pools."""
    db = await Database.connect(settings.database_url, max_size=settings.db_pool_max)
    redis = aioredis.from_url(settings.redis_url)
    try:
        app = create_app(settings, db, redis)
        await serve(app, settings.http_host, settings.http_port, stop)
    finally:
        await redis.aclose()
        await db.close()


def main() -> None:
    service_main("ui", UiSettings, run)


if __name__ == "__main__":
    main()
