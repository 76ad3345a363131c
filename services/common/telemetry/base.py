"""The telemetry store interface: one small Protocol, one module per backend.

A store keeps the time series of accepted observations per tenant and device. `write` is
idempotent (an observation id is stored once, however often it is written) so a consumer may
re-deliver a batch after a crash or an outage. Connection-level failures raise
`StoreUnavailable`: the caller keeps its input and tries again later; any other exception means
the input itself is bad.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from services.common.observations import Observation, ObservationKind

__all__ = [
    "DEFAULT_RECENT_LIMIT",
    "KINDS",
    "MAX_RECENT_LIMIT",
    "InvalidObservation",
    "Reading",
    "StoreUnavailable",
    "TelemetryBackend",
    "TelemetryStore",
    "check_kind",
    "check_limit",
    "finite_metrics",
    "parse_utc",
]

DEFAULT_RECENT_LIMIT = 500
MAX_RECENT_LIMIT = 10_000
KINDS: frozenset[str] = frozenset(k.value for k in ObservationKind)


class TelemetryBackend(enum.StrEnum):
    POSTGRES = "postgres"
    INFLUXDB3 = "influxdb3"


class StoreUnavailable(Exception):
    """The store cannot be reached or is not accepting work right now (retry later)."""


class InvalidObservation(ValueError):
    """An observation the store cannot keep (bad timestamp, unknown kind, unrepresentable name)."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One stored observation as the stores return it."""

    obs_id: str
    device_id: str
    site_id: str | None
    kind: str
    ts: datetime
    metrics: dict[str, float] = field(default_factory=dict)
    seq: int | None = None


@runtime_checkable
class TelemetryStore(Protocol):
    """What ingest writes to and the UI reads from; see the backends in this package."""

    backend: TelemetryBackend

    async def write(self, batch: Sequence[Observation]) -> None:
        """Store `batch`; an observation id already stored is not stored again."""
        ...

    async def recent(
        self,
        tenant_id: str,
        device_id: str,
        *,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int = DEFAULT_RECENT_LIMIT,
    ) -> list[Reading]:
        """The device's `limit` most recent readings (at or after `since`), oldest first."""
        ...

    async def latest(self, tenant_id: str, device_id: str) -> dict[str, float]:
        """The most recent value of each metric the device reported."""
        ...

    async def ping(self) -> bool:
        """True when the store answers; never raises."""
        ...

    async def close(self) -> None: ...


def parse_utc(value: str) -> datetime:
    """An ISO-8601 timestamp as an aware UTC datetime (no offset: UTC; digits past µs dropped)."""
    try:
        ts = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise InvalidObservation(f"not an ISO-8601 timestamp: {value!r}") from exc
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidObservation(f"unknown observation kind {kind!r}; expected one of {sorted(KINDS)}")
    return kind


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_RECENT_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_RECENT_LIMIT}, got {limit}")
    return int(limit)


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics with a finite value: neither line protocol nor JSON can carry NaN or infinity."""
    return {name: float(v) for name, v in metrics.items() if math.isfinite(v)}
