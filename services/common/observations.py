"""The `pulse:observations` entry, declared once (see ARCHITECTURE.md, stream contracts)."""

from __future__ import annotations

import enum
import hashlib
from typing import Any

import msgspec

__all__ = ["Observation", "ObservationKind", "ObservationSource", "observation_id"]


class ObservationSource(enum.StrEnum):
    MQTT = "mqtt"
    HTTP = "http"
    PTP = "ptp"
    CA = "ca"
    ENERGY = "energy"


class ObservationKind(enum.StrEnum):
    HEARTBEAT = "heartbeat"
    TELEMETRY = "telemetry"
    EVENT = "event"


class Observation(msgspec.Struct, kw_only=True, frozen=True):
    """One accepted reading. ts/received_at are UTC ISO-8601 strings ending in Z."""

    id: str
    tenant_id: str
    device_id: str
    site_id: str | None
    source: str
    kind: str
    ts: str
    received_at: str
    metrics: dict[str, float] = {}
    states: dict[str, str] = {}
    tags: dict[str, str] = {}
    seq: int | None = None
    v: int = 1

    def to_message(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


def observation_id(tenant_id: str, device_id: str, kind: str, seq: int | None, ts: str) -> str:
    """A stable id: the same device message (e.g. an MQTT QoS 1 redelivery) gets the same id."""
    key = f"{tenant_id}\x1f{device_id}\x1f{kind}\x1f{seq}\x1f{ts}".encode()
    return hashlib.blake2b(key, digest_size=12).hexdigest()
