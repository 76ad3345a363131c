"""What a simulated fleet does: size, rate, transport, endpoints and scenarios, checked once."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

__all__ = ["METRICS", "FleetConfig", "Scenario", "SimulatorError", "TransportKind"]


class SimulatorError(Exception):
    """An expected failure the user can fix (endpoint down, key refused, bad option); the message says how."""


class TransportKind(enum.StrEnum):
    MQTT = "mqtt"
    HTTP = "http"
    HTTP_BATCH = "http-batch"


class Scenario(enum.StrEnum):
    """Faults one device per tenant plays on top of the fleet's normal traffic."""

    SILENT = "silent"  # stops sending anything after silent_after_s
    THRESHOLD = "threshold"  # threshold_metric ramps past threshold at threshold_after_s
    BAD_TOKEN = "bad-token"  # noqa: S105 - a scenario name. Every fault_every_s: a message carrying a wrong device token
    MALFORMED = "malformed"  # every fault_every_s: a broken payload (bad JSON, wrong types, no site)
    BURST = "burst"  # at burst_at_s: burst_count messages at once, far over the rate limit

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Scenario.SILENT: "one device per tenant stops sending after --silent-after seconds",
    Scenario.THRESHOLD: "one device per tenant ramps --threshold-metric past --threshold",
    Scenario.BAD_TOKEN: "one device per tenant also sends messages with a wrong token (TOKEN_INVALID)",
    Scenario.MALFORMED: "one device per tenant also sends broken payloads (MALFORMED_JSON, SCHEMA_INVALID, ...)",
    Scenario.BURST: "one device per tenant sends --burst-count messages at once (RATE_LIMITED)",
}

METRICS = ("temp_c", "humidity", "battery_v")
# tenant ids as the admin API takes them, with room for "-<n>" after the prefix
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,55}$")


@dataclass(frozen=True, kw_only=True)
class FleetConfig:
    """Everything `run_fleet` needs; the CLI builds it from options and environment."""

    tenants: int = 1
    devices: int = 3  # per tenant
    sites: int = 2  # per tenant; devices are spread over them
    rate: float = 1.0  # telemetry messages per second per device
    heartbeat_every_s: float = 30.0  # 0: no heartbeats
    transport: TransportKind = TransportKind.MQTT
    duration_s: float = 60.0  # 0: until stop_event is set
    admin_url: str = "http://127.0.0.1:8080"
    ingest_url: str = "http://127.0.0.1:8081"
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    admin_key: str = field(default="", repr=False)
    tenant_prefix: str = "sim"
    scenarios: frozenset[Scenario] = frozenset()
    silent_after_s: float = 20.0
    threshold_metric: str = "temp_c"
    threshold: float = 80.0
    threshold_after_s: float = 20.0
    fault_every_s: float = 5.0  # bad-token and malformed messages
    burst_at_s: float = 10.0
    burst_count: int = 300
    wait_s: float = 0.0  # how long to wait for the admin API, ingest and broker to come up
    progress_every_s: float = 5.0
    seed: int | None = None
    max_in_flight: int = 256  # MQTT publishes awaiting their PUBACK
    http_connections: int = 32  # concurrent HTTP requests (kept-alive connections are reused)
    batch_size: int = 500  # http-batch: messages per request at most
    batch_linger_s: float = 0.1  # http-batch: send messages due within this window together

    def problems(self) -> list[str]:
        """What is wrong with these values, one line each (empty when fine)."""
        out: list[str] = []
        checks = [
            (self.tenants >= 1, "--tenants must be at least 1"),
            (self.devices >= 1, "--devices must be at least 1"),
            (self.sites >= 1, "--sites must be at least 1"),
            (self.rate > 0, "--rate must be above 0 messages per second"),
            (self.heartbeat_every_s >= 0, "--heartbeat-every must be 0 (off) or more seconds"),
            (self.duration_s >= 0, "--duration must be 0 (until stopped) or more seconds"),
            (self.silent_after_s >= 0, "--silent-after must be 0 or more seconds"),
            (self.threshold_after_s > 0, "--threshold-after must be above 0 seconds"),
            (self.fault_every_s > 0, "--fault-every must be above 0 seconds"),
            (self.burst_at_s >= 0, "--burst-at must be 0 or more seconds"),
            (self.burst_count >= 1, "--burst-count must be at least 1"),
            (self.wait_s >= 0, "--wait must be 0 or more seconds"),
            (self.progress_every_s > 0, "--progress-every must be above 0 seconds"),
            (self.threshold_metric in METRICS, f"--threshold-metric must be one of {', '.join(METRICS)}"),
            (
                bool(_PREFIX.match(self.tenant_prefix)),
                "--tenant-prefix must be 1-56 of A-Z a-z 0-9 _ . - (no leading _ . -)",
            ),
            (bool(self.admin_key), "an admin key is needed: --admin-key, PULSE_SIM_ADMIN_KEY or PULSE_ADMIN_KEYS"),
        ]
        out.extend(message for ok, message in checks if not ok)
        if not self.admin_url.startswith(("http://", "https://")):
            out.append(f"--admin-url must be an http(s) URL, got {self.admin_url!r}")
        if not self.ingest_url.startswith(("http://", "https://")):
            out.append(f"--ingest-url must be an http(s) URL, got {self.ingest_url!r}")
        if self.transport is TransportKind.MQTT and not self.mqtt_url.startswith(("mqtt://", "mqtts://")):
            out.append(f"--mqtt-url must be mqtt://host:port or mqtts://host:port, got {self.mqtt_url!r}")
        return out

    def tenant_ids(self) -> list[str]:
        return [f"{self.tenant_prefix}-{n}" for n in range(1, self.tenants + 1)]

    def device_ids(self) -> list[str]:
        width = max(3, len(str(self.devices)))
        return [f"dev-{n:0{width}d}" for n in range(1, self.devices + 1)]

    def site_of(self, index: int) -> str:
        """Site of the device at `index` (0-based) within its tenant."""
        return f"site-{index % self.sites + 1}"

    @property
    def target_rate(self) -> float:
        """Normal messages per second for the whole fleet (telemetry plus heartbeats)."""
        per_device = self.rate + (1 / self.heartbeat_every_s if self.heartbeat_every_s else 0.0)
        return per_device * self.tenants * self.devices
