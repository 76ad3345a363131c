"""Per-device token buckets: `rate` messages per second with bursts up to `burst`."""

from __future__ import annotations

import time

__all__ = ["RateLimiter"]


class RateLimiter:
    """Buckets live in memory per ingest replica; idle buckets are swept to bound memory."""

    def __init__(self, *, max_keys: int = 1_000_000) -> None:
        self._buckets: dict[tuple[str, str], list[float]] = {}  # key -> [tokens, last refill]
        self._max_keys = max_keys

    def allow(self, key: tuple[str, str], rate: float, burst: float, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self.sweep(now)
            self._buckets[key] = [burst - 1.0, now]
            return burst >= 1.0
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        return False

    def refund(self, key: tuple[str, str], burst: float) -> None:
        """Give back the token an allow() just took (used to peek without spending)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket[0] = min(burst, bucket[0] + 1.0)

    def sweep(self, now: float, idle_s: float = 300.0) -> None:
        """Forget buckets idle long enough to be full again."""
        stale = [k for k, (_, last) in self._buckets.items() if now - last > idle_s]
        for k in stale:
            del self._buckets[k]
        if len(self._buckets) >= self._max_keys:  # still full: start over rather than grow
            self._buckets.clear()
