from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from services.common.db import Database
from services.common.http import CorrelationMiddleware, ops_routes, serve
from services.common.logging import correlation_id
from services.devstack import free_port

pytestmark = pytest.mark.integration


async def test_health_ready_and_metrics_over_real_http(db: Database, redis_client: aioredis.Redis) -> None:
    down = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    registry = CollectorRegistry()
    Counter("pulse_test_things_total", "things", registry=registry).inc(3)
    checks = {"postgres": db.ping, "redis": redis_client.ping}
    app = Starlette(routes=ops_routes(checks, registry=registry))
    broken = Starlette(routes=ops_routes({**checks, "redis_replica": down.ping}, registry=registry))
    port, broken_port = free_port(), free_port()
    stop = asyncio.Event()
    servers = [
        asyncio.create_task(serve(app, "127.0.0.1", port, stop)),
        asyncio.create_task(serve(broken, "127.0.0.1", broken_port, stop)),
    ]
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    health = await client.get(f"http://127.0.0.1:{port}/healthz")
                    await client.get(f"http://127.0.0.1:{broken_port}/healthz")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            assert health.json() == {"status": "ok"}

            ready = await client.get(f"http://127.0.0.1:{port}/readyz")
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}

            not_ready = await client.get(f"http://127.0.0.1:{broken_port}/readyz")
            assert not_ready.status_code == 503
            body = not_ready.json()
            assert body["checks"]["postgres"] == "ok" and body["checks"]["redis_replica"].startswith("ConnectionError")

            metrics = await client.get(f"http://127.0.0.1:{port}/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            assert "pulse_test_things_total 3.0" in metrics.text
    finally:
        stop.set()
        await asyncio.gather(*servers)
        await down.aclose()


async def test_requests_carry_a_correlation_id_and_echo_it() -> None:
    seen: list[str | None] = []

    async def hello(_: Request) -> PlainTextResponse:
        seen.append(correlation_id())
        logging.getLogger("pulse.test").info("handled")  # this line carries the id (JsonFormatter)
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/", hello)], middleware=[Middleware(CorrelationMiddleware)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        given = await client.get("/", headers={"X-Request-ID": "req-abc"})
        fresh = await client.get("/")
    assert given.headers["x-request-id"] == "req-abc" and seen[0] == "req-abc"
    assert fresh.headers["x-request-id"] == seen[1] and len(seen[1] or "") == 32
