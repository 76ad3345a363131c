"""Device state machine and deadline heap without servers."""

from __future__ import annotations

import pytest

from services.evaluator.state import Device, DeviceStatus, DeviceTracker, Thresholds

pytestmark = pytest.mark.unit


def tracker() -> DeviceTracker:
    return DeviceTracker(Thresholds(stale_after_s=30, offline_after_s=300))


def test_device_goes_online_stale_offline_at_its_deadlines_and_online_again() -> None:
    tr = tracker()
    _, t = tr.observe("t", "d1", None, "heartbeat", 1000.0, 1000.0)
    assert t is not None and (t.previous, t.status) == (DeviceStatus.OFFLINE, DeviceStatus.ONLINE)
    assert tr.expire(1029.9) == []
    assert [x.status for x in tr.expire(1030.0)] == [DeviceStatus.STALE]
    assert tr.expire(1299.0) == []
    assert [x.status for x in tr.expire(1300.0)] == [DeviceStatus.OFFLINE]
    assert tr.expire(5000.0) == []
    _, t = tr.observe("t", "d1", None, "telemetry", 5001.0, 5001.0)
    assert t is not None and t.status is DeviceStatus.ONLINE


def test_messages_push_the_deadline_without_growing_the_heap() -> None:
    tr = tracker()
    for i in range(1000):
        tr.observe("t", "d1", None, "telemetry", 1000.0 + i * 0.01, 1000.0 + i * 0.01)
    assert len(tr._heap) == 1
    assert tr.expire(1031.0) == []  # the entry comes due, is pushed back to last_seen + 30
    assert [x.status for x in tr.expire(1039.99 + 0.01)] == [DeviceStatus.STALE]


def test_devices_loaded_at_start_up_go_stale_from_their_last_seen() -> None:
    tr = tracker()
    tr.load(
        [
            Device("t", "old", None, DeviceStatus.ONLINE, last_seen=100.0),
            Device("t", "new", None, DeviceStatus.ONLINE, last_seen=990.0),
        ]
    )
    got = tr.expire(1000.0)
    assert [(x.device.device_id, x.status) for x in got] == [("old", DeviceStatus.STALE), ("old", DeviceStatus.OFFLINE)]


def test_per_tenant_and_per_device_thresholds() -> None:
    tr = DeviceTracker(Thresholds(30, 300, tenant_stale={"slow": 100}))
    tr.observe("slow", "a", None, "heartbeat", 0.0, 0.0)
    d, _ = tr.observe("slow", "b", None, "heartbeat", 0.0, 0.0)
    d.stale_override = 5
    tr.reschedule_all()
    assert [x.device.device_id for x in tr.expire(6.0)] == ["b"]
    assert [x.device.device_id for x in tr.expire(100.0)] == ["a"]


def test_an_old_replayed_message_does_not_bring_a_device_online() -> None:
    tr = tracker()
    _, t = tr.observe("t", "d1", None, "telemetry", 100.0, 1000.0)
    assert t is None
    assert tr.devices[("t", "d1")].status is DeviceStatus.OFFLINE
