"""Rows for delivery tests, written with the superuser connection (the evaluator's and the UI's part)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg


async def tenant(admin: asyncpg.Connection, tenant_id: str = "tenant-a") -> str:
    await admin.execute(
        "INSERT INTO tenants (tenant_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING", tenant_id, f"{tenant_id} Inc"
    )
    return tenant_id


async def alert(
    admin: asyncpg.Connection,
    tenant_id: str = "tenant-a",
    *,
    device_id: str = "dev-1",
    site_id: str | None = "site-1",
    alert_type: str = "NO_HEARTBEAT",
    severity: str = "MAJOR",
) -> uuid.UUID:
    await tenant(admin, tenant_id)
    alert_id: uuid.UUID = await admin.fetchval(
        "INSERT INTO alerts (tenant_id, device_id, site_id, fingerprint, alert_type, severity, summary)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING alert_id",
        tenant_id,
        device_id,
        site_id,
        f"{alert_type}:{device_id}:{uuid.uuid4().hex[:6]}",
        alert_type,
        severity,
        f"{device_id} {alert_type}",
    )
    return alert_id


async def event(
    admin: asyncpg.Connection, tenant_id: str, alert_id: uuid.UUID, status: str = "OPEN", severity: str = "MAJOR"
) -> uuid.UUID:
    if status == "RESOLVED":
        await admin.execute("UPDATE alerts SET status = 'RESOLVED', resolved_at = now() WHERE alert_id = $1", alert_id)
    elif status == "ACKNOWLEDGED":
        await admin.execute(
            "UPDATE alerts SET status = 'ACKNOWLEDGED', acknowledged_at = now() WHERE alert_id = $1", alert_id
        )
    event_id: uuid.UUID = await admin.fetchval(
        "INSERT INTO alert_events (tenant_id, alert_id, status, severity) VALUES ($1, $2, $3, $4) RETURNING event_id",
        tenant_id,
        alert_id,
        status,
        severity,
    )
    return event_id


async def integration(
    admin: asyncpg.Connection,
    tenant_id: str = "tenant-a",
    *,
    type: str = "webhook",
    config: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    enabled: bool = True,
    name: str | None = None,
) -> uuid.UUID:
    await tenant(admin, tenant_id)
    integration_id: uuid.UUID = await admin.fetchval(
        "INSERT INTO integrations (tenant_id, name, type, config, secrets, enabled)"
        " VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6) RETURNING integration_id",
        tenant_id,
        name or f"{type}-{uuid.uuid4().hex[:6]}",
        type,
        _json(config or {}),
        _json(secrets or {}),
        enabled,
    )
    return integration_id


async def job(admin: asyncpg.Connection, integration_id: uuid.UUID, **alert_kw: Any) -> asyncpg.Record:
    """An OPEN alert event of a new alert and its delivery job to `integration_id`."""
    tenant_id = await admin.fetchval("SELECT tenant_id FROM integrations WHERE integration_id = $1", integration_id)
    alert_id = await alert(admin, tenant_id, **alert_kw)
    event_id = await event(admin, tenant_id, alert_id)
    row: asyncpg.Record = await admin.fetchrow(
        "INSERT INTO delivery_jobs (tenant_id, event_id, alert_id, integration_id) VALUES ($1, $2, $3, $4) RETURNING *",
        tenant_id,
        event_id,
        alert_id,
        integration_id,
    )
    return row


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value)
