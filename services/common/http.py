"""HTTP basics every service serves: /healthz, /readyz, /metrics, and an embedded server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.logging import correlation

__all__ = ["CorrelationMiddleware", "ReadinessCheck", "error_response", "ops_routes", "serve", "serve_while"]

log = logging.getLogger("pulse.http")

ReadinessCheck = Callable[[], Awaitable[Any]]


class CorrelationMiddleware:
    """Tag each request's log lines with a correlation id: the caller's X-Request-ID (if sane)
    or a new one; echoed back in the X-Request-ID response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        cid = given if 0 < len(given) <= 128 and given.isprintable() else None

        with correlation(cid) as value:

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    MutableHeaders(scope=message).append("X-Request-ID", value)
                await send(message)

            await self.app(scope, receive, send_with_id)


def error_response(status: int, code: str, detail: str) -> JSONResponse:
    """The one error shape of every Pulse HTTP API: {"error": code, "detail": text}."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def ops_routes(
    checks: Mapping[str, ReadinessCheck],
    *,
    registry: CollectorRegistry = REGISTRY,
    timeout_s: float = 2.0,
) -> list[BaseRoute]:
    """/healthz: the process answers. /readyz: every dependency check passes in time."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def run_check(fn: ReadinessCheck) -> str:
        try:
            result = await asyncio.wait_for(fn(), timeout_s)
        except TimeoutError:
            return f"timeout after {timeout_s}s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return "ok" if result is not False else "not ready"

    async def readyz(_: Request) -> Response:
        names = list(checks)
        results = await asyncio.gather(*(run_check(checks[n]) for n in names))
        body = dict(zip(names, results, strict=True))
        ready = all(v == "ok" for v in results)
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": body}, 200 if ready else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # signals belong to the service's lifecycle (common.lifecycle), not to uvicorn
        yield


async def serve(app: Starlette, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve `app` until `stop` is set, then close listeners and finish open requests."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
    server = _Server(config)
    task = asyncio.ensure_future(server.serve())
    await stop.wait()
    server.should_exit = True
    await task


async def serve_while(app: Starlette, host: str, port: int, work: Awaitable[None]) -> None:
    """Serve `app` (health, metrics) for as long as `work` runs; the server stops after it."""
    http_stop = asyncio.Event()
    server = asyncio.ensure_future(serve(app, host, port, http_stop))
    try:
        await work
    finally:
        http_stop.set()
        await asyncio.gather(server, return_exceptions=True)
