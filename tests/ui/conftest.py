"""The ui app served by a real uvicorn server on a free port, over the test PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from services.common.config import Secret
from services.common.db import Database
from services.common.http import serve
from services.devstack import RedisServer, free_port
from services.ui.app import create_app
from services.ui.settings import UiSettings

# two keys configured at once, as during a rotation
KEY_A = "test-admin-key-alpha-3b9f0c2e71d4"
KEY_B = "test-admin-key-bravo-8a61d5f09e2c"


@dataclass
class FakeClock:
    """Monotonic seconds the test moves by hand (the admin lockout reads it)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class UiServer:
    url: str
    settings: UiSettings
    clock: FakeClock
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def client(self, key: str | None = KEY_A, **headers: str) -> httpx.AsyncClient:
        """An HTTP client to this server sending `key` as X-Admin-Key (none when None)."""
        if key is not None:
            headers["X-Admin-Key"] = key
        client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)
        self.clients.append(client)
        return client


StartUi = Callable[..., Awaitable[UiServer]]


@pytest.fixture
async def start_ui(db: Database, redis_server: RedisServer) -> AsyncIterator[StartUi]:
    """Start the ui app with settings overrides; stopped (and clients closed) after the test."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    servers: list[UiServer] = []
    redis_clients: list[aioredis.Redis] = []

    async def start(*, redis_url: str | None = None, **overrides: Any) -> UiServer:
        values: dict[str, Any] = {"admin_keys": [Secret(KEY_A), Secret(KEY_B)], "admin_lockout_s": 30.0}
        settings = UiSettings(**(values | overrides))
        redis = aioredis.from_url(redis_url or redis_server.url(), socket_connect_timeout=1)
        redis_clients.append(redis)
        clock = FakeClock()
        port = free_port()
        app = create_app(settings, db, redis, clock=clock)
        tasks.append(asyncio.create_task(serve(app, "127.0.0.1", port, stop)))
        server = UiServer(f"http://127.0.0.1:{port}", settings, clock)
        servers.append(server)
        async with httpx.AsyncClient() as probe:
            for _ in range(200):
                try:
                    await probe.get(f"{server.url}/healthz")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.02)
        return server

    yield start
    for server in servers:
        for client in server.clients:
            await client.aclose()
    stop.set()
    await asyncio.gather(*tasks)
    for redis in redis_clients:
        await redis.aclose()


@pytest.fixture
async def ui(start_ui: StartUi) -> UiServer:
    return await start_ui()


@pytest.fixture
async def api(ui: UiServer) -> httpx.AsyncClient:
    """A client of the default server that sends a valid admin key."""
    return ui.client()


async def next_message(pubsub: aioredis.client.PubSub, timeout: float = 5.0) -> dict[str, Any]:
    """The next pub/sub message's JSON data (fails the test after `timeout` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            data: dict[str, Any] = json.loads(message["data"])
            return data
    raise AssertionError(f"no message on the channel within {timeout}s")
