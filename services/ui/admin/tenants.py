"""Admin API: tenants (create, list, get, update, disable). Tenants are disabled, never deleted."""

from __future__ import annotations

import enum
import logging
from typing import Any

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from services.common.db import Database
from services.ui.admin.api import (
    ApiError,
    Metadata,
    Name,
    TenantId,
    is_tenant_id,
    iso,
    json_response,
    page,
    query_choice,
    read_json,
)
from services.ui.admin.auth import actor
from services.ui.admin.notify import CredentialAction, CredentialNotifier

__all__ = ["TenantStatus", "TenantsApi", "tenant_view"]

log = logging.getLogger("pulse.ui.admin.tenants")


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class CreateTenant(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tenant_id: TenantId
    name: Name
    metadata: Metadata = {}


class UpdateTenant(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    metadata: Metadata | msgspec.UnsetType = msgspec.UNSET
    status: TenantStatus | msgspec.UnsetType = msgspec.UNSET


_COLUMNS = "tenant_id, name, status, metadata, created_at, updated_at"


def tenant_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "tenant_id": row["tenant_id"],
        "name": row["name"],
        "status": row["status"],
        "metadata": row["metadata"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def _not_found(tenant_id: str) -> ApiError:
    return ApiError(404, "tenant_not_found", f"no tenant {tenant_id!r}")


def _path_tenant(request: Request) -> str:
    tenant_id = str(request.path_params["tenant_id"])
    if not is_tenant_id(tenant_id):
        raise _not_found(tenant_id)
    return tenant_id


class TenantsApi:
    def __init__(self, db: Database, notifier: CredentialNotifier) -> None:
        self.db = db
        self.notifier = notifier

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/tenants", self.create, methods=["POST"]),
            Route("/tenants", self.index, methods=["GET"]),
            Route("/tenants/{tenant_id}", self.get, methods=["GET"]),
            Route("/tenants/{tenant_id}", self.update, methods=["PATCH"]),
            Route("/tenants/{tenant_id}/disable", self.disable, methods=["POST"]),
        ]

    async def create(self, request: Request) -> Response:
        body = await read_json(request, CreateTenant)
        detail = {"name": body.name}
        async with self.db.admin(
            actor(request), "tenant.create", target_tenant_id=body.tenant_id, detail=detail
        ) as conn:
            row = await conn.fetchrow(
                f"""INSERT INTO tenants (tenant_id, name, metadata) VALUES ($1, $2, $3)
                    ON CONFLICT (tenant_id) DO NOTHING RETURNING {_COLUMNS}""",
                body.tenant_id,
                body.name,
                body.metadata,
            )
            if row is None:
                raise ApiError(409, "tenant_exists", f"tenant {body.tenant_id!r} already exists")
        log.info("tenant created", extra={"tenant_id": body.tenant_id, "actor": actor(request)})
        return json_response(tenant_view(row), 201)

    async def index(self, request: Request) -> Response:
        paging = page(request)
        status = query_choice(request, "status", TenantStatus)
        detail = {"status": status, "limit": paging.limit, "offset": paging.offset}
        async with self.db.admin(actor(request), "tenant.list", detail=detail) as conn:
            total = await conn.fetchval("SELECT count(*) FROM tenants WHERE $1::text IS NULL OR status = $1", status)
            rows = await conn.fetch(
                f"""SELECT {_COLUMNS} FROM tenants WHERE $1::text IS NULL OR status = $1
                    ORDER BY tenant_id LIMIT $2 OFFSET $3""",
                status,
                paging.limit,
                paging.offset,
            )
        return json_response(
            {"items": [tenant_view(r) for r in rows], "total": total, "limit": paging.limit, "offset": paging.offset}
        )

    async def get(self, request: Request) -> Response:
        tenant_id = _path_tenant(request)
        async with self.db.admin(actor(request), "tenant.get", target_tenant_id=tenant_id) as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM tenants WHERE tenant_id = $1", tenant_id)
            if row is None:
                raise _not_found(tenant_id)
        return json_response(tenant_view(row))

    async def update(self, request: Request) -> Response:
        tenant_id = _path_tenant(request)
        body = await read_json(request, UpdateTenant)
        changes: dict[str, Any] = {
            name: value
            for name in ("name", "metadata", "status")
            if (value := getattr(body, name)) is not msgspec.UNSET
        }
        detail = {k: v for k, v in changes.items() if k != "metadata"} | {"fields": sorted(changes)}
        return await self._change(request, tenant_id, "tenant.update", changes, detail)

    async def disable(self, request: Request) -> Response:
        tenant_id = _path_tenant(request)
        return await self._change(request, tenant_id, "tenant.disable", {"status": TenantStatus.DISABLED}, {})

    async def _change(
        self, request: Request, tenant_id: str, action: str, changes: dict[str, Any], detail: dict[str, Any]
    ) -> Response:
        async with self.db.admin(actor(request), action, target_tenant_id=tenant_id, detail=detail) as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM tenants WHERE tenant_id = $1 FOR UPDATE", tenant_id)
            if row is None:
                raise _not_found(tenant_id)
            before = row["status"]
            if changes:
                # column names come from the fixed list above, never from the request
                sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(changes, start=2))
                row = await conn.fetchrow(
                    f"UPDATE tenants SET {sets} WHERE tenant_id = $1 RETURNING {_COLUMNS}",
                    tenant_id,
                    *(str(v) if isinstance(v, TenantStatus) else v for v in changes.values()),
                )
                assert row is not None
            status_changed = row["status"] != before
            devices: list[str] = []
            if status_changed:
                # devices whose credentials ingest may hold: tell it to look again
                rows = await conn.fetch(
                    "SELECT device_id FROM devices WHERE tenant_id = $1 AND status = 'active'", tenant_id
                )
                devices = [r["device_id"] for r in rows]
        if status_changed:
            disabled = row["status"] == TenantStatus.DISABLED
            log.info(
                "tenant disabled" if disabled else "tenant enabled",
                extra={"tenant_id": tenant_id, "actor": actor(request), "active_devices": len(devices)},
            )
            notice = CredentialAction.TENANT_DISABLE if disabled else CredentialAction.TENANT_ENABLE
            await self.notifier.publish(tenant_id, devices, notice)
        elif changes:
            log.info(
                "tenant updated", extra={"tenant_id": tenant_id, "actor": actor(request), "fields": sorted(changes)}
            )
        return json_response(tenant_view(row))
