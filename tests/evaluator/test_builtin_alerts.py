"""Built-in alerts through the running evaluator: NO_HEARTBEAT, PTP, EPICS."""

from __future__ import annotations

import asyncio

import pytest

from tests.evaluator.conftest import Harness, eventually, observation, seed

pytestmark = pytest.mark.integration

SLOW = {"PULSE_EVALUATOR_STALE_AFTER_S": "30", "PULSE_EVALUATOR_OFFLINE_AFTER_S": "60"}


async def test_no_heartbeat_opens_when_device_turns_stale_and_resolves_when_it_is_back(harness: Harness) -> None:
    await seed(harness.admin, "acme", {"d1": None})
    async with harness.running():
        await harness.send(observation("acme", "d1", kind="heartbeat"))
        await harness.wait_alert_statuses("NO_HEARTBEAT:d1", ["OPEN"], 3)
        await eventually(lambda: harness.statuses("d1"), lambda s: s[-1] == "OFFLINE", 3)
        await asyncio.sleep(0.2)
        assert await harness.alert_statuses("NO_HEARTBEAT:d1") == ["OPEN"]  # OFFLINE keeps the same alert
        await harness.send(observation("acme", "d1", kind="heartbeat"))
        await harness.wait_alert_statuses("NO_HEARTBEAT:d1", ["OPEN", "RESOLVED"])
    (row,) = await harness.alerts("NO_HEARTBEAT:d1")
    assert (row["alert_type"], row["severity"], row["status"]) == ("NO_HEARTBEAT", "MAJOR", "RESOLVED")
    assert row["resolved_by"] is None


async def test_ptp_holdover_freerun_and_clock_class_alerts_resolve_when_locked(harness: Harness) -> None:
    await seed(harness.admin, "telco", {"ru-1": "cell-9"})

    def ptp(states: dict[str, str], clock_class: float | None = None) -> dict[str, object]:
        metrics = {"offset_ns": 12.0} if clock_class is None else {"clock_class": clock_class, "offset_ns": 12.0}
        return observation("telco", "ru-1", source="ptp", kind="event", states=states, metrics=metrics)

    sync = "PTP_SYNC:ru-1:sync_state"
    cls = "PTP_CLOCK_CLASS:ru-1"
    async with harness.running(**SLOW):
        await harness.send(ptp({"sync_state": "LOCKED", "lock_state": "LOCKED"}, 6))
        await asyncio.sleep(0.3)
        assert await harness.alert_messages() == []
        await harness.send(ptp({"sync_state": "HOLDOVER"}, 7))
        await harness.wait_alert_statuses(sync, ["OPEN"])
        await harness.send(ptp({"sync_state": "FREERUN"}, 248))
        await eventually(lambda: harness.alert_messages(), lambda m: len(m) == 4)
        await harness.send(ptp({"sync_state": "LOCKED"}, 6))
        await eventually(lambda: harness.alert_messages(), lambda m: len(m) == 6)
    by_fp = [(m["fingerprint"], m["alert_type"], m["severity"], m["status"]) for m in await harness.alert_messages()]
    assert by_fp[0] == (sync, "PTP_HOLDOVER", "WARNING", "OPEN")
    assert sorted(by_fp[1:4]) == sorted(
        [
            (sync, "PTP_HOLDOVER", "WARNING", "RESOLVED"),
            (sync, "PTP_FREERUN", "CRITICAL", "OPEN"),
            (cls, "PTP_CLOCK_CLASS", "MAJOR", "OPEN"),
        ]
    )
    assert sorted(by_fp[4:]) == sorted(
        [(sync, "PTP_FREERUN", "CRITICAL", "RESOLVED"), (cls, "PTP_CLOCK_CLASS", "MAJOR", "RESOLVED")]
    )


async def test_epics_beacon_lost_ioc_restart_and_pv_alarm_severities(harness: Harness) -> None:
    await seed(harness.admin, "lab", {"ioc-1": None})

    def ca(**states: str) -> dict[str, object]:
        return observation("lab", "ioc-1", source="ca", kind="event", states=states)

    async with harness.running(**SLOW):
        await harness.send(ca(beacon="LOST"))
        await harness.wait_alert_statuses("EPICS_BEACON_LOST:ioc-1", ["OPEN"])
        await harness.send(ca(beacon="RESTARTED"))
        await harness.wait_alert_statuses("EPICS_BEACON_LOST:ioc-1", ["OPEN", "RESOLVED"])
        await harness.wait_alert_statuses("EPICS_IOC_RESTARTED:ioc-1", ["OPEN"])
        fp = "EPICS_PV_ALARM:ioc-1:LINAC:TEMP"
        for sev in ("MINOR", "MAJOR", "INVALID", "NO_ALARM"):
            await harness.send(ca(**{"severity:LINAC:TEMP": sev}))
        await eventually(lambda: harness.alert_messages(fp), lambda m: len(m) == 6)
    got = [(m["severity"], m["status"]) for m in await harness.alert_messages(fp)]
    assert got == [
        ("WARNING", "OPEN"),
        ("WARNING", "RESOLVED"),
        ("MAJOR", "OPEN"),
        ("MAJOR", "RESOLVED"),
        ("CRITICAL", "OPEN"),
        ("CRITICAL", "RESOLVED"),
    ]
    (beacon,) = await harness.alerts("EPICS_BEACON_LOST:ioc-1")
    assert beacon["severity"] == "CRITICAL"
    (restart,) = await harness.alerts("EPICS_IOC_RESTARTED:ioc-1")
    assert (restart["severity"], restart["status"]) == ("WARNING", "OPEN")
