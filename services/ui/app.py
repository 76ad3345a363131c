"""The ui container's Starlette application: the admin API and the ops routes."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from services.common.db import Database
from services.common.http import CorrelationMiddleware, error_response, ops_routes
from services.ui.admin import admin_mount
from services.ui.admin.api import ApiError
from services.ui.settings import UiSettings

__all__ = ["create_app"]


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    response = error_response(exc.status, exc.code, exc.detail)
    response.headers.update(exc.headers)
    return response


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


async def _internal_error(_: Request, exc: Exception) -> Response:
    # the server logs the traceback (uvicorn.error); the client learns nothing about internals
    return error_response(500, "internal_error", "internal error; see the ui service log")


def create_app(
    settings: UiSettings, db: Database, redis: aioredis.Redis, *, clock: Callable[[], float] | None = None
) -> Starlette:
    """The application; `clock` (monotonic seconds) is for tests of the admin lockout."""
    routes = [
        admin_mount(settings, db, redis, clock=clock),
        *ops_routes({"postgres": db.ping, "redis": redis.ping}),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(CorrelationMiddleware)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error},
    )
