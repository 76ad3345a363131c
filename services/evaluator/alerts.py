"""Alert lifecycle in Postgres (alerts, alert_events) and its outbox onto pulse:alerts.

    OPEN --(user)--> ACKNOWLEDGED --(condition clears | user)--> RESOLVED
      +-----------------(condition clears | user)--------------------^

At most one unresolved alert per (tenant_id, fingerprint) (unique partial index): opening
an alert that is already open counts a repeat (last_seen_at, event_count) instead. Every
transition writes an alert_events row whose payload is the pulse:alerts message; events are
published after the transaction commits by the outbox (`Outbox`), which marks them
published_at. A crash between commit and publish leaves the event unpublished and the next
outbox pass (on start-up or every few seconds, in any replica) sends it: at least once, and
the event_id lets readers drop a repeat. Acknowledge/resolve by a user (`acknowledge`,
`resolve`) run as the tenant and leave their event to the outbox the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from services.common.bus import publish_many
from services.common.db import Conn, Database

__all__ = [
    "AlertError",
    "AlertSpec",
    "AlertStatus",
    "OpenAlert",
    "Outbox",
    "acknowledge",
    "iso_utc",
    "load_open",
    "open_alert",
    "record_repeats",
    "resolve",
    "resolve_alert",
]

log = logging.getLogger("pulse.evaluator.alerts")


class AlertStatus(enum.StrEnum):
    OPEN = "OPEN"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    RESOLVED = "RESOLVED"

    def can_become(self, nxt: AlertStatus) -> bool:
        return nxt in _NEXT[self]


_NEXT = {
    AlertStatus.OPEN: {AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED},
    AlertStatus.ACKNOWLEDGED: {AlertStatus.RESOLVED},
    AlertStatus.RESOLVED: set[AlertStatus](),
}


class AlertError(Exception):
    """A user transition that cannot happen; `reason` is not_found or invalid_transition."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """An alert condition as the evaluator sees it; the fingerprint is its dedupe key."""

    tenant_id: str
    device_id: str | None
    site_id: str | None
    fingerprint: str
    alert_type: str
    severity: str
    summary: str
    rule_id: str | None = None
    details: Mapping[str, Any] | None = None


@dataclass(slots=True)
class OpenAlert:
    alert_id: str
    alert_type: str
    severity: str


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _message(row: asyncpg.Record, event_id: str, status: str, at: float) -> dict[str, Any]:
    return {
        "v": 1,
        "event_id": event_id,
        "alert_id": str(row["alert_id"]),
        "tenant_id": row["tenant_id"],
        "device_id": row["device_id"],
        "alert_type": row["alert_type"],
        "severity": row["severity"],
        "status": status,
        "fingerprint": row["fingerprint"],
        "summary": row["summary"],
        "at": iso_utc(at),
    }


async def _event(conn: Conn, row: asyncpg.Record, status: str, at: float) -> None:
    event_id = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO alert_events (event_id, tenant_id, alert_id, status, severity, at, payload)"
        " VALUES ($1, $2, $3, $4, $5, to_timestamp($6), $7)",
        event_id,
        row["tenant_id"],
        row["alert_id"],
        status,
        row["severity"],
        at,
        _message(row, event_id, status, at),
    )


_RETURNING = "alert_id, tenant_id, device_id, alert_type, severity, fingerprint, summary"


async def open_alert(conn: Conn, spec: AlertSpec, at: float) -> OpenAlert:
    """Open `spec`, or count a repeat if its fingerprint is already open (crash replay)."""
    row = await conn.fetchrow(
        "INSERT INTO alerts (tenant_id, device_id, site_id, rule_id, fingerprint, alert_type, severity, summary,"
        " details, first_seen_at, last_seen_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, to_timestamp($10), to_timestamp($10))"
        " ON CONFLICT (tenant_id, fingerprint) WHERE status <> 'RESOLVED' DO UPDATE"
        " SET last_seen_at = GREATEST(alerts.last_seen_at, EXCLUDED.last_seen_at),"
        " event_count = alerts.event_count + 1"
        f" RETURNING {_RETURNING}, (xmax = 0) AS inserted",
        spec.tenant_id,
        spec.device_id,
        spec.site_id,
        spec.rule_id,
        spec.fingerprint,
        spec.alert_type,
        spec.severity,
        spec.summary,
        dict(spec.details or {}),
        at,
    )
    assert row is not None
    if row["inserted"]:
        await _event(conn, row, AlertStatus.OPEN, at)
    return OpenAlert(str(row["alert_id"]), row["alert_type"], row["severity"])


async def resolve_alert(conn: Conn, tenant_id: str, fingerprint: str, at: float, by: str | None = None) -> bool:
    """Resolve the unresolved alert with `fingerprint`, if any; True when one was resolved."""
    row = await conn.fetchrow(
        "UPDATE alerts SET status = 'RESOLVED', resolved_at = to_timestamp($3), resolved_by = $4"
        f" WHERE tenant_id = $1 AND fingerprint = $2 AND status <> 'RESOLVED' RETURNING {_RETURNING}",
        tenant_id,
        fingerprint,
        at,
        by,
    )
    if row is None:
        return False
    await _event(conn, row, AlertStatus.RESOLVED, at)
    return True


async def record_repeats(conn: Conn, repeats: Mapping[tuple[str, str], tuple[int, float]]) -> None:
    """Add repeat counts {(tenant, fingerprint): (n, last_at)} to open alerts in one statement."""
    if not repeats:
        return
    keys = list(repeats)
    await conn.execute(
        "UPDATE alerts a SET last_seen_at = GREATEST(a.last_seen_at, to_timestamp(u.at)),"
        " event_count = a.event_count + u.n"
        " FROM unnest($1::text[], $2::text[], $3::int[], $4::float8[]) AS u(tenant_id, fingerprint, n, at)"
        " WHERE a.tenant_id = u.tenant_id AND a.fingerprint = u.fingerprint AND a.status <> 'RESOLVED'",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [repeats[k][0] for k in keys],
        [repeats[k][1] for k in keys],
    )


async def load_open(
    db: Database, keep: Callable[[str, str | None], bool] | None = None
) -> dict[tuple[str, str], OpenAlert]:
    """Unresolved alerts (of the devices `keep` accepts): what is open, rebuilt at start-up."""
    async with db.worker() as conn:
        rows = await conn.fetch(
            "SELECT tenant_id, device_id, fingerprint, alert_id, alert_type, severity FROM alerts"
            " WHERE status <> 'RESOLVED'"
        )
    if keep is not None:
        rows = [r for r in rows if keep(r["tenant_id"], r["device_id"])]
    return {
        (r["tenant_id"], r["fingerprint"]): OpenAlert(str(r["alert_id"]), r["alert_type"], r["severity"]) for r in rows
    }


async def acknowledge(db: Database, tenant_id: str, alert_id: str, user: str) -> dict[str, Any]:
    """A user acknowledges an open alert; returns the pulse:alerts message (published by the outbox)."""
    return await _by_user(db, tenant_id, alert_id, user, AlertStatus.ACKNOWLEDGED)


async def resolve(db: Database, tenant_id: str, alert_id: str, user: str) -> dict[str, Any]:
    """A user resolves an open or acknowledged alert; returns the pulse:alerts message."""
    return await _by_user(db, tenant_id, alert_id, user, AlertStatus.RESOLVED)


async def _by_user(db: Database, tenant_id: str, alert_id: str, user: str, nxt: AlertStatus) -> dict[str, Any]:
    try:
        aid = uuid.UUID(alert_id)
    except ValueError:
        raise AlertError("not_found", f"no alert {alert_id!r}") from None
    at = datetime.now(UTC).timestamp()
    async with db.tenant(tenant_id) as conn:
        row = await conn.fetchrow(f"SELECT {_RETURNING}, status FROM alerts WHERE alert_id = $1 FOR UPDATE", aid)
        if row is None:
            raise AlertError("not_found", f"no alert {alert_id}")
        if not AlertStatus(row["status"]).can_become(nxt):
            raise AlertError("invalid_transition", f"alert {alert_id} is {row['status']}, cannot become {nxt}")
        if nxt is AlertStatus.ACKNOWLEDGED:
            sql = "UPDATE alerts SET status = 'ACKNOWLEDGED', acknowledged_by = $2, acknowledged_at = to_timestamp($3)"
        else:
            sql = "UPDATE alerts SET status = 'RESOLVED', resolved_by = $2, resolved_at = to_timestamp($3)"
        await conn.execute(sql + " WHERE alert_id = $1", aid, user, at)
        event_id = str(uuid.uuid4())
        message = _message(row, event_id, nxt, at)
        await conn.execute(
            "INSERT INTO alert_events (event_id, tenant_id, alert_id, status, severity, at, payload)"
            " VALUES ($1, $2, $3, $4, $5, to_timestamp($6), $7)",
            event_id,
            tenant_id,
            aid,
            nxt.value,
            row["severity"],
            at,
            message,
        )
    return message


class Outbox:
    """Publishes alert events not yet on pulse:alerts, oldest first, and marks them published."""

    def __init__(
        self,
        db: Database,
        r: aioredis.Redis,
        stream: str,
        *,
        maxlen: int,
        on_published: Callable[[Iterable[Mapping[str, Any]]], None] | None = None,
        batch: int = 500,
    ) -> None:
        self.db = db
        self.redis = r
        self.stream = stream
        self.maxlen = maxlen
        self.on_published = on_published
        self.batch = batch
        self.wake = asyncio.Event()
        self.published = 0

    async def publish_pending(self) -> int:
        total = 0
        while True:
            # row locks keep two replicas from sending the same events at the same time
            async with self.db.worker() as conn:
                rows = await conn.fetch(
                    "SELECT event_id, payload FROM alert_events WHERE published_at IS NULL"
                    " ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                    self.batch,
                )
                if not rows:
                    break
                messages = [r["payload"] for r in rows]
                await publish_many(self.redis, self.stream, messages, maxlen=self.maxlen)
                await conn.execute(
                    "UPDATE alert_events SET published_at = now() WHERE event_id = ANY($1::uuid[])",
                    [r["event_id"] for r in rows],
                )
            total += len(rows)
            if self.on_published is not None:
                self.on_published(messages)
            if len(rows) < self.batch:
                break
        self.published += total
        return total

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        while not stop.is_set():
            self.wake.clear()
            await self._pass()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), interval_s)
        await self._pass()

    async def _pass(self) -> None:
        try:
            await self.publish_pending()
        except Exception as exc:  # Postgres or Redis down: the events stay unpublished, retried
            log.warning("alert outbox pass failed; retrying", extra={"error": repr(exc)})
