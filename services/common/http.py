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
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

__all__ = ["ReadinessCheck", "error_response", "ops_routes", "serve"]

log = logging.getLogger("pulse.http")

ReadinessCheck = Callable[[], Awaitable[Any]]


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
