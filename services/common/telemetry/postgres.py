"""Telemetry in PostgreSQL: a table partitioned by day, written with COPY in batches.

Write path (as pulse_worker, cross-tenant): make sure the day partitions of the batch exist
(pulse_ensure_telemetry_partitions, cached per process), COPY the batch into a session TEMP
staging table, then INSERT ... SELECT ... ON CONFLICT DO NOTHING into `telemetry`. The unique
key (tenant_id, device_id, ts, obs_id) makes a re-written observation a no-op.

Read path (as pulse_app with app.tenant_id set): row level security limits every query to the
tenant asked for, so a UI request can never read another tenant's series.

Days outside [today - past_days, today + future_days] get no partition of their own (a device
with a broken clock must not create thousands of tables); their rows go to the default
partition and are moved into a day partition if that day is created later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from services.common.db import Conn, Database, validate_tenant_id
from services.common.observations import Observation
from services.common.telemetry.base import (
    DEFAULT_RECENT_LIMIT,
    Reading,
    StoreUnavailable,
    TelemetryBackend,
    check_kind,
    check_limit,
    finite_metrics,
    parse_utc,
)

__all__ = ["LATEST_SCAN_ROWS", "PostgresTelemetryStore", "is_unavailable"]

log = logging.getLogger("pulse.telemetry.postgres")

# latest(): how many of the device's most recent readings are scanned for metric values
LATEST_SCAN_ROWS = 10_000

_COLUMNS = ("tenant_id", "device_id", "site_id", "kind", "ts", "received_at", "obs_id", "seq", "metrics")
_STAGING = "telemetry_staging"
# metrics staged as text and cast once in SQL: no jsonb codec is involved in the binary COPY
_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (
    tenant_id text, device_id text, site_id text, kind text, ts timestamptz, received_at timestamptz,
    obs_id text, seq bigint, metrics text
) ON COMMIT DELETE ROWS"""
_COLUMN_LIST = ", ".join(_COLUMNS)
_SELECT_STAGED = _COLUMN_LIST.replace("metrics", "metrics::jsonb")
_INSERT = (
    f"INSERT INTO telemetry ({_COLUMN_LIST}) SELECT {_SELECT_STAGED} FROM pg_temp.{_STAGING} ON CONFLICT DO NOTHING"
)
_encode = msgspec.json.Encoder().encode

# Connection-level trouble: the server is gone, restarting, refusing logins, or the pool is
# exhausted; a connection dropped mid-COPY can also leave asyncpg's protocol state confused
# (InternalClientError "cannot switch to state ..."). Serialization failures and deadlocks are
# transient by definition, so they too mean "try again later" rather than "this batch is bad".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)


def is_unavailable(exc: BaseException) -> bool:
    """True for failures of the server or the connection rather than of the data."""
    # asyncpg's client-side DataError (an argument it cannot encode) is an InterfaceError too
    return isinstance(exc, _UNAVAILABLE) and not isinstance(exc, ValueError)


class PostgresTelemetryStore:
    """The `TelemetryStore` on PostgreSQL through `Database` (worker writes, tenant reads)."""

    backend = TelemetryBackend.POSTGRES

    def __init__(
        self,
        db: Database,
        *,
        owns_db: bool = False,
        past_days: int = 35,
        future_days: int = 2,
        today: Callable[[], date] | None = None,
    ) -> None:
        self.db = db
        self._owns_db = owns_db
        self._past = timedelta(days=past_days)
        self._future = timedelta(days=future_days)
        self._today = today or (lambda: datetime.now(UTC).date())
        self._days: set[date] = set()  # day partitions known to exist
        self._partition_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, url: str, *, max_size: int = 5, **options: Any) -> PostgresTelemetryStore:
        try:
            db = await Database.connect(url, max_size=max_size)
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"postgres: {exc!r}") from exc
            raise
        return cls(db, owns_db=True, **options)

    # --- write ----------------------------------------------------------------------------

    async def write(self, batch: Sequence[Observation]) -> None:
        records = [_record(o) for o in batch]
        if not records:
            return
        try:
            await self._ensure_partitions(r[4].date() for r in records)
            async with self.db.worker() as conn:
                await conn.execute(_CREATE_STAGING)
                await conn.copy_records_to_table(_STAGING, records=records, columns=_COLUMNS, schema_name="pg_temp")
                await conn.execute(_INSERT)
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"postgres: {exc!r}") from exc
            raise

    async def ensure_partitions(self, first_day: date, days: int) -> int:
        """Create the day partitions of [first_day, first_day + days); returns how many were new."""
        async with self.db.worker() as conn:
            created = await conn.fetchval("SELECT pulse_ensure_telemetry_partitions($1, $2)", first_day, days)
        self._days.update(first_day + timedelta(days=i) for i in range(days))
        return int(created)

    async def _ensure_partitions(self, days: Iterable[date]) -> None:
        today = self._today()
        wanted = {d for d in days if today - self._past <= d <= today + self._future}
        # today and the next days too, so that midnight finds its partition already there
        wanted.update(today + timedelta(days=i) for i in range(self._future.days + 1))
        wanted -= self._days
        if not wanted:
            return
        async with self._partition_lock:
            wanted -= self._days
            if not wanted:
                return
            first, last = min(wanted), max(wanted)
            try:
                created = await self.ensure_partitions(first, (last - first).days + 1)
            except asyncpg.PostgresError as exc:
                if is_unavailable(exc):
                    raise
                # e.g. a lock timeout: the rows go to the default partition, nothing is refused
                log.warning("could not create telemetry partitions", extra={"first": str(first), "error": repr(exc)})
                return
            if created:
                log.info("telemetry partitions created", extra={"first": str(first), "last": str(last), "n": created})

    # --- read -----------------------------------------------------------------------------

    async def recent(
        self,
        tenant_id: str,
        device_id: str,
        *,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int = DEFAULT_RECENT_LIMIT,
    ) -> list[Reading]:
        validate_tenant_id(tenant_id)
        sql = [
            "SELECT obs_id, device_id, site_id, kind, ts, seq, metrics FROM telemetry",
            "WHERE tenant_id = $1 AND device_id = $2",
        ]
        args: list[Any] = [tenant_id, device_id]
        if kind is not None:
            args.append(check_kind(kind))
            sql.append(f"AND kind = ${len(args)}")
        if since is not None:
            args.append(_aware(since))
            sql.append(f"AND ts >= ${len(args)}")
        args.append(check_limit(limit))
        sql.append(f"ORDER BY ts DESC, obs_id DESC LIMIT ${len(args)}")
        rows = await self._read(tenant_id, " ".join(sql), args)
        return [
            Reading(
                obs_id=r["obs_id"],
                device_id=r["device_id"],
                site_id=r["site_id"],
                kind=r["kind"],
                ts=r["ts"],
                metrics={k: float(v) for k, v in r["metrics"].items()},
                seq=r["seq"],
            )
            for r in reversed(rows)
        ]

    async def latest(self, tenant_id: str, device_id: str) -> dict[str, float]:
        validate_tenant_id(tenant_id)
        sql = """
            SELECT DISTINCT ON (m.key) m.key, (m.value)::float8 AS value
              FROM (SELECT ts, obs_id, metrics FROM telemetry
                     WHERE tenant_id = $1 AND device_id = $2
                     ORDER BY ts DESC, obs_id DESC LIMIT $3) t,
                   jsonb_each(t.metrics) m
             WHERE jsonb_typeof(m.value) = 'number'
             ORDER BY m.key, t.ts DESC, t.obs_id DESC"""
        rows = await self._read(tenant_id, sql, [tenant_id, device_id, LATEST_SCAN_ROWS])
        return {r["key"]: r["value"] for r in rows}

    async def _read(self, tenant_id: str, sql: str, args: list[Any]) -> list[asyncpg.Record]:
        try:
            async with self.db.tenant(tenant_id) as conn:
                return await _fetch(conn, sql, args)
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"postgres: {exc!r}") from exc
            raise

    # --- lifecycle ------------------------------------------------------------------------

    async def ping(self) -> bool:
        try:
            return await self.db.ping()
        except Exception:  # ping reports, never raises
            return False

    async def close(self) -> None:
        if self._owns_db:
            await self.db.close()


async def _fetch(conn: Conn, sql: str, args: list[Any]) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql, *args))


def _record(o: Observation) -> tuple[Any, ...]:
    """One staging row; raises InvalidObservation for what the table would refuse."""
    validate_tenant_id(o.tenant_id)
    return (
        o.tenant_id,
        o.device_id,
        o.site_id,
        check_kind(o.kind),
        parse_utc(o.ts),
        parse_utc(o.received_at),
        o.id,
        None if o.seq is None else int(o.seq),
        _encode(finite_metrics(o.metrics)).decode(),
    )


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
