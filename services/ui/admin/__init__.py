"""The admin API under /api/admin: tenants, device provisioning and settings, behind X-Admin-Key."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis
from starlette.middleware import Middleware
from starlette.routing import Mount

from services.common.db import Database
from services.ui.admin.auth import AdminAuthMiddleware, AdminKeys, FailureLimiter
from services.ui.admin.devices import DevicesApi
from services.ui.admin.notify import CredentialNotifier
from services.ui.admin.settings import SettingsApi
from services.ui.admin.tenants import TenantsApi
from services.ui.settings import UiSettings

__all__ = ["PREFIX", "admin_mount"]

PREFIX = "/api/admin"


def admin_mount(
    settings: UiSettings, db: Database, redis: aioredis.Redis, *, clock: Callable[[], float] | None = None
) -> Mount:
    """Every admin route, each one behind the key check and the failure limiter."""
    notifier = CredentialNotifier(redis)
    limiter = FailureLimiter(
        settings.admin_max_failures,
        settings.admin_failure_window_s,
        settings.admin_lockout_s,
        clock=clock,
    )
    routes = [
        *TenantsApi(db, notifier).routes(),
        *DevicesApi(db, notifier, activation_ttl_s=settings.activation_ttl_s).routes(),
        *SettingsApi(db).routes(),
    ]
    auth = Middleware(AdminAuthMiddleware, keys=AdminKeys(settings.admin_keys), limiter=limiter)
    return Mount(PREFIX, routes=routes, middleware=[auth])
