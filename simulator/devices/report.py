"""What the fleet sent and what came back: running counters, progress lines and the final summary.

Over HTTP every message gets ingest's answer (accepted, or refused with a reason code). Over
MQTT the broker's PUBACK says only that the broker has it; whether ingest accepted it shows in
the `pulse:observations` stream and the `quarantine_events` table, so the summary lists the
refusals each message was built to get (`expected`) next to what was sent.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from simulator.devices.device import ACCEPTED, NORMAL, Outgoing

__all__ = ["DeviceTally", "Stats", "Summary", "Tally"]


@dataclass
class Tally:
    sent: int = 0  # handed to the transport
    heartbeat: int = 0
    telemetry: int = 0
    delivered: int = 0  # the broker acknowledged it, or ingest answered
    accepted: int = 0  # HTTP only: 202
    rejected: Counter[str] = field(default_factory=Counter)  # HTTP only: reason code -> count
    errors: Counter[str] = field(default_factory=Counter)  # not delivered: kind -> count
    expected: Counter[str] = field(default_factory=Counter)  # refusals the messages were built to get

    def to_dict(self, outcome_known: bool) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "heartbeat": self.heartbeat,
            "telemetry": self.telemetry,
            "delivered": self.delivered,
            "accepted": self.accepted if outcome_known else None,
            "rejected": dict(sorted(self.rejected.items())) if outcome_known else None,
            "errors": dict(sorted(self.errors.items())),
            "expected_rejections": dict(sorted(self.expected.items())),
        }


@dataclass
class DeviceTally:
    sent: int = 0
    accepted: int = 0
    last_seq: int = 0


class Stats:
    """Counters updated by the transports as messages go out and answers come back."""

    def __init__(self, *, outcome_known: bool) -> None:
        self.outcome_known = outcome_known
        self.total = Tally()
        self.by_tag: dict[str, Tally] = {NORMAL: Tally()}
        self.devices: dict[str, DeviceTally] = {}
        self.skipped_ticks = 0  # ticks dropped because the simulator fell more than a period behind

    def sent(self, msg: Outgoing) -> None:
        tally = self.by_tag.get(msg.tag)
        if tally is None:
            tally = self.by_tag[msg.tag] = Tally()
        for t in (self.total, tally):
            t.sent += 1
            if msg.msg_type == "heartbeat":
                t.heartbeat += 1
            else:
                t.telemetry += 1
            if msg.expect != ACCEPTED:
                t.expected[msg.expect] += 1
        device = self.devices.get(msg.creds.key)
        if device is None:
            device = self.devices[msg.creds.key] = DeviceTally()
        device.sent += 1
        device.last_seq = max(device.last_seq, msg.seq)

    def published(self, msg: Outgoing) -> None:
        for t in (self.total, self.by_tag[msg.tag]):
            t.delivered += 1

    def accepted(self, msg: Outgoing) -> None:
        for t in (self.total, self.by_tag[msg.tag]):
            t.delivered += 1
            t.accepted += 1
        self.devices[msg.creds.key].accepted += 1

    def rejected(self, msg: Outgoing, reason: str) -> None:
        for t in (self.total, self.by_tag[msg.tag]):
            t.delivered += 1
            t.rejected[reason] += 1

    def error(self, msg: Outgoing, kind: str) -> None:
        for t in (self.total, self.by_tag[msg.tag]):
            t.errors[kind] += 1

    def progress_line(self, elapsed: float, rate: float, target_rate: float) -> str:
        t = self.total
        parts = [f"{elapsed:7.1f}s", f"sent {t.sent}", f"({rate:.1f}/s, target {target_rate:.1f}/s)"]
        if self.outcome_known:
            parts.append(f"accepted {t.accepted}")
            parts.append("rejected " + (_counts(t.rejected) or "0"))
        else:
            parts.append(f"broker-acked {t.delivered}")
        parts.append("errors " + (_counts(t.errors) or "0"))
        if self.skipped_ticks:
            parts.append(f"behind: {self.skipped_ticks} ticks skipped")
        return " ".join(parts)


def _counts(counter: Counter[str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counter.items()))


@dataclass
class Summary:
    """The result of one run: totals, per scenario, per device, and what each scenario device did."""

    transport: str
    target: str  # where messages went (broker or ingest URL)
    tenants: list[str]
    devices_per_tenant: int
    started_at: str | None  # UTC, when sending began (None: stopped before)
    ended_at: str
    duration_s: float
    target_rate: float
    stopped_by: str  # duration | stop
    stats: Stats
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    provisioning: dict[str, int] = field(default_factory=dict)

    @property
    def totals(self) -> Tally:
        return self.stats.total

    @property
    def by_scenario(self) -> dict[str, Tally]:
        return self.stats.by_tag

    @property
    def errors(self) -> int:
        return sum(self.totals.errors.values())

    def to_dict(self) -> dict[str, Any]:
        known = self.stats.outcome_known
        rate = self.totals.sent / self.duration_s if self.duration_s else 0.0
        return {
            "transport": self.transport,
            "target": self.target,
            "tenants": self.tenants,
            "devices_per_tenant": self.devices_per_tenant,
            "devices": len(self.tenants) * self.devices_per_tenant,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": round(self.duration_s, 3),
            "stopped_by": self.stopped_by,
            "target_rate": round(self.target_rate, 3),
            "actual_rate": round(rate, 3),
            "outcome_known": known,
            "totals": self.totals.to_dict(known),
            "by_scenario": {tag: t.to_dict(known) for tag, t in self.by_scenario.items()},
            "scenarios": self.scenarios,
            "per_device": {
                key: {"sent": d.sent, "accepted": d.accepted if known else None, "last_seq": d.last_seq}
                for key, d in sorted(self.stats.devices.items())
            },
            "skipped_ticks": self.stats.skipped_ticks,
            "provisioning": self.provisioning,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self) -> str:
        """The summary as a person reads it at the end of a run."""
        known = self.stats.outcome_known
        n_devices = len(self.tenants) * self.devices_per_tenant
        rate = self.totals.sent / self.duration_s if self.duration_s else 0.0
        lines = [
            f"Pulse device simulator: {len(self.tenants)} tenant(s) x {self.devices_per_tenant} device(s)"
            f" = {n_devices} over {self.transport} -> {self.target}",
            f"ran {self.duration_s:.1f}s (stopped by {self.stopped_by}); sent {self.totals.sent} messages"
            f" at {rate:.1f}/s (target {self.target_rate:.1f}/s)",
            "",
        ]
        head = ["scenario", "sent", "heartbeat", "telemetry", "accepted" if known else "broker-acked"]
        head += ["rejected" if known else "expected refusals", "errors"]
        rows = [head]
        for tag, t in [*self.by_scenario.items(), ("total", self.totals)]:
            if tag != "total" and tag != NORMAL and not t.sent:
                continue
            answer = _counts(t.rejected) if known else _counts(t.expected)
            rows.append(
                [
                    tag,
                    str(t.sent),
                    str(t.heartbeat),
                    str(t.telemetry),
                    str(t.accepted if known else t.delivered),
                    answer or "-",
                    _counts(t.errors) or "0",
                ]
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        for row in rows:
            cells = [
                c.ljust(w) if i in (0, 5) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
        if self.scenarios:
            lines.append("")
        for rec in self.scenarios:
            lines.append("  " + _describe(rec))
        if not known:
            lines.append("")
            lines.append(
                "  over MQTT the broker acknowledges, not ingest: accepted messages are in pulse:observations,"
                " refusals in quarantine_events"
            )
        if self.stats.skipped_ticks:
            lines.append(f"  the simulator fell behind: {self.stats.skipped_ticks} ticks skipped")
        return "\n".join(lines)


def _describe(rec: dict[str, Any]) -> str:
    who = f"{rec['scenario']}: {rec['tenant_id']}/{rec['device_id']}"
    scenario = rec["scenario"]
    if scenario == "silent":
        return f"{who} went silent at {rec['silent_after_s']:g}s ({rec['silent_at']}) after seq {rec['last_seq']}"
    if scenario == "threshold":
        if rec["crossed_at_s"] is None:
            return f"{who} {rec['metric']} did not reach {rec['threshold']:g} before the run ended"
        return (
            f"{who} {rec['metric']} crossed {rec['threshold']:g} at {rec['crossed_at_s']:g}s ({rec['crossed_value']:g})"
        )
    if scenario == "burst":
        if rec["at_s"] is None:
            return f"{who} the burst was not reached before the run ended"
        return f"{who} sent {rec['count']} messages at once at {rec['at_s']:g}s"
    if scenario == "bad-token":
        return f"{who} sent messages with a wrong token"
    return f"{who} sent broken payloads"
