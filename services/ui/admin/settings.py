"""Admin API: platform settings — global defaults (tenant_id null) and per-tenant overrides.

Services read their keys from the `settings` table and reload them within seconds (ingest:
`ingest.mode`, `ingest.store_rejects`, `ingest.max_payload_bytes`, `ingest.rate_per_s`,
`ingest.burst`); a value a service cannot use is ignored there with a warning in its log.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from services.common.db import Database
from services.ui.admin.api import ApiError, TenantId, is_tenant_id, iso, json_response, read_json
from services.ui.admin.auth import actor

__all__ = ["SettingsApi"]

log = logging.getLogger("pulse.ui.admin.settings")

_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


class PutSetting(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    value: Any
    tenant_id: TenantId | None = None


def _view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "tenant_id": row["tenant_id"],
        "key": row["key"],
        "value": row["value"],
        "updated_at": iso(row["updated_at"]),
    }


def _key(request: Request) -> str:
    key = str(request.path_params["key"])
    if not _KEY.match(key) or len(key) > 128:
        raise ApiError(400, "invalid_request", "key must look like service.name (lowercase, dots)")
    return key


def _query_tenant(request: Request) -> str | None:
    tenant_id = request.query_params.get("tenant_id")
    if tenant_id is not None and not is_tenant_id(tenant_id):
        raise ApiError(400, "invalid_query", "tenant_id is not a valid tenant id")
    return tenant_id


class SettingsApi:
    def __init__(self, db: Database) -> None:
        self.db = db

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/settings", self.index, methods=["GET"]),
            Route("/settings/{key}", self.put, methods=["PUT"]),
            Route("/settings/{key}", self.delete, methods=["DELETE"]),
        ]

    async def index(self, request: Request) -> Response:
        """Global defaults, plus that tenant's overrides when ?tenant_id= is given (else all)."""
        tenant_id = _query_tenant(request)
        async with self.db.admin(actor(request), "settings.list", target_tenant_id=tenant_id) as conn:
            rows = await conn.fetch(
                "SELECT tenant_id, key, value, updated_at FROM settings"
                " WHERE $1::text IS NULL OR tenant_id IS NULL OR tenant_id = $1"
                " ORDER BY key, tenant_id NULLS FIRST",
                tenant_id,
            )
        return json_response({"items": [_view(r) for r in rows]})

    async def put(self, request: Request) -> Response:
        key = _key(request)
        body = await read_json(request, PutSetting)
        detail = {"key": key, "value": body.value}
        async with self.db.admin(
            actor(request), "settings.put", target_tenant_id=body.tenant_id, detail=detail
        ) as conn:
            if body.tenant_id is not None and not await conn.fetchval(
                "SELECT true FROM tenants WHERE tenant_id = $1", body.tenant_id
            ):
                raise ApiError(404, "tenant_not_found", f"no tenant {body.tenant_id!r}")
            row = await conn.fetchrow(
                "INSERT INTO settings (tenant_id, key, value) VALUES ($1, $2, $3)"
                " ON CONFLICT ON CONSTRAINT settings_key DO UPDATE SET value = EXCLUDED.value"
                " RETURNING tenant_id, key, value, updated_at",
                body.tenant_id,
                key,
                body.value,
            )
            assert row is not None  # an upsert always returns its row
        log.info("setting changed", extra={"key": key, "tenant_id": body.tenant_id, "actor": actor(request)})
        return json_response(_view(row))

    async def delete(self, request: Request) -> Response:
        key = _key(request)
        tenant_id = _query_tenant(request)
        async with self.db.admin(
            actor(request), "settings.delete", target_tenant_id=tenant_id, detail={"key": key}
        ) as conn:
            deleted = await conn.fetchval(
                "DELETE FROM settings WHERE key = $1 AND tenant_id IS NOT DISTINCT FROM $2 RETURNING true",
                key,
                tenant_id,
            )
        if not deleted:
            raise ApiError(
                404, "not_found", f"no setting {key!r} for {'tenant ' + tenant_id if tenant_id else 'global'}"
            )
        return Response(status_code=204)
