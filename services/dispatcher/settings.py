"""Settings of the dispatcher (PULSE_DISPATCHER_*), on top of the shared ones."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from services.common.config import CommonSettings, env

__all__ = ["DispatcherSettings"]


@dataclass(frozen=True, kw_only=True)
class DispatcherSettings(CommonSettings):
    consumer: str = env("PULSE_DISPATCHER_CONSUMER", f"{socket.gethostname()}-{os.getpid()}")
    batch_size: int = env("PULSE_DISPATCHER_BATCH_SIZE", 100, minimum=1)
    claim_idle_ms: int = env("PULSE_DISPATCHER_CLAIM_IDLE_MS", 30_000, minimum=100)
    http_port: int = env("PULSE_HTTP_PORT", 8083, minimum=0)

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "consumer": self.consumer,
            "alerts_stream": self.streams.alerts,
            "deliveries_stream": self.streams.deliveries,
        }
