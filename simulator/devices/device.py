"""One simulated device: identity and token, seq counter, a plausible metric model, and its messages."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from services.common.credentials import new_device_token

__all__ = ["ACCEPTED", "NORMAL", "Credentials", "Outgoing", "SimDevice", "ThresholdRamp", "utc_iso"]

NORMAL = "normal"  # tag of messages that belong to no scenario
ACCEPTED = "accepted"  # expected outcome of a valid message

_encode = msgspec.json.encode


def utc_iso(ts: datetime | None = None) -> str:
    """UTC ISO-8601 with milliseconds and Z, as devices put it in `ts`."""
    ts = ts or datetime.now(UTC)
    return ts.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


@dataclass(frozen=True)
class Credentials:
    tenant_id: str
    device_id: str
    site_id: str
    token: str

    @property
    def key(self) -> str:
        return f"{self.tenant_id}/{self.device_id}"


@dataclass(slots=True)
class Outgoing:
    """One message ready for any transport; `raw` replaces the JSON body of a malformed one."""

    creds: Credentials
    msg_type: str  # heartbeat | telemetry
    tag: str  # NORMAL or a Scenario value
    seq: int
    token: str  # presented as X-Provision-Token over HTTP (also in the payload)
    payload: dict[str, Any] | None = None
    raw: bytes | None = None
    expect: str = ACCEPTED  # ACCEPTED or the reason code ingest should refuse it with

    @property
    def topic(self) -> str:
        return f"tenant/{self.creds.tenant_id}/device/{self.creds.device_id}/{self.msg_type}"

    def body(self) -> bytes:
        return self.raw if self.raw is not None else _encode(self.payload)


@dataclass(frozen=True)
class ThresholdRamp:
    """`metric` moves in a straight line from the device's normal value to cross `threshold` at `after_s`."""

    metric: str
    threshold: float
    after_s: float

    def value(self, start: float, t: float) -> float:
        span = self.threshold - start
        overshoot = max(abs(span) * 0.1, 1.0) * (1 if span >= 0 else -1)
        value = start + span * t / self.after_s
        limit = self.threshold + overshoot
        return min(value, limit) if span >= 0 else max(value, limit)

    def crossed(self, start: float, value: float) -> bool:
        return value > self.threshold if self.threshold >= start else value < self.threshold


# broken payloads in turn: (name, reason ingest answers with)
MALFORMED_VARIANTS = (
    ("truncated-json", "MALFORMED_JSON"),
    ("wrong-types", "SCHEMA_INVALID"),
    ("not-json", "MALFORMED_JSON"),
    ("missing-site", "MISSING_SITE_ID"),
)


class SimDevice:
    """State of one device while the fleet runs; `t` is seconds since the fleet started sending."""

    def __init__(self, creds: Credentials, rng: random.Random) -> None:
        self.creds = creds
        self.seq = 0  # restarts at 1 every run, like a rebooted device
        self.ramp: ThresholdRamp | None = None
        self.regular_tag = NORMAL  # silent and threshold devices tag their own regular traffic
        self.silent_after_s: float | None = None  # the silent scenario's device sends nothing from then on
        self._temp = rng.uniform(19.0, 24.0)
        self._humidity = rng.uniform(35.0, 55.0)
        self._battery = rng.uniform(3.95, 4.15)
        self._drain = rng.uniform(2e-5, 5e-5)  # volts per second
        self._phase = rng.uniform(0, 2 * math.pi)
        self._rng = rng
        self._bad_token = new_device_token()  # looks like a token; belongs to no device
        self._malformed = 0
        self.ramp_start = 0.0
        self.crossed_at: float | None = None  # t of the first message past the threshold
        self.crossed_value: float | None = None

    def set_ramp(self, ramp: ThresholdRamp) -> None:
        self.ramp = ramp
        self.ramp_start = {"temp_c": self._temp, "humidity": self._humidity, "battery_v": self._battery}[ramp.metric]

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _normal(self, t: float) -> dict[str, float]:
        g = self._rng.gauss
        return {
            "temp_c": round(self._temp + 1.5 * math.sin(2 * math.pi * t / 300 + self._phase) + g(0, 0.2), 2),
            "humidity": round(
                min(100.0, max(0.0, self._humidity + 5 * math.sin(2 * math.pi * t / 600 + self._phase) + g(0, 0.5))),
                1,
            ),
            "battery_v": round(max(3.3, self._battery - self._drain * t), 3),
        }

    def metrics(self, t: float) -> dict[str, float]:
        values = self._normal(t)
        if self.ramp is not None:
            value = round(self.ramp.value(self.ramp_start, t), 2)
            values[self.ramp.metric] = value
            if self.crossed_at is None and self.ramp.crossed(self.ramp_start, value):
                self.crossed_at, self.crossed_value = t, value
        return values

    def _payload(self, seq: int, token: str, metrics: dict[str, Any]) -> dict[str, Any]:
        c = self.creds
        return {
            "ts": utc_iso(),
            "site_id": c.site_id,
            "tenant_id": c.tenant_id,
            "provision_token": token,
            "seq": seq,
            "metrics": metrics,
        }

    def telemetry(self, t: float, tag: str | None = None) -> Outgoing:
        seq = self._next_seq()
        payload = self._payload(seq, self.creds.token, self.metrics(t))
        return Outgoing(self.creds, "telemetry", tag or self.regular_tag, seq, self.creds.token, payload)

    def heartbeat(self, t: float) -> Outgoing:
        seq = self._next_seq()
        payload = self._payload(seq, self.creds.token, {})
        return Outgoing(self.creds, "heartbeat", self.regular_tag, seq, self.creds.token, payload)

    def bad_token(self, t: float, tag: str) -> Outgoing:
        seq = self._next_seq()
        payload = self._payload(seq, self._bad_token, self._normal(t))
        return Outgoing(self.creds, "telemetry", tag, seq, self._bad_token, payload, expect="TOKEN_INVALID")

    def malformed(self, t: float, tag: str) -> Outgoing:
        name, reason = MALFORMED_VARIANTS[self._malformed % len(MALFORMED_VARIANTS)]
        self._malformed += 1
        seq = self._next_seq()
        token = self.creds.token
        good = self._payload(seq, token, self._normal(t))
        msg = Outgoing(self.creds, "telemetry", tag, seq, token, expect=reason)
        if name == "truncated-json":
            text = _encode(good)
            msg.raw = text[: len(text) // 2]
        elif name == "not-json":
            msg.raw = f"temp_c={good['metrics']['temp_c']} seq={seq}".encode()
        elif name == "wrong-types":
            msg.payload = good | {"metrics": {"temp_c": "hot", "humidity": [40]}}
        else:  # missing-site
            del good["site_id"]
            msg.payload = good
        return msg
