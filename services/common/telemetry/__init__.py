"""Telemetry store: a small interface (`base`) with a PostgreSQL and an InfluxDB 3 backend.

store = await open_store("postgres", database_url=settings.database_url)
await store.write(observations)            # idempotent, raises StoreUnavailable when down
await store.recent(tenant_id, device_id)   # the device's recent readings, oldest first
await store.latest(tenant_id, device_id)   # {metric: latest value}
"""

from __future__ import annotations

from typing import Any

from services.common.db import Database
from services.common.telemetry.base import (
    InvalidObservation,
    Reading,
    StoreUnavailable,
    TelemetryBackend,
    TelemetryStore,
)

__all__ = [
    "InvalidObservation",
    "Reading",
    "StoreUnavailable",
    "TelemetryBackend",
    "TelemetryStore",
    "open_store",
]


async def open_store(
    backend: str,
    *,
    database: Database | None = None,
    database_url: str | None = None,
    influxdb3_url: str | None = None,
    influxdb3_token: str | None = None,
    **options: Any,
) -> TelemetryStore:
    """The store for `backend` (PULSE_TELEMETRY_BACKEND).

    postgres: shares `database` when given (and leaves it open on close), else connects to
    `database_url` as the services' login role. influxdb3: `influxdb3_url` and
    `influxdb3_token` (PULSE_INFLUXDB3_URL / _TOKEN). `options` go to the backend's constructor.
    """
    kind = TelemetryBackend(backend)
    if kind is TelemetryBackend.POSTGRES:
        from services.common.telemetry.postgres import PostgresTelemetryStore

        if database is not None:
            return PostgresTelemetryStore(database, **options)
        if not database_url:
            raise ValueError("the postgres telemetry store needs a database or a database_url")
        return await PostgresTelemetryStore.connect(database_url, **options)
    # imported only when chosen: the client pulls in pyarrow
    from services.common.telemetry.influxdb3 import InfluxDB3TelemetryStore

    if not influxdb3_url:
        raise ValueError("the influxdb3 telemetry store needs influxdb3_url (PULSE_INFLUXDB3_URL)")
    return InfluxDB3TelemetryStore(influxdb3_url, influxdb3_token or "", **options)
