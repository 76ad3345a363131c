"""Device state in memory: ONLINE/STALE/OFFLINE per device, driven by a deadline heap.

Each tracked device that is not OFFLINE has at most one entry in a min-heap of deadlines. An
observation only moves `last_seen` forward; it does not touch the heap. When an entry comes
due, its real deadline is recomputed from `last_seen` (lazy deletion): still in the future ->
pushed back; past -> the device changes state. So the heap costs O(log n) per device per
threshold period, not per message, and detection is as accurate as the tick period.

    ONLINE --(stale_after_s silent)--> STALE --(offline_after_s silent)--> OFFLINE
      ^                                  |                                   |
      +---------- any observation -------+-----------------------------------+
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Device", "DeviceStatus", "DeviceTracker", "Thresholds", "Transition"]


class DeviceStatus(enum.StrEnum):
    ONLINE = "ONLINE"
    STALE = "STALE"
    OFFLINE = "OFFLINE"


# guarded transitions: which status may follow which
_ALLOWED = {
    DeviceStatus.ONLINE: {DeviceStatus.STALE},
    DeviceStatus.STALE: {DeviceStatus.ONLINE, DeviceStatus.OFFLINE},
    DeviceStatus.OFFLINE: {DeviceStatus.ONLINE},
}


class Device:
    """One device's state; times are Unix seconds."""

    __slots__ = (
        "changed_at",
        "device_id",
        "in_heap",
        "last_heartbeat",
        "last_seen",
        "last_telemetry",
        "rules_active",
        "site_id",
        "stale_override",
        "status",
        "tenant_id",
    )

    def __init__(
        self,
        tenant_id: str,
        device_id: str,
        site_id: str | None = None,
        status: DeviceStatus = DeviceStatus.OFFLINE,
        last_seen: float = 0.0,
        changed_at: float = 0.0,
        stale_override: float | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.device_id = device_id
        self.site_id = site_id
        self.status = status
        self.last_seen = last_seen
        self.last_heartbeat = 0.0
        self.last_telemetry = 0.0
        self.changed_at = changed_at
        self.stale_override = stale_override
        self.in_heap = False
        # rule ids with an open alert or a pending duration for this device (a superset: the
        # evaluator skips the full check of any other rule whose condition does not hold)
        self.rules_active: set[str] | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    device: Device
    status: DeviceStatus
    previous: DeviceStatus
    at: float


@dataclass
class Thresholds:
    """Staleness thresholds: global defaults, per-tenant overrides (settings table)."""

    stale_after_s: float
    offline_after_s: float
    tenant_stale: dict[str, float] = field(default_factory=dict)
    tenant_offline: dict[str, float] = field(default_factory=dict)

    def stale(self, d: Device) -> float:
        if d.stale_override is not None:
            return d.stale_override
        return self.tenant_stale.get(d.tenant_id, self.stale_after_s)

    def offline(self, d: Device) -> float:
        return max(self.tenant_offline.get(d.tenant_id, self.offline_after_s), self.stale(d))


class DeviceTracker:
    """All devices of the shards this process owns, keyed by (tenant_id, device_id)."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.devices: dict[tuple[str, str], Device] = {}
        self.dirty: set[Device] = set()  # last_seen/status not yet in Postgres
        self._heap: list[tuple[float, int, Device]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self.devices)

    def load(self, devices: Iterable[Device]) -> None:
        """Adopt devices read from device_state (start-up); deadlines follow their last_seen."""
        for d in devices:
            self.devices[(d.tenant_id, d.device_id)] = d
            self._schedule(d)

    def device(self, tenant_id: str, device_id: str) -> Device:
        """The device's record, created (OFFLINE, never seen) if unknown."""
        key = (tenant_id, device_id)
        d = self.devices.get(key)
        if d is None:
            d = self.devices[key] = Device(tenant_id, device_id)
        return d

    def observe(
        self, tenant_id: str, device_id: str, site_id: str | None, kind: str, seen: float, now: float
    ) -> tuple[Device, Transition | None]:
        """Record an observation received at `seen`; return the device and its transition, if any."""
        key = (tenant_id, device_id)
        d = self.devices.get(key)
        if d is None:
            d = self.devices[key] = Device(tenant_id, device_id, site_id)
        elif site_id is not None and d.site_id != site_id:
            d.site_id = site_id
        if seen > d.last_seen:
            d.last_seen = seen
        if kind == "heartbeat":
            d.last_heartbeat = max(d.last_heartbeat, seen)
        elif kind == "telemetry":
            d.last_telemetry = max(d.last_telemetry, seen)
        self.dirty.add(d)
        transition = None
        # a replayed backlog entry older than the threshold says nothing about the device now
        if d.status is not DeviceStatus.ONLINE and d.last_seen + self.thresholds.stale(d) > now:
            transition = self._move(d, DeviceStatus.ONLINE, now)
        if not d.in_heap and d.status is not DeviceStatus.OFFLINE:
            self._schedule(d)
        return d, transition

    def expire(self, now: float) -> list[Transition]:
        """Devices whose deadline passed change state; return the transitions in order."""
        out: list[Transition] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, d = heapq.heappop(heap)
            d.in_heap = False
            due = self._due(d)
            if due is None:
                continue
            if due > now:
                self._push(d, due)
                continue
            nxt = DeviceStatus.STALE if d.status is DeviceStatus.ONLINE else DeviceStatus.OFFLINE
            out.append(self._move(d, nxt, now))
            self.dirty.add(d)
            self._schedule(d)
        return out

    def reschedule_all(self) -> None:
        """Rebuild every deadline (thresholds changed)."""
        self._heap = []
        for d in self.devices.values():
            d.in_heap = False
            self._schedule(d)

    def overdue_by(self, d: Device, now: float) -> float:
        """How late a detection at `now` is relative to the device's current deadline."""
        due = self._due(d)
        return 0.0 if due is None else now - due

    def _due(self, d: Device) -> float | None:
        if d.status is DeviceStatus.ONLINE:
            return d.last_seen + self.thresholds.stale(d)
        if d.status is DeviceStatus.STALE:
            return d.last_seen + self.thresholds.offline(d)
        return None

    def _schedule(self, d: Device) -> None:
        due = self._due(d)
        if due is not None and not d.in_heap:
            self._push(d, due)

    def _push(self, d: Device, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), d))
        d.in_heap = True

    @staticmethod
    def _move(d: Device, status: DeviceStatus, now: float) -> Transition:
        if status not in _ALLOWED[d.status]:
            raise ValueError(f"device {d.device_id}: {d.status} -> {status} is not a transition")
        t = Transition(d, status, d.status, now)
        d.status = status
        d.changed_at = now
        return t
