"""The device message on the wire, decoded and checked at the edge (pure functions, no I/O)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import msgspec

from services.ingest.reasons import Reason, Rejected

__all__ = [
    "MSG_TYPES",
    "BatchItem",
    "DevicePayload",
    "Limits",
    "check_payload",
    "decode_batch_item",
    "decode_payload",
    "format_ts",
    "parse_topic",
]

MSG_TYPES = frozenset({"heartbeat", "telemetry"})
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_METRIC = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")


class DevicePayload(msgspec.Struct, forbid_unknown_fields=False):
    """`{ts?, site_id, tenant_id?, provision_token, seq, metrics}` as the reference devices send it."""

    site_id: str | None = None
    tenant_id: str | None = None
    provision_token: str | None = None
    seq: int | None = None
    ts: str | float | None = None
    metrics: dict[str, float | bool] = {}


class Limits(msgspec.Struct, frozen=True):
    max_metrics: int = 100
    max_past: timedelta = timedelta(days=7)
    max_future: timedelta = timedelta(minutes=5)


class BatchItem(DevicePayload):
    """One message of POST /ingest/v1/batch: the device payload plus where it comes from."""

    tenant_id: str = ""
    device_id: str = ""
    msg_type: str = "telemetry"


_decoder = msgspec.json.Decoder(DevicePayload)
_item_decoder = msgspec.json.Decoder(BatchItem)


_TOPICS: dict[str, tuple[str, str, str]] = {}
_TOPICS_MAX = 200_000  # valid topics seen; a device's topic repeats with every message


def parse_topic(topic: str) -> tuple[str, str, str]:
    """`tenant/{tenant_id}/device/{device_id}/{msg_type}` -> (tenant_id, device_id, msg_type)."""
    known = _TOPICS.get(topic)
    if known is not None:
        return known
    parsed = _parse_topic(topic)
    if len(_TOPICS) >= _TOPICS_MAX:
        _TOPICS.clear()
    _TOPICS[topic] = parsed
    return parsed


def _parse_topic(topic: str) -> tuple[str, str, str]:
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "tenant" or parts[2] != "device":
        raise Rejected(Reason.BAD_TOPIC_FORMAT, "topic must be tenant/{tenant_id}/device/{device_id}/{msg_type}")
    _, tenant_id, _, device_id, msg_type = parts
    check_ids(tenant_id, device_id)
    check_msg_type(msg_type)
    return tenant_id, device_id, msg_type


def check_ids(tenant_id: str, device_id: str) -> None:
    if not _ID.match(tenant_id) or not _ID.match(device_id):
        raise Rejected(Reason.BAD_TOPIC_FORMAT, "tenant_id and device_id must be 1-128 of A-Z a-z 0-9 _ . : -")


def check_msg_type(msg_type: str) -> None:
    if msg_type not in MSG_TYPES:
        raise Rejected(Reason.INVALID_MSG_TYPE, "msg_type must be heartbeat or telemetry")


def decode_payload(body: bytes) -> DevicePayload:
    try:
        payload = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise Rejected(Reason.SCHEMA_INVALID, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Rejected(Reason.MALFORMED_JSON, str(exc)) from None
    return payload


def decode_batch_item(raw: bytes) -> BatchItem:
    try:
        item = _item_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise Rejected(Reason.SCHEMA_INVALID, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Rejected(Reason.MALFORMED_JSON, str(exc)) from None
    if not item.tenant_id or not item.device_id:
        raise Rejected(Reason.SCHEMA_INVALID, "tenant_id and device_id are required")
    return item


def check_payload(payload: DevicePayload, limits: Limits, now: datetime) -> tuple[dict[str, float], datetime]:
    """Metrics as floats and the reading's UTC time, or Rejected(SCHEMA_INVALID | TS_OUT_OF_RANGE)."""
    if payload.seq is not None and payload.seq < 0:
        raise Rejected(Reason.SCHEMA_INVALID, "seq must be >= 0")
    metrics = payload.metrics
    if len(metrics) > limits.max_metrics:
        raise Rejected(Reason.SCHEMA_INVALID, f"at most {limits.max_metrics} metrics per message")
    values: dict[str, float] = {}
    for name, value in metrics.items():
        if not _METRIC.match(name):
            raise Rejected(Reason.SCHEMA_INVALID, f"metric name {name[:64]!r} must match {_METRIC.pattern}")
        number = float(value)
        if not math.isfinite(number):
            raise Rejected(Reason.SCHEMA_INVALID, f"metric {name!r} must be a finite number")
        values[name] = number
    ts = now if payload.ts is None else _parse_ts(payload.ts)
    if ts < now - limits.max_past or ts > now + limits.max_future:
        raise Rejected(Reason.TS_OUT_OF_RANGE, f"ts {format_ts(ts)} is too far from server time {format_ts(now)}")
    return values, ts


def _parse_ts(raw: str | float) -> datetime:
    try:
        if isinstance(raw, str):
            ts = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            return ts.astimezone(UTC)
        seconds = raw / 1000 if raw > 1e11 else raw  # epoch seconds or milliseconds
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        raise Rejected(Reason.SCHEMA_INVALID, "ts must be ISO-8601 or epoch seconds/milliseconds") from None


def format_ts(ts: datetime) -> str:
    """UTC ISO-8601 with microseconds and Z (isoformat is several times faster than strftime)."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return ts.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
