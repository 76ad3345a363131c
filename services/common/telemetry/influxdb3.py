"""Telemetry in InfluxDB 3 (influxdb3-python): one database per tenant, SQL to read.

Layout: database `telemetry_{tenant_id}` (see `database_name`), measurement = observation kind
(heartbeat, telemetry, event), tags device_id and site_id, fields = the metrics plus `obs_id`
(string) and `seq` (integer), timestamp in nanoseconds. A point is keyed by measurement, tags
and time, so re-writing an observation overwrites it with the same values: writes are
idempotent. (Two *different* observations of one device and kind with the same timestamp are
merged into one point, last write winning per field; PostgreSQL keeps both.)

Writes go to /api/v3/write_lp, grouped by tenant, at most `max_lines` lines per request,
all-or-nothing (accept_partial=false) and acknowledged after the WAL is persisted
(no_sync=false). The client is blocking, so every call runs in a thread.

InfluxDB 3 creates a database and its tables on first write. Reads of a tenant or a
measurement that has no data yet return nothing rather than an error.

Not exercised against a server here: there is no InfluxDB 3 binary on the build machines.
Line building, escaping, query building and result decoding are unit-tested.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import urllib3
from influxdb_client_3 import InfluxDBClient3
from influxdb_client_3.exceptions.exceptions import InfluxDB3ClientQueryError, InfluxDBError
from pyarrow import flight

from services.common.db import validate_tenant_id
from services.common.observations import Observation
from services.common.telemetry.base import (
    DEFAULT_RECENT_LIMIT,
    KINDS,
    Reading,
    StoreUnavailable,
    TelemetryBackend,
    check_kind,
    check_limit,
    finite_metrics,
    parse_utc,
)
from services.common.telemetry.lineprotocol import FieldValue, build_line, to_ns

__all__ = [
    "DATABASE_PREFIX",
    "LATEST_SCAN_ROWS",
    "RESERVED_COLUMNS",
    "InfluxDB3TelemetryStore",
    "database_name",
    "is_unavailable",
    "latest_values",
    "observation_line",
    "quote_ident",
    "readings_from_table",
    "recent_query",
]

log = logging.getLogger("pulse.telemetry.influxdb3")

DATABASE_PREFIX = "telemetry_"
LATEST_SCAN_ROWS = 1_000
# columns of every measurement that are not metrics; a metric with one of these names is skipped
RESERVED_COLUMNS = frozenset({"time", "device_id", "site_id", "obs_id", "seq"})

_PLAIN_DB = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_DB_MAX = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FLIGHT_UNAVAILABLE = (
    flight.FlightUnavailableError,
    flight.FlightTimedOutError,
    flight.FlightCancelledError,
    flight.FlightUnauthenticatedError,
    flight.FlightUnauthorizedError,
)
T = TypeVar("T")


def database_name(tenant_id: str) -> str:
    """`telemetry_{tenant_id}`, or `telemetry__{hash}` where the id does not fit InfluxDB's rules.

    Database names allow [A-Za-z0-9_-] and 64 characters; tenant ids also allow '.' and 64
    characters. A plain name starts with a letter or digit after the prefix and a hashed one
    with '_', so the two forms never collide.
    """
    validate_tenant_id(tenant_id)
    plain = DATABASE_PREFIX + tenant_id
    if _PLAIN_DB.match(tenant_id) and len(plain) <= _DB_MAX:
        return plain
    return f"{DATABASE_PREFIX}_{hashlib.blake2b(tenant_id.encode(), digest_size=16).hexdigest()}"


def observation_line(o: Observation) -> str:
    """The line protocol for one observation; raises InvalidObservation when it cannot be written."""
    validate_tenant_id(o.tenant_id)
    fields: dict[str, FieldValue] = {"obs_id": o.id}
    if o.seq is not None:
        fields["seq"] = int(o.seq)
    for name, value in finite_metrics(o.metrics).items():
        if name in RESERVED_COLUMNS:
            log.warning("metric name is reserved in InfluxDB; skipped", extra={"metric": name, "obs_id": o.id})
            continue
        fields[name] = value
    tags = {"device_id": o.device_id}
    if o.site_id:
        tags["site_id"] = o.site_id
    return build_line(check_kind(o.kind), tags, fields, to_ns(parse_utc(o.ts)))


def quote_ident(name: str) -> str:
    """A SQL identifier in double quotes (DataFusion)."""
    return '"' + name.replace('"', '""') + '"'


def recent_query(
    kind: str, device_id: str, *, since: datetime | None, limit: int
) -> tuple[str, dict[str, str | int | float | bool]]:
    """SQL and parameters for one measurement's most recent points of a device, newest first."""
    sql = f"SELECT * FROM {quote_ident(check_kind(kind))} WHERE device_id = $device_id"
    params: dict[str, str | int | float | bool] = {"device_id": device_id}
    if since is not None:
        sql += " AND time >= $since"
        since_utc = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
        params["since"] = since_utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sql += f" ORDER BY time DESC LIMIT {check_limit(limit)}"
    return sql, params


def readings_from_table(table: Any, kind: str) -> list[Reading]:
    """Decode a query result (pyarrow.Table of `SELECT *`) into readings, in row order."""
    if table.num_rows == 0:
        return []
    import pyarrow as pa

    # integers first: nanosecond timestamps do not fit datetime, and need no pandas this way
    times = table.column("time").cast(pa.int64()).to_pylist()
    columns = {name: table.column(name).to_pylist() for name in table.column_names if name != "time"}
    empty: list[Any] = [None] * table.num_rows
    device_ids, site_ids = columns.get("device_id", empty), columns.get("site_id", empty)
    obs_ids, seqs = columns.get("obs_id", empty), columns.get("seq", empty)
    metric_columns = {n: v for n, v in columns.items() if n not in RESERVED_COLUMNS}
    readings = []
    for i, ns in enumerate(times):
        metrics = {
            name: float(values[i])
            for name, values in metric_columns.items()
            if isinstance(values[i], int | float) and not isinstance(values[i], bool)
        }
        readings.append(
            Reading(
                obs_id=obs_ids[i] or "",
                device_id=device_ids[i] or "",
                site_id=site_ids[i],
                kind=kind,
                ts=_EPOCH + timedelta(microseconds=ns // 1000),
                metrics=metrics,
                seq=seqs[i],
            )
        )
    return readings


def latest_values(readings: Iterable[Reading]) -> dict[str, float]:
    """The newest value of each metric across `readings`."""
    latest: dict[str, float] = {}
    for r in sorted(readings, key=lambda r: (r.ts, r.obs_id), reverse=True):
        for name, value in r.metrics.items():
            latest.setdefault(name, value)
    return latest


def is_unavailable(exc: BaseException) -> bool:
    """True for failures of the server, the network or the credentials rather than of the data.

    A rejected token (401/403) counts: it needs an operator, and entries kept pending lose nothing.
    """
    if isinstance(exc, (OSError, urllib3.exceptions.HTTPError, *_FLIGHT_UNAVAILABLE)):
        return True
    if isinstance(exc, InfluxDB3ClientQueryError):
        cause = exc.__cause__ or exc.__context__
        return cause is not None and is_unavailable(cause)
    if isinstance(exc, InfluxDBError):
        status = getattr(exc, "status", None)
        if status is None and exc.response is not None:
            status = exc.response.status
        return status in (None, 0, 401, 403, 408, 429) or (isinstance(status, int) and status >= 500)
    return False


def _is_missing(exc: BaseException) -> bool:
    """A query of a database or table that nothing was written to yet."""
    return isinstance(exc, (InfluxDB3ClientQueryError, flight.FlightError)) and "not found" in str(exc).lower()


class InfluxDB3TelemetryStore:
    """The `TelemetryStore` on InfluxDB 3 Core/Enterprise."""

    backend = TelemetryBackend.INFLUXDB3

    def __init__(
        self,
        url: str,
        token: str,
        *,
        max_lines: int = 5_000,
        write_timeout_ms: int = 10_000,
        query_timeout_ms: int = 30_000,
    ) -> None:
        self.url = url
        self._max_lines = max_lines
        # influxdb3-python is untyped; it needs a default database, every call names its own
        client_class = cast("Callable[..., Any]", InfluxDBClient3)
        self._client: Any = client_class(
            host=url,
            token=token,
            database=DATABASE_PREFIX.rstrip("_"),
            write_use_v2_api=False,
            write_accept_partial=False,
            write_no_sync=False,
            write_timeout=write_timeout_ms,
            query_timeout=query_timeout_ms,
        )

    async def write(self, batch: Sequence[Observation]) -> None:
        by_database: dict[str, list[str]] = {}
        for o in batch:
            by_database.setdefault(database_name(o.tenant_id), []).append(observation_line(o))
        for database, lines in by_database.items():
            for start in range(0, len(lines), self._max_lines):
                body = "\n".join(lines[start : start + self._max_lines])
                await self._call(self._client.write, record=body, database=database)

    async def recent(
        self,
        tenant_id: str,
        device_id: str,
        *,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int = DEFAULT_RECENT_LIMIT,
    ) -> list[Reading]:
        check_limit(limit)
        kinds = [check_kind(kind)] if kind is not None else sorted(KINDS)
        found: list[Reading] = []
        for k in kinds:
            found += await self._query(tenant_id, k, device_id, since=since, limit=limit)
        found.sort(key=lambda r: (r.ts, r.obs_id))
        return found[-limit:]

    async def latest(self, tenant_id: str, device_id: str) -> dict[str, float]:
        found: list[Reading] = []
        for k in sorted(KINDS):
            found += await self._query(tenant_id, k, device_id, since=None, limit=LATEST_SCAN_ROWS)
        return latest_values(found)

    async def _query(
        self, tenant_id: str, kind: str, device_id: str, *, since: datetime | None, limit: int
    ) -> list[Reading]:
        sql, params = recent_query(kind, device_id, since=since, limit=limit)
        try:
            table = await self._call(
                self._client.query,
                query=sql,
                language="sql",
                mode="all",
                database=database_name(tenant_id),
                query_parameters=params,
            )
        except Exception as exc:
            if _is_missing(exc):
                return []
            raise
        return readings_from_table(table, kind)

    async def _call(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"influxdb3 at {self.url}: {exc!r}") from exc
            raise

    async def ping(self) -> bool:
        try:
            await asyncio.to_thread(self._client.get_server_version)
        except Exception:  # ping reports, never raises
            return False
        return True

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)
