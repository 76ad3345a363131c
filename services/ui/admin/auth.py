"""X-Admin-Key authentication for /api/admin, with a lockout for addresses that keep guessing.

Keys come from PULSE_ADMIN_KEYS (several at once, so a key can be rotated without downtime).
The presented key is hashed once and compared in constant time with the hash of every
configured key; the loop never exits early, so timing tells nothing about which key or how
much of it matched. Keys, presented or configured, are never logged. The audit log names the
caller `admin-key:<fingerprint>`: the first 8 hex digits of the key's SHA-256, enough to tell
rotated keys apart and nothing to guess a key from.

Failures are counted per client address (as uvicorn resolves it: X-Forwarded-For is honoured
only from FORWARDED_ALLOW_IPS, default 127.0.0.1). `max_failures` failures within `window_s`
lock the address out for `lockout_s`: every request from it is then answered 429 with
Retry-After, whatever key it carries. The state is in-process (one ui replica counts alone).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import Counter
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.config import Secret
from services.common.http import error_response

__all__ = ["AdminAuthMiddleware", "AdminKeys", "FailureLimiter", "actor"]

log = logging.getLogger("pulse.ui.admin.auth")

HEADER = b"x-admin-key"
_ACTOR_KEY = "admin_actor"

AUTH_FAILURES = Counter(
    "pulse_ui_admin_auth_failures_total", "Refused admin API requests", ["reason"]
)  # reason: missing_key | invalid_key | rate_limited
LOCKOUTS = Counter("pulse_ui_admin_lockouts_total", "Client addresses locked out for guessing admin keys")


@dataclass(frozen=True)
class _Key:
    digest: bytes
    fingerprint: str


class AdminKeys:
    """The configured admin keys, held only as SHA-256 digests."""

    def __init__(self, keys: Sequence[Secret]) -> None:
        if not keys:
            raise ValueError("at least one admin key is required")
        self._keys = [self._entry(k.get()) for k in keys]

    @staticmethod
    def _entry(key: str) -> _Key:
        digest = hashlib.sha256(key.encode()).digest()
        return _Key(digest, digest.hex()[:8])

    @staticmethod
    def fingerprint(key: str) -> str:
        return AdminKeys._entry(key).fingerprint

    def match(self, presented: bytes) -> str | None:
        """The actor name of the key `presented` equals, or None; constant time over all keys."""
        digest = hashlib.sha256(presented).digest()
        found: _Key | None = None
        for key in self._keys:
            equal = hmac.compare_digest(digest, key.digest)
            if equal and found is None:
                found = key
        return None if found is None else f"admin-key:{found.fingerprint}"


class FailureLimiter:
    """Counts authentication failures per client address and locks out the persistent ones."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        lockout_s: float,
        *,
        clock: Callable[[], float] | None = None,
        max_clients: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self._clock = clock or time.monotonic
        self._max_clients = max_clients  # bounds memory when many addresses fail
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: OrderedDict[str, float] = OrderedDict()

    def retry_after(self, client: str) -> float | None:
        """Seconds until `client` may try again, or None when it is not locked out."""
        until = self._locked_until.get(client)
        if until is None:
            return None
        remaining = until - self._clock()
        if remaining <= 0:
            del self._locked_until[client]
            return None
        return remaining

    def failure(self, client: str) -> bool:
        """Record a failure; True when it locks `client` out."""
        now = self._clock()
        recent = self._failures.pop(client, None) or deque()
        recent.append(now)
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if len(recent) >= self.max_failures:
            self._locked_until[client] = now + self.lockout_s
            self._locked_until.move_to_end(client)
            self._trim(self._locked_until)
            return True
        self._failures[client] = recent  # most recent last: the oldest go first when trimming
        self._trim(self._failures)
        return False

    def _trim(self, table: OrderedDict[str, deque[float]] | OrderedDict[str, float]) -> None:
        while len(table) > self._max_clients:
            table.popitem(last=False)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class AdminAuthMiddleware:
    """ASGI middleware in front of every /api/admin route: rate limit, then X-Admin-Key."""

    def __init__(self, app: ASGIApp, keys: AdminKeys, limiter: FailureLimiter) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = _client(scope)
        wait = self.limiter.retry_after(client)
        if wait is not None:
            AUTH_FAILURES.labels("rate_limited").inc()
            seconds = max(1, math.ceil(wait))
            response = error_response(
                429, "rate_limited", f"too many failed X-Admin-Key attempts from this address; retry in {seconds}s"
            )
            response.headers["Retry-After"] = str(seconds)
            await response(scope, receive, send)
            return
        presented = next((value for name, value in scope["headers"] if name == HEADER), None)
        found = None if presented is None else self.keys.match(presented)
        if found is None:
            reason = "missing_key" if presented is None else "invalid_key"
            AUTH_FAILURES.labels(reason).inc()
            locked = self.limiter.failure(client)
            log.warning("admin request refused", extra={"client": client, "reason": reason, "path": scope["path"]})
            if locked:
                LOCKOUTS.inc()
                log.warning(
                    "admin client locked out",
                    extra={
                        "client": client,
                        "failures": self.limiter.max_failures,
                        "lockout_s": self.limiter.lockout_s,
                    },
                )
            detail = "X-Admin-Key header required" if presented is None else "invalid X-Admin-Key"
            await error_response(401, "unauthorized", detail)(scope, receive, send)
            return
        scope.setdefault("state", {})[_ACTOR_KEY] = found
        await self.app(scope, receive, send)


def actor(request: Request) -> str:
    """Who made this authenticated admin request, as written to the audit log."""
    return str(request.state.admin_actor)
