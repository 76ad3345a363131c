"""The documented delivery payload (webhook body; also the data of the other channels).

{
  "v": 1, "delivery_id", "event_id", "transition": "OPEN|ACKNOWLEDGED|RESOLVED", "at", "sent_at",
  "tenant": {"tenant_id", "name"},
  "alert": {"alert_id", "alert_type", "severity", "status", "fingerprint", "summary", "details",
            "first_seen_at", "last_seen_at", "event_count"},
  "device": {"device_id", "site_id"},
  "links": {"alert", "device"}
}
`transition` is what happened in this event; `alert.status` is the alert's status now.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

__all__ = ["Row", "build_payload", "sample_payload"]


class Row(Protocol):
    """A joined job row (asyncpg.Record or a dict)."""

    def __getitem__(self, key: str, /) -> Any: ...


def _iso(value: Any) -> str | None:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value


def build_payload(row: Row, ui_base_url: str) -> dict[str, Any]:
    """The payload of one job from its joined row (job, alert_event, alert, tenant)."""
    base = ui_base_url.rstrip("/")
    alert_id = str(row["alert_id"])
    device_id = row["device_id"]
    return {
        "v": 1,
        "delivery_id": str(row["delivery_id"]),
        "event_id": str(row["event_id"]),
        "transition": row["transition"],
        "at": _iso(row["event_at"]),
        "sent_at": datetime.now(UTC).isoformat(),
        "tenant": {"tenant_id": row["tenant_id"], "name": row["tenant_name"]},
        "alert": {
            "alert_id": alert_id,
            "alert_type": row["alert_type"],
            "severity": row["event_severity"],
            "status": row["alert_status"],
            "fingerprint": row["fingerprint"],
            "summary": row["summary"],
            "details": row["details"] or {},
            "first_seen_at": _iso(row["first_seen_at"]),
            "last_seen_at": _iso(row["last_seen_at"]),
            "event_count": row["event_count"],
        },
        "device": {"device_id": device_id, "site_id": row["site_id"]},
        "links": {
            "alert": f"{base}/alerts/{alert_id}",
            "device": f"{base}/devices/{quote(device_id, safe='')}" if device_id else None,
        },
    }


def sample_payload(tenant_id: str, tenant_name: str, delivery_id: str, ui_base_url: str) -> dict[str, Any]:
    """A made-up alert for "send test": the same shape, clearly marked as a test."""
    now = datetime.now(UTC)
    zero = "00000000-0000-0000-0000-000000000000"
    row = {
        "alert_id": zero,
        "delivery_id": delivery_id,
        "event_id": zero,
        "transition": "OPEN",
        "event_at": now,
        "tenant_id": tenant_id,
        "tenant_name": tenant_name,
        "alert_type": "TEST",
        "event_severity": "INFO",
        "alert_status": "OPEN",
        "fingerprint": "pulse-test",
        "summary": "Test alert from Pulse: this integration works",
        "details": {"test": True},
        "first_seen_at": now,
        "last_seen_at": now,
        "event_count": 1,
        "device_id": "test-device",
        "site_id": "test-site",
    }
    payload = build_payload(row, ui_base_url)
    payload["test"] = True
    return payload
