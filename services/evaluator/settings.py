"""Settings of the evaluator service (PULSE_EVALUATOR_*), on top of the shared ones."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from services.common.config import CommonSettings, env

__all__ = ["EvaluatorSettings"]


@dataclass(frozen=True, kw_only=True)
class EvaluatorSettings(CommonSettings):
    # global defaults; the settings table overrides them per tenant (evaluator.* keys), and
    # device_state.stale_after_s per device
    stale_after_s: float = env("PULSE_EVALUATOR_STALE_AFTER_S", 30.0, minimum=0.1)
    offline_after_s: float = env("PULSE_EVALUATOR_OFFLINE_AFTER_S", 300.0, minimum=0.1)
    # deadline check period: bounds staleness detection delay
    tick_s: float = env("PULSE_EVALUATOR_TICK_S", 0.2, minimum=0.01)
    # how often last_seen of active devices and repeat counts of open alerts reach Postgres
    flush_s: float = env("PULSE_EVALUATOR_FLUSH_S", 2.0, minimum=0.05)
    # how often alert_rules and settings are polled for edits
    refresh_s: float = env("PULSE_EVALUATOR_REFRESH_S", 2.0, minimum=0.05)
    # how often alert events not yet on pulse:alerts (user acks, a crash before publishing) are sent
    outbox_s: float = env("PULSE_EVALUATOR_OUTBOX_S", 1.0, minimum=0.05)
    # on start-up, queued observations are handled for at most this long before the first
    # staleness pass, so that devices whose messages are still queued are not declared STALE
    catchup_s: float = env("PULSE_EVALUATOR_CATCHUP_S", 5.0, minimum=0)
    consumer_name: str = env("PULSE_EVALUATOR_CONSUMER", f"evaluator-{socket.gethostname()}")
    batch_size: int = env("PULSE_EVALUATOR_BATCH_SIZE", 1000, minimum=1)
    # entries left pending this long by a dead replica are taken over
    claim_idle_ms: int = env("PULSE_EVALUATOR_CLAIM_IDLE_MS", 15_000, minimum=100)
    # ITU-T G.8275.1 clock classes that count as locked or in holdover within spec
    ptp_clock_classes_ok: list[int] = env("PULSE_EVALUATOR_PTP_CLOCK_CLASSES_OK", [6, 7, 135])
    # observations streams: 1 = the base stream; N > 1 = f"{base}:{k}" by device, each owned by
    # one replica through a Redis lease of this length (renewed every third of it)
    shards: int = env("PULSE_EVALUATOR_SHARDS", 1, minimum=1)
    lease_ttl_ms: int = env("PULSE_EVALUATOR_LEASE_TTL_MS", 10_000, minimum=300)
    http_port: int = env("PULSE_HTTP_PORT", 8082, minimum=0)

    def check(self) -> list[tuple[str, str]]:
        problems = super().check()
        if self.offline_after_s < self.stale_after_s:
            problems.append(("PULSE_EVALUATOR_OFFLINE_AFTER_S", "must be >= PULSE_EVALUATOR_STALE_AFTER_S"))
        return problems

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "observations": self.streams.observations,
            "consumer": self.consumer_name,
            "shards": self.shards,
            "stale_after_s": self.stale_after_s,
            "offline_after_s": self.offline_after_s,
        }
