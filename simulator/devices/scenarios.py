"""Which device plays which scenario, and the timed events that drive the fleet.

Per tenant, each enabled scenario gets one device, distinct while there are enough:
the silent device is the tenant's last and never shares; the burst device is the first, so
its rate-limit bucket is not shared with bad-token or malformed messages (whose expected
reasons would otherwise turn into RATE_LIMITED); threshold, bad-token and malformed take the
devices in between, in turn. With fewer devices than that, scenarios share devices.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from simulator.devices.config import FleetConfig, Scenario
from simulator.devices.device import SimDevice, ThresholdRamp, utc_iso

__all__ = ["Event", "Role", "Tick", "apply", "assign", "describe", "initial_events", "records"]


class Tick(enum.Enum):
    TELEMETRY = "telemetry"
    HEARTBEAT = "heartbeat"
    BAD_TOKEN = "bad-token"  # noqa: S105 - a scenario name
    MALFORMED = "malformed"
    BURST = "burst"


@dataclass(frozen=True, slots=True)
class Event:
    """Something `device` does at a due time; periodic ones come back every `period` seconds."""

    tick: Tick
    device: SimDevice
    period: float | None = None


@dataclass(frozen=True)
class Role:
    scenario: Scenario
    device: SimDevice


def assign(scenarios: Iterable[Scenario], devices: Sequence[SimDevice]) -> list[Role]:
    """The roles within one tenant (see the module docstring for the rule)."""
    wanted = set(scenarios)
    roles: dict[Scenario, SimDevice] = {}
    free = list(devices)
    if Scenario.SILENT in wanted:
        roles[Scenario.SILENT] = free.pop()
    if Scenario.BURST in wanted:
        roles[Scenario.BURST] = free.pop(0) if free else devices[0]
    silent = roles.get(Scenario.SILENT)
    rest = free or [d for d in devices if d is not silent] or list(devices)
    others = [s for s in (Scenario.THRESHOLD, Scenario.BAD_TOKEN, Scenario.MALFORMED) if s in wanted]
    for n, scenario in enumerate(others):
        roles[scenario] = rest[n % len(rest)]
    return [Role(s, roles[s]) for s in Scenario if s in roles]


def apply(roles: Iterable[Role], config: FleetConfig) -> None:
    """Give the devices the state their roles need (silence point, threshold ramp, tags)."""
    for role in roles:
        device = role.device
        if role.scenario is Scenario.SILENT:
            device.silent_after_s = config.silent_after_s
            device.regular_tag = Scenario.SILENT.value
        elif role.scenario is Scenario.THRESHOLD:
            device.set_ramp(ThresholdRamp(config.threshold_metric, config.threshold, config.threshold_after_s))
            if device.regular_tag != Scenario.SILENT.value:
                device.regular_tag = Scenario.THRESHOLD.value


def initial_events(
    config: FleetConfig, devices: Sequence[SimDevice], roles: Iterable[Role]
) -> list[tuple[float, Event]]:
    """(first due time, event) for every device and role; starts are spread over one period."""
    period = 1 / config.rate
    events: list[tuple[float, Event]] = []
    for n, device in enumerate(devices):
        offset = period * n / len(devices)
        events.append((offset, Event(Tick.TELEMETRY, device, period)))
        if config.heartbeat_every_s:
            events.append((offset, Event(Tick.HEARTBEAT, device, config.heartbeat_every_s)))
    every = config.fault_every_s
    for role in roles:
        if role.scenario is Scenario.BAD_TOKEN:
            events.append((every * 0.5, Event(Tick.BAD_TOKEN, role.device, every)))
        elif role.scenario is Scenario.MALFORMED:
            events.append((every * 0.75, Event(Tick.MALFORMED, role.device, every)))
        elif role.scenario is Scenario.BURST:
            events.append((config.burst_at_s, Event(Tick.BURST, role.device)))
    return events


def describe(config: FleetConfig, roles: Sequence[Role]) -> list[str]:
    """The plan in words, one line per scenario (all tenants' devices on that line)."""
    lines = []
    for scenario in Scenario:
        who = ", ".join(r.device.creds.key for r in roles if r.scenario is scenario)
        if not who:
            continue
        detail = {
            Scenario.SILENT: f"stops sending at {config.silent_after_s:g}s",
            Scenario.THRESHOLD: f"{config.threshold_metric} crosses {config.threshold:g}"
            f" at {config.threshold_after_s:g}s",
            Scenario.BAD_TOKEN: f"a wrong-token message every {config.fault_every_s:g}s (TOKEN_INVALID)",
            Scenario.MALFORMED: f"a broken payload every {config.fault_every_s:g}s",
            Scenario.BURST: f"{config.burst_count} messages at once at {config.burst_at_s:g}s (RATE_LIMITED)",
        }[scenario]
        lines.append(f"{scenario.value}: {who}: {detail}")
    return lines


def records(
    roles: Sequence[Role], config: FleetConfig, started_wall: float, burst_times: dict[str, float]
) -> list[dict[str, Any]]:
    """What each scenario device did, for the summary (times as seconds since start and UTC)."""
    out: list[dict[str, Any]] = []
    for role in roles:
        d = role.device
        rec: dict[str, Any] = {
            "scenario": role.scenario.value,
            "tenant_id": d.creds.tenant_id,
            "device_id": d.creds.device_id,
        }
        if role.scenario is Scenario.SILENT:
            rec |= {
                "silent_after_s": config.silent_after_s,
                "silent_at": utc_iso(datetime.fromtimestamp(started_wall + config.silent_after_s, UTC)),
                "last_seq": d.seq,  # nothing is sent after the silence point
            }
        elif role.scenario is Scenario.THRESHOLD:
            rec |= {
                "metric": config.threshold_metric,
                "threshold": config.threshold,
                "crossed_at_s": None if d.crossed_at is None else round(d.crossed_at, 3),
                "crossed_value": d.crossed_value,
            }
        elif role.scenario is Scenario.BURST:
            at = burst_times.get(d.creds.key)
            rec |= {"at_s": None if at is None else round(at, 3), "count": config.burst_count if at is not None else 0}
        out.append(rec)
    return out
