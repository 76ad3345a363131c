"""Settings of the delivery worker (PULSE_DELIVERY_*), on top of the shared ones."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from services.common.config import CommonSettings, env
from services.common.ssrf import AddressPolicy

__all__ = ["DeliverySettings"]


@dataclass(frozen=True, kw_only=True)
class DeliverySettings(CommonSettings):
    # operator allow-list for the SSRF guard (shared with the ui's save-time check)
    allow_cidrs: list[str] = env("PULSE_DELIVERY_ALLOW_CIDRS", [])
    # httpx's connection pool slows down past a few dozen requests in flight (measured: bench.delivery)
    concurrency: int = env("PULSE_DELIVERY_CONCURRENCY", 16, minimum=1)
    claim_batch: int = env("PULSE_DELIVERY_CLAIM_BATCH", 100, minimum=1)
    poll_s: float = env("PULSE_DELIVERY_POLL_S", 2.0, minimum=0.01)
    lease_s: float = env("PULSE_DELIVERY_LEASE_S", 60.0, minimum=0.1)
    max_attempts: int = env("PULSE_DELIVERY_MAX_ATTEMPTS", 5, minimum=1)
    backoff_base_s: float = env("PULSE_DELIVERY_BACKOFF_BASE_S", 30.0, minimum=0)
    backoff_cap_s: float = env("PULSE_DELIVERY_BACKOFF_CAP_S", 7200.0, minimum=0)
    backoff_jitter: float = env("PULSE_DELIVERY_BACKOFF_JITTER", 0.2, minimum=0)
    timeout_s: float = env("PULSE_DELIVERY_TIMEOUT_S", 10.0, minimum=0.1)
    ui_base_url: str = env("PULSE_DELIVERY_UI_BASE_URL", "http://localhost:8080")
    worker_id: str = env("PULSE_DELIVERY_WORKER_ID", f"{socket.gethostname()}-{os.getpid()}")
    test_sends_per_minute: int = env("PULSE_DELIVERY_TEST_SENDS_PER_MINUTE", 5, minimum=1)
    http_port: int = env("PULSE_HTTP_PORT", 8084, minimum=0)

    def check(self) -> list[tuple[str, str]]:
        problems = super().check()
        try:
            AddressPolicy.from_cidrs(self.allow_cidrs)
        except ValueError as exc:
            problems.append(("PULSE_DELIVERY_ALLOW_CIDRS", str(exc)))
        if self.backoff_jitter >= 1:
            problems.append(("PULSE_DELIVERY_BACKOFF_JITTER", "must be below 1"))
        if self.lease_s <= self.timeout_s:
            problems.append(("PULSE_DELIVERY_LEASE_S", "must exceed PULSE_DELIVERY_TIMEOUT_S (one attempt's bound)"))
        return problems

    @property
    def policy(self) -> AddressPolicy:
        return AddressPolicy.from_cidrs(self.allow_cidrs)

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "allow_cidrs": self.allow_cidrs,
            "concurrency": self.concurrency,
            "max_attempts": self.max_attempts,
            "backoff": f"{self.backoff_base_s}s x2, cap {self.backoff_cap_s}s, jitter {self.backoff_jitter}",
            "lease_s": self.lease_s,
            "worker_id": self.worker_id,
        }
