"""Settings of the ui container: the common ones plus PULSE_UI_* variables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.common.config import CommonSettings, env

__all__ = ["UiSettings"]


@dataclass(frozen=True, kw_only=True)
class UiSettings(CommonSettings):
    # lifetime of a one-time activation code unless the request names its own
    activation_ttl_s: int = env("PULSE_UI_ACTIVATION_TTL_S", 3600, minimum=60)
    # X-Admin-Key guessing: this many failures from one address within the window lock it out
    admin_max_failures: int = env("PULSE_UI_ADMIN_MAX_FAILURES", 10, minimum=1)
    admin_failure_window_s: float = env("PULSE_UI_ADMIN_FAILURE_WINDOW_S", 60.0, minimum=1)
    admin_lockout_s: float = env("PULSE_UI_ADMIN_LOCKOUT_S", 300.0, minimum=1)

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "activation_ttl_s": self.activation_ttl_s,
            "admin_rate_limit": f"{self.admin_max_failures} failures/{self.admin_failure_window_s:g}s"
            f" -> {self.admin_lockout_s:g}s lockout",
        }
