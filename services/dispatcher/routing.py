"""Alert events on the wire and the route filters they are matched against (pure logic)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

__all__ = ["SEVERITY_RANK", "AlertEvent", "Route", "choose_routes", "decode_event"]

# most severe first; a route's min_severity admits itself and everything above it
SEVERITY_RANK: dict[str, int] = {"CRITICAL": 5, "MAJOR": 4, "MINOR": 3, "WARNING": 2, "INFO": 1}


class AlertEvent(msgspec.Struct, frozen=True):
    """A `pulse:alerts` entry: `status` is the transition this event records."""

    v: int
    event_id: str
    alert_id: str
    tenant_id: str
    alert_type: str
    severity: str
    status: str
    device_id: str | None = None
    site_id: str | None = None  # not in the stream contract; read from the alert when absent
    fingerprint: str = ""
    summary: str = ""
    at: str | None = None


def decode_event(data: Mapping[str, Any]) -> AlertEvent:
    """Validate an entry's data as an AlertEvent; ValueError says what is wrong."""
    try:
        event = msgspec.convert(data, AlertEvent)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid alert event: {exc}") from exc
    if event.severity not in SEVERITY_RANK:
        raise ValueError(f"invalid alert event: unknown severity {event.severity!r}")
    if event.status not in ("OPEN", "ACKNOWLEDGED", "RESOLVED"):
        raise ValueError(f"invalid alert event: unknown status {event.status!r}")
    return event


class Row(Protocol):
    """A database row (asyncpg.Record or a dict)."""

    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(frozen=True)
class Route:
    """One enabled integration_routes row; None selectors match anything."""

    route_id: str
    integration_id: str
    min_severity: str = "INFO"
    alert_types: Sequence[str] | None = None
    device_ids: Sequence[str] | None = None
    device_glob: str | None = None
    site_ids: Sequence[str] | None = None
    transitions: Sequence[str] = ("OPEN",)
    priority: int = 100
    repeat_interval_s: int | None = None

    @classmethod
    def from_row(cls, row: Row) -> Route:
        return cls(
            route_id=str(row["route_id"]),
            integration_id=str(row["integration_id"]),
            min_severity=row["min_severity"],
            alert_types=row["alert_types"],
            device_ids=row["device_ids"],
            device_glob=row["device_glob"],
            site_ids=row["site_ids"],
            transitions=row["transitions"],
            priority=row["priority"],
            repeat_interval_s=row["repeat_interval_s"],
        )

    def matches(self, event: AlertEvent, site_id: str | None) -> bool:
        if event.status not in self.transitions:
            return False
        if SEVERITY_RANK[event.severity] < SEVERITY_RANK.get(self.min_severity, 1):
            return False
        if self.alert_types is not None and event.alert_type not in self.alert_types:
            return False
        device = event.device_id or ""
        if self.device_ids is not None and device not in self.device_ids:
            return False
        if self.device_glob is not None and not fnmatch.fnmatchcase(device, self.device_glob):
            return False
        return self.site_ids is None or site_id in self.site_ids


def choose_routes(routes: Iterable[Route], event: AlertEvent, site_id: str | None) -> list[Route]:
    """The best matching route per integration (lowest priority number, then route id)."""
    chosen: dict[str, Route] = {}
    for route in sorted(routes, key=lambda r: (r.priority, r.route_id)):
        if route.integration_id not in chosen and route.matches(event, site_id):
            chosen[route.integration_id] = route
    return list(chosen.values())
