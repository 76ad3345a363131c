"""Admin API: device provisioning (register, activation codes, list, revoke, rotate token).

Device lifecycle (devices.status), with the transitions this API makes:

    provisioned --(ingest: POST /api/device/activate with the code)--> active
    provisioned | active --revoke--> revoked          (terminal)
    active --rotate-token--> active                    (new token, old one retired)
    provisioned | active --activate-code--> same status (fresh one-time code, old code void)

Tokens and activation codes are returned once, in the response that creates them, and stored
only as hashes (services.common.credentials). Revoke and rotate tell ingest to drop its cached
credentials for the device (CredentialNotifier).
"""

from __future__ import annotations

import enum
import logging
from typing import Annotated, Any

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from services.common.credentials import hash_secret, new_activation_code, new_device_token
from services.common.db import Conn, Database
from services.ui.admin.api import (
    ActivationTtl,
    ApiError,
    DeviceId,
    Metadata,
    SiteId,
    TenantId,
    is_device_id,
    is_tenant_id,
    iso,
    json_response,
    page,
    query_choice,
    read_json,
)
from services.ui.admin.auth import actor
from services.ui.admin.notify import CredentialAction, CredentialNotifier

__all__ = ["DeviceKind", "DeviceStatus", "DevicesApi", "device_view"]

log = logging.getLogger("pulse.ui.admin.devices")


class DeviceStatus(enum.StrEnum):
    PROVISIONED = "provisioned"
    ACTIVE = "active"
    REVOKED = "revoked"

    @property
    def may_get_activation_code(self) -> bool:
        return self is not DeviceStatus.REVOKED

    @property
    def may_rotate_token(self) -> bool:
        return self is DeviceStatus.ACTIVE


class DeviceKind(enum.StrEnum):
    IOT = "iot"
    PTP = "ptp"
    EPICS = "epics"
    ENERGY = "energy"


FwVersion = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Reason = Annotated[str, msgspec.Meta(max_length=500)]


class RegisterDevice(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tenant_id: TenantId
    device_id: DeviceId
    site_id: SiteId
    kind: DeviceKind = DeviceKind.IOT
    fw_version: FwVersion | None = None
    metadata: Metadata = {}
    activation_ttl_s: ActivationTtl | None = None  # default PULSE_UI_ACTIVATION_TTL_S


class IssueCode(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    activation_ttl_s: ActivationTtl | None = None


class Revoke(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Reason | None = None  # free text for the audit log


_COLUMNS = (
    "tenant_id, device_id, site_id, kind, status, fw_version, metadata, token_hash IS NOT NULL AS has_token,"
    " activation_code_hash IS NOT NULL AS has_code, activation_expires_at, activated_at, revoked_at,"
    " created_at, updated_at"
)


def device_view(row: asyncpg.Record) -> dict[str, Any]:
    """A device as the API shows it: never a hash, only whether a token / code exists."""
    return {
        "tenant_id": row["tenant_id"],
        "device_id": row["device_id"],
        "site_id": row["site_id"],
        "kind": row["kind"],
        "status": row["status"],
        "fw_version": row["fw_version"],
        "metadata": row["metadata"],
        "has_token": row["has_token"],
        "activation_pending": row["has_code"],
        "activation_expires_at": iso(row["activation_expires_at"]) if row["has_code"] else None,
        "activated_at": iso(row["activated_at"]),
        "revoked_at": iso(row["revoked_at"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def _path_device(request: Request) -> tuple[str, str]:
    tenant_id = str(request.path_params["tenant_id"])
    device_id = str(request.path_params["device_id"])
    if not (is_tenant_id(tenant_id) and is_device_id(device_id)):
        raise _device_not_found(tenant_id, device_id)
    return tenant_id, device_id


def _device_not_found(tenant_id: str, device_id: str) -> ApiError:
    return ApiError(404, "device_not_found", f"no device {device_id!r} in tenant {tenant_id!r}")


async def _lock_device(conn: Conn, tenant_id: str, device_id: str) -> tuple[DeviceStatus, str]:
    """Lock the device row for this transaction; its status and its tenant's status."""
    row = await conn.fetchrow(
        """SELECT d.status, t.status AS tenant_status FROM devices d JOIN tenants t USING (tenant_id)
            WHERE d.tenant_id = $1 AND d.device_id = $2 FOR UPDATE OF d""",
        tenant_id,
        device_id,
    )
    if row is None:
        raise _device_not_found(tenant_id, device_id)
    return DeviceStatus(row["status"]), row["tenant_status"]


def _require_active_tenant(tenant_id: str, tenant_status: str) -> None:
    if tenant_status != "active":
        raise ApiError(409, "tenant_disabled", f"tenant {tenant_id!r} is disabled")


class DevicesApi:
    def __init__(self, db: Database, notifier: CredentialNotifier, *, activation_ttl_s: int) -> None:
        self.db = db
        self.notifier = notifier
        self.activation_ttl_s = activation_ttl_s

    def routes(self) -> list[BaseRoute]:
        device = "/devices/{tenant_id}/{device_id}"
        return [
            Route("/devices", self.register, methods=["POST"]),
            Route("/devices", self.index, methods=["GET"]),
            Route(device, self.get, methods=["GET"]),
            Route(device + "/activate-code", self.activation_code, methods=["POST"]),
            Route(device + "/revoke", self.revoke, methods=["POST"]),
            Route(device + "/rotate-token", self.rotate_token, methods=["POST"]),
        ]

    async def register(self, request: Request) -> Response:
        body = await read_json(request, RegisterDevice)
        ttl = body.activation_ttl_s or self.activation_ttl_s
        detail = {"device_id": body.device_id, "site_id": body.site_id, "kind": body.kind.value}
        code = new_activation_code()
        async with self.db.admin(
            actor(request), "device.register", target_tenant_id=body.tenant_id, detail=detail
        ) as conn:
            tenant_status = await conn.fetchval(
                "SELECT status FROM tenants WHERE tenant_id = $1 FOR SHARE", body.tenant_id
            )
            if tenant_status is None:
                raise ApiError(404, "tenant_not_found", f"no tenant {body.tenant_id!r}")
            _require_active_tenant(body.tenant_id, tenant_status)
            row = await conn.fetchrow(
                f"""INSERT INTO devices (tenant_id, device_id, site_id, kind, fw_version, metadata,
                                         activation_code_hash, activation_expires_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))
                    ON CONFLICT (tenant_id, device_id) DO NOTHING
                    RETURNING {_COLUMNS}""",
                body.tenant_id,
                body.device_id,
                body.site_id,
                body.kind.value,
                body.fw_version,
                body.metadata,
                hash_secret(code),
                float(ttl),
            )
            if row is None:
                raise ApiError(
                    409, "device_exists", f"device {body.device_id!r} already exists in tenant {body.tenant_id!r}"
                )
        log.info(
            "device registered",
            extra={
                "tenant_id": body.tenant_id,
                "device_id": body.device_id,
                "site_id": body.site_id,
                "actor": actor(request),
            },
        )
        return json_response(self._with_code(row, code), 201, secret=True)

    async def activation_code(self, request: Request) -> Response:
        tenant_id, device_id = _path_device(request)
        body = await read_json(request, IssueCode, allow_empty=True)
        ttl = body.activation_ttl_s or self.activation_ttl_s
        detail = {"device_id": device_id, "activation_ttl_s": ttl}
        code = new_activation_code()
        async with self.db.admin(
            actor(request), "device.activate_code", target_tenant_id=tenant_id, detail=detail
        ) as conn:
            status, tenant_status = await _lock_device(conn, tenant_id, device_id)
            if not status.may_get_activation_code:
                raise ApiError(409, "device_revoked", f"device {device_id!r} is revoked")
            _require_active_tenant(tenant_id, tenant_status)
            # replacing the hash voids any earlier code
            row = await conn.fetchrow(
                f"""UPDATE devices SET activation_code_hash = $3,
                                       activation_expires_at = now() + make_interval(secs => $4)
                     WHERE tenant_id = $1 AND device_id = $2 RETURNING {_COLUMNS}""",
                tenant_id,
                device_id,
                hash_secret(code),
                float(ttl),
            )
            assert row is not None  # locked above
        log.info(
            "activation code issued", extra={"tenant_id": tenant_id, "device_id": device_id, "actor": actor(request)}
        )
        return json_response(self._with_code(row, code), secret=True)

    async def index(self, request: Request) -> Response:
        paging = page(request)
        filters = {
            "tenant_id": query_choice(request, "tenant_id"),
            "site_id": query_choice(request, "site_id"),
            "status": query_choice(request, "status", DeviceStatus),
            "kind": query_choice(request, "kind", DeviceKind),
        }
        where = " AND ".join(f"(${i}::text IS NULL OR {name} = ${i})" for i, name in enumerate(filters, start=1))
        args = list(filters.values())
        detail = {k: v for k, v in filters.items() if v is not None} | {"limit": paging.limit, "offset": paging.offset}
        async with self.db.admin(
            actor(request), "device.list", target_tenant_id=filters["tenant_id"], detail=detail
        ) as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM devices WHERE {where}", *args)
            rows = await conn.fetch(
                f"""SELECT {_COLUMNS} FROM devices WHERE {where}
                     ORDER BY tenant_id, device_id LIMIT $5 OFFSET $6""",
                *args,
                paging.limit,
                paging.offset,
            )
        return json_response(
            {"items": [device_view(r) for r in rows], "total": total, "limit": paging.limit, "offset": paging.offset}
        )

    async def get(self, request: Request) -> Response:
        tenant_id, device_id = _path_device(request)
        async with self.db.admin(
            actor(request), "device.get", target_tenant_id=tenant_id, detail={"device_id": device_id}
        ) as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM devices WHERE tenant_id = $1 AND device_id = $2", tenant_id, device_id
            )
            if row is None:
                raise _device_not_found(tenant_id, device_id)
            tokens = await conn.fetch(
                """SELECT issued_at, retired_at, reason FROM device_token_history
                    WHERE tenant_id = $1 AND device_id = $2 ORDER BY issued_at DESC, id DESC LIMIT 20""",
                tenant_id,
                device_id,
            )
        view = device_view(row)
        view["token_history"] = [
            {"issued_at": iso(t["issued_at"]), "retired_at": iso(t["retired_at"]), "reason": t["reason"]}
            for t in tokens
        ]
        return json_response(view)

    async def revoke(self, request: Request) -> Response:
        tenant_id, device_id = _path_device(request)
        body = await read_json(request, Revoke, allow_empty=True)
        detail = {"device_id": device_id, "reason": body.reason}
        async with self.db.admin(actor(request), "device.revoke", target_tenant_id=tenant_id, detail=detail) as conn:
            status, _ = await _lock_device(conn, tenant_id, device_id)
            # revoking twice is harmless: the first revocation's time stays
            row = await conn.fetchrow(
                f"""UPDATE devices SET status = 'revoked', revoked_at = coalesce(revoked_at, now()),
                                       activation_code_hash = NULL, activation_expires_at = NULL
                     WHERE tenant_id = $1 AND device_id = $2 RETURNING {_COLUMNS}""",
                tenant_id,
                device_id,
            )
            assert row is not None  # locked above
            retired = await conn.execute(
                """UPDATE device_token_history SET retired_at = now(), reason = 'revoked'
                    WHERE tenant_id = $1 AND device_id = $2 AND retired_at IS NULL""",
                tenant_id,
                device_id,
            )
        log.info(
            "device revoked",
            extra={
                "tenant_id": tenant_id,
                "device_id": device_id,
                "actor": actor(request),
                "was": status.value,
                "tokens_retired": int(retired.split()[-1]),
            },
        )
        await self.notifier.publish(tenant_id, [device_id], CredentialAction.REVOKE)
        return json_response(device_view(row))

    async def rotate_token(self, request: Request) -> Response:
        tenant_id, device_id = _path_device(request)
        token = new_device_token()
        token_hash = hash_secret(token)
        detail = {"device_id": device_id}
        async with self.db.admin(
            actor(request), "device.rotate_token", target_tenant_id=tenant_id, detail=detail
        ) as conn:
            status, tenant_status = await _lock_device(conn, tenant_id, device_id)
            if not status.may_rotate_token:
                raise ApiError(
                    409,
                    "device_not_active",
                    f"device {device_id!r} is {status.value}; only active devices have a token",
                )
            _require_active_tenant(tenant_id, tenant_status)
            await conn.execute(
                """UPDATE device_token_history SET retired_at = now(), reason = 'rotated'
                    WHERE tenant_id = $1 AND device_id = $2 AND retired_at IS NULL""",
                tenant_id,
                device_id,
            )
            await conn.execute(
                """INSERT INTO device_token_history (tenant_id, device_id, token_hash, reason)
                   VALUES ($1, $2, $3, 'rotated')""",
                tenant_id,
                device_id,
                token_hash,
            )
            row = await conn.fetchrow(
                f"UPDATE devices SET token_hash = $3 WHERE tenant_id = $1 AND device_id = $2 RETURNING {_COLUMNS}",
                tenant_id,
                device_id,
                token_hash,
            )
            assert row is not None  # locked above
        log.info(
            "device token rotated", extra={"tenant_id": tenant_id, "device_id": device_id, "actor": actor(request)}
        )
        await self.notifier.publish(tenant_id, [device_id], CredentialAction.ROTATE)
        return json_response(device_view(row) | {"device_token": token}, secret=True)

    @staticmethod
    def _with_code(row: asyncpg.Record, code: str) -> dict[str, Any]:
        view = device_view(row)
        # expires_at: the reference provisioning API's name for the same instant
        return view | {"activation_code": code, "expires_at": view["activation_expires_at"]}
