"""Postgres access: a pool, tenant transactions bound by RLS, worker and operator paths.

The services log in as `pulse_service`, a role with no rights of its own. Each transaction
switches to the role it needs with SET LOCAL ROLE, so the switch ends with the transaction:
- tenant(tenant_id): `pulse_app`, row level security bound to app.tenant_id;
- worker(): `pulse_worker`, cross-tenant, only the grants internal services need;
- operator(actor, action, ...): `pulse_operator`, cross-tenant reads, each one audited;
- admin(actor, action, ...): `pulse_admin`, the admin API's writes (tenants, provisioning), audited.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from services.common import constants

__all__ = ["Conn", "Database", "InvalidTenantId", "create_pool", "validate_tenant_id"]

# What the transactions below yield: a pooled connection (same API as asyncpg.Connection).
Conn = asyncpg.pool.PoolConnectionProxy

_TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class InvalidTenantId(ValueError):
    """A tenant id that is empty or not of the allowed form."""


def validate_tenant_id(tenant_id: str) -> str:
    """Return `tenant_id` if it has the allowed form (1-64 of A-Z a-z 0-9 _ . -)."""
    if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id):
        raise InvalidTenantId(f"invalid tenant id {tenant_id!r}")
    return tenant_id


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=60
    )
    assert pool is not None
    return pool


class Database:
    """Role-switching transactions over one asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, url: str, *, max_size: int = 10) -> Database:
        return cls(await create_pool(url, max_size=max_size))

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self) -> bool:
        async with self.pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT true"))

    @asynccontextmanager
    async def _as_role(self, role: str) -> AsyncIterator[Conn]:
        async with self.pool.acquire() as conn, conn.transaction():
            # role names are constants, never input; SET cannot take bind parameters
            await conn.execute(f"SET LOCAL ROLE {role}")
            yield conn

    @asynccontextmanager
    async def tenant(self, tenant_id: str) -> AsyncIterator[Conn]:
        """A transaction that sees and writes only `tenant_id`'s rows (RLS + app.tenant_id)."""
        validate_tenant_id(tenant_id)
        async with self._as_role(constants.DB_ROLE_APP) as conn:
            await conn.execute("SELECT set_config($1, $2, true)", constants.TENANT_SETTING, tenant_id)
            yield conn

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Conn]:
        """A cross-tenant transaction for internal workers (evaluator, dispatcher, ...)."""
        async with self._as_role(constants.DB_ROLE_WORKER) as conn:
            yield conn

    @asynccontextmanager
    async def admin(
        self,
        actor: str,
        action: str,
        *,
        target_tenant_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AsyncIterator[Conn]:
        """A cross-tenant transaction for the admin API (tenants, provisioning); audited first."""
        async with self._as_role(constants.DB_ROLE_ADMIN) as conn:
            await _audit(conn, actor, action, target_tenant_id, detail)
            yield conn

    @asynccontextmanager
    async def operator(
        self,
        actor: str,
        action: str,
        *,
        target_tenant_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AsyncIterator[Conn]:
        """A cross-tenant read-only transaction; the access is written to the audit log first."""
        async with self._as_role(constants.DB_ROLE_OPERATOR) as conn:
            await _audit(conn, actor, action, target_tenant_id, detail)
            yield conn


async def _audit(
    conn: Conn, actor: str, action: str, target_tenant_id: str | None, detail: dict[str, Any] | None
) -> None:
    await conn.execute(
        "INSERT INTO operator_audit_log (actor, action, target_tenant_id, detail) VALUES ($1, $2, $3, $4)",
        actor,
        action,
        target_tenant_id,
        detail or {},
    )
