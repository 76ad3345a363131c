"""Built-in alerts: NO_HEARTBEAT (device state), PTP sync (source=ptp), EPICS IOCs (source=ca).

Each function reads one observation and returns `(fingerprint, spec or None)` pairs for the
conditions that observation speaks about: a spec means "this alert should be open" (opened,
or counted as a repeat), None means "this condition is clear" (resolved if open). Conditions
the observation does not mention are left as they are. When an alert's severity or type
changes (HOLDOVER -> FREERUN), the engine resolves the old alert and opens the new one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from services.evaluator.alerts import AlertSpec

__all__ = [
    "PTP_STATE_NAMES",
    "epics_alerts",
    "no_heartbeat",
    "no_heartbeat_fingerprint",
    "ptp_alerts",
]

Verdict = tuple[str, AlertSpec | None]

NO_HEARTBEAT = "NO_HEARTBEAT"
NO_HEARTBEAT_SEVERITY = "MAJOR"

PTP_STATE_NAMES = ("lock_state", "os_clock_sync_state", "sync_state", "gnss_sync_status")
# O-RAN O-Cloud notification sync-state values, and GNSS states folded onto them
_PTP_LEVEL = {
    "LOCKED": None,
    "SYNCHRONIZED": None,
    "HOLDOVER": ("PTP_HOLDOVER", "WARNING"),
    "FREERUN": ("PTP_FREERUN", "CRITICAL"),
}
_GNSS_FAILURE_PREFIXES = ("FAILURE", "ANTENNA")

_PV_SEVERITY = {"NO_ALARM": None, "MINOR": "WARNING", "MAJOR": "MAJOR", "INVALID": "CRITICAL"}
PV_SEVERITY_PREFIX = "severity:"


def no_heartbeat_fingerprint(device_id: str) -> str:
    return f"{NO_HEARTBEAT}:{device_id}"


def no_heartbeat(tenant_id: str, device_id: str, site_id: str | None, silent_s: float) -> AlertSpec:
    return AlertSpec(
        tenant_id=tenant_id,
        device_id=device_id,
        site_id=site_id,
        fingerprint=no_heartbeat_fingerprint(device_id),
        alert_type=NO_HEARTBEAT,
        severity=NO_HEARTBEAT_SEVERITY,
        summary=f"no heartbeat or telemetry from {device_id} for {silent_s:.0f} s",
    )


def ptp_alerts(
    tenant_id: str,
    device_id: str,
    site_id: str | None,
    states: Mapping[str, str],
    metrics: Mapping[str, float],
    ok_clock_classes: Collection[int],
) -> list[Verdict]:
    out: list[Verdict] = []
    for name in PTP_STATE_NAMES:
        raw = states.get(name)
        if raw is None:
            continue
        value = raw.upper()
        if name == "gnss_sync_status" and value.startswith(_GNSS_FAILURE_PREFIXES):
            value = "FREERUN"
        if value not in _PTP_LEVEL:
            continue  # ACQUIRING_SYNC, BOOTING, ...: no verdict until it settles
        fp = f"PTP_SYNC:{device_id}:{name}"
        level = _PTP_LEVEL[value]
        if level is None:
            out.append((fp, None))
            continue
        alert_type, severity = level
        summary = f"PTP {name} is {value} on {device_id}"
        out.append((fp, AlertSpec(tenant_id, device_id, site_id, fp, alert_type, severity, summary)))
    clock_class = metrics.get("clock_class")
    if clock_class is not None:
        fp = f"PTP_CLOCK_CLASS:{device_id}"
        if int(clock_class) in ok_clock_classes:
            out.append((fp, None))
        else:
            summary = f"PTP clock class {int(clock_class)} on {device_id} is not locked or in holdover spec"
            out.append((fp, AlertSpec(tenant_id, device_id, site_id, fp, "PTP_CLOCK_CLASS", "MAJOR", summary)))
    return out


def epics_alerts(tenant_id: str, device_id: str, site_id: str | None, states: Mapping[str, str]) -> list[Verdict]:
    out: list[Verdict] = []
    beacon = states.get("beacon")
    if beacon is not None:
        beacon = beacon.upper()
        fp = f"EPICS_BEACON_LOST:{device_id}"
        if beacon == "LOST":
            summary = f"EPICS IOC {device_id}: beacon lost"
            out.append((fp, AlertSpec(tenant_id, device_id, site_id, fp, "EPICS_BEACON_LOST", "CRITICAL", summary)))
        else:
            out.append((fp, None))
        if beacon == "RESTARTED":
            fp = f"EPICS_IOC_RESTARTED:{device_id}"
            summary = f"EPICS IOC {device_id} restarted"
            out.append((fp, AlertSpec(tenant_id, device_id, site_id, fp, "EPICS_IOC_RESTARTED", "WARNING", summary)))
    for key, raw in states.items():
        if not key.startswith(PV_SEVERITY_PREFIX):
            continue
        pv = key[len(PV_SEVERITY_PREFIX) :]
        value = raw.upper()
        if value not in _PV_SEVERITY:
            continue
        fp = f"EPICS_PV_ALARM:{device_id}:{pv}"
        severity = _PV_SEVERITY[value]
        if severity is None:
            out.append((fp, None))
            continue
        summary = f"EPICS PV {pv} on {device_id} in {value} alarm"
        spec = AlertSpec(tenant_id, device_id, site_id, fp, "EPICS_PV_ALARM", severity, summary, details={"pv": pv})
        out.append((fp, spec))
    return out
