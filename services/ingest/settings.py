"""Settings of the ingest service (PULSE_INGEST_*), on top of the shared ones."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from services.common.config import CommonSettings, Secret, env

__all__ = ["IngestSettings"]


@dataclass(frozen=True, kw_only=True)
class IngestSettings(CommonSettings):
    mqtt_topic: str = env("PULSE_INGEST_MQTT_TOPIC", "tenant/+/device/+/+")
    # several replicas with the same group split the load ($share/<group>/<topic>); empty: no sharing
    mqtt_shared_group: str = env("PULSE_INGEST_MQTT_SHARED_GROUP", "")
    mqtt_client_id: str = env("PULSE_INGEST_MQTT_CLIENT_ID", f"pulse-ingest-{socket.gethostname()}")
    # QoS 1 messages in flight before the broker waits for our acks (MQTT 5 Receive Maximum)
    mqtt_receive_max: int = env("PULSE_INGEST_MQTT_RECEIVE_MAX", 1000, minimum=1)
    mqtt_session_expiry_s: int = env("PULSE_INGEST_MQTT_SESSION_EXPIRY_S", 3600, minimum=0)
    mqtt_username: str = env("PULSE_INGEST_MQTT_USERNAME", "")
    mqtt_password: Secret | None = env("PULSE_INGEST_MQTT_PASSWORD", None)
    # defaults of the per-tenant policy; the settings table overrides them (ingest.* keys)
    max_payload_bytes: int = env("PULSE_INGEST_MAX_PAYLOAD_BYTES", 8192, minimum=64)
    rate_per_s: float = env("PULSE_INGEST_RATE_PER_S", 50.0, minimum=0.001)
    burst: float = env("PULSE_INGEST_BURST", 100.0, minimum=1)
    store_rejects: bool = env("PULSE_INGEST_STORE_REJECTS", True)
    settings_refresh_s: float = env("PULSE_INGEST_SETTINGS_REFRESH_S", 2.0, minimum=0.1)
    credential_ttl_s: float = env("PULSE_INGEST_CREDENTIAL_TTL_S", 30.0, minimum=0)
    preload_devices: int = env("PULSE_INGEST_PRELOAD_DEVICES", 100_000, minimum=0)
    http_max_batch: int = env("PULSE_INGEST_HTTP_MAX_BATCH", 1000, minimum=1)
    accept_timeout_s: float = env("PULSE_INGEST_ACCEPT_TIMEOUT_S", 5.0, minimum=0.1)
    telemetry_backend: str = env("PULSE_TELEMETRY_BACKEND", "postgres", expects="postgres|influxdb3")
    telemetry_writer: bool = env("PULSE_INGEST_TELEMETRY_WRITER", True)
    influxdb3_url: str = env("PULSE_INFLUXDB3_URL", "")
    influxdb3_token: Secret | None = env("PULSE_INFLUXDB3_TOKEN", None)
    http_port: int = env("PULSE_HTTP_PORT", 8081, minimum=0)

    def check(self) -> list[tuple[str, str]]:
        problems = super().check()
        if self.telemetry_backend not in ("postgres", "influxdb3"):
            problems.append(("PULSE_TELEMETRY_BACKEND", f"expected postgres|influxdb3, got {self.telemetry_backend!r}"))
        if self.telemetry_writer and self.telemetry_backend == "influxdb3" and not self.influxdb3_url:
            problems.append(("PULSE_INFLUXDB3_URL", "is required when PULSE_TELEMETRY_BACKEND=influxdb3"))
        if "#" in self.mqtt_shared_group or "+" in self.mqtt_shared_group or "/" in self.mqtt_shared_group:
            problems.append(("PULSE_INGEST_MQTT_SHARED_GROUP", "must not contain / + or #"))
        return problems

    @property
    def subscription(self) -> str:
        if self.mqtt_shared_group:
            return f"$share/{self.mqtt_shared_group}/{self.mqtt_topic}"
        return self.mqtt_topic

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "mqtt_subscription": self.subscription,
            "mqtt_receive_max": self.mqtt_receive_max,
            "telemetry_backend": self.telemetry_backend if self.telemetry_writer else "off",
            "rate_per_s": self.rate_per_s,
            "burst": self.burst,
            "max_payload_bytes": self.max_payload_bytes,
        }
