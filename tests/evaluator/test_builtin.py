"""Built-in PTP and EPICS verdicts without servers."""

from __future__ import annotations

import pytest

from services.evaluator.builtin import epics_alerts, ptp_alerts

pytestmark = pytest.mark.unit

OK = frozenset({6, 7, 135})


def verdicts(items: list[tuple[str, object]]) -> dict[str, tuple[str, str] | None]:
    return {fp: None if s is None else (s.alert_type, s.severity) for fp, s in items}  # type: ignore[attr-defined]


def test_ptp_states_map_to_severities_and_locked_clears() -> None:
    got = verdicts(
        ptp_alerts(
            "t", "ru", None,
            {"lock_state": "HOLDOVER", "os_clock_sync_state": "FREERUN", "sync_state": "LOCKED",
             "gnss_sync_status": "FAILURE_NOFIX"},
            {"clock_class": 248, "offset_ns": 5000},
            OK,
        )
    )  # fmt: skip
    assert got == {
        "PTP_SYNC:ru:lock_state": ("PTP_HOLDOVER", "WARNING"),
        "PTP_SYNC:ru:os_clock_sync_state": ("PTP_FREERUN", "CRITICAL"),
        "PTP_SYNC:ru:sync_state": None,
        "PTP_SYNC:ru:gnss_sync_status": ("PTP_FREERUN", "CRITICAL"),
        "PTP_CLOCK_CLASS:ru": ("PTP_CLOCK_CLASS", "MAJOR"),
    }


@pytest.mark.parametrize("clock_class", [6, 7, 135])
def test_locked_and_in_spec_holdover_clock_classes_clear(clock_class: int) -> None:
    assert verdicts(ptp_alerts("t", "ru", None, {}, {"clock_class": clock_class}, OK)) == {"PTP_CLOCK_CLASS:ru": None}


def test_transient_gnss_states_give_no_verdict() -> None:
    assert ptp_alerts("t", "ru", None, {"gnss_sync_status": "ACQUIRING_SYNC"}, {}, OK) == []


def test_epics_beacon_restart_and_pv_severities() -> None:
    got = verdicts(
        epics_alerts(
            "t",
            "ioc",
            None,
            {"beacon": "LOST", "severity:A": "MINOR", "severity:B": "INVALID", "severity:C": "NO_ALARM"},
        )
    )
    assert got == {
        "EPICS_BEACON_LOST:ioc": ("EPICS_BEACON_LOST", "CRITICAL"),
        "EPICS_PV_ALARM:ioc:A": ("EPICS_PV_ALARM", "WARNING"),
        "EPICS_PV_ALARM:ioc:B": ("EPICS_PV_ALARM", "CRITICAL"),
        "EPICS_PV_ALARM:ioc:C": None,
    }
    restarted = verdicts(epics_alerts("t", "ioc", None, {"beacon": "RESTARTED", "severity:A": "MAJOR"}))
    assert restarted == {
        "EPICS_BEACON_LOST:ioc": None,
        "EPICS_IOC_RESTARTED:ioc": ("EPICS_IOC_RESTARTED", "WARNING"),
        "EPICS_PV_ALARM:ioc:A": ("EPICS_PV_ALARM", "MAJOR"),
    }
