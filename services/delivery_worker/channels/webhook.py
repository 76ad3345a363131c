"""Webhook channel: HTTP POST of the JSON payload, signed, through the SSRF-guarded transport.

Headers: `X-Pulse-Delivery-Id` (stable across retries: dedupe on it), `X-Pulse-Event`
(the transition), `X-Pulse-Signature: sha256=<hex HMAC-SHA256(secret, body)>` when the
integration has `secrets.hmac_secret`. Redirects are not followed: a 3xx fails the delivery
(the receiver should be configured with its final URL); the guard would vet every hop anyway.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import time
from datetime import UTC
from typing import Any

import httpx
import msgspec

from services.common import __version__
from services.common.ssrf import AddressPolicy, BlockedDestination, guarded_transport
from services.delivery_worker.channels.base import Delivery, Outcome

__all__ = ["WebhookChannel", "parse_retry_after", "sign"]

_encoder = msgspec.json.Encoder()
RETRYABLE_STATUSES = frozenset({408, 425, 429})


def sign(secret: str, body: bytes) -> str:
    """The X-Pulse-Signature value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class WebhookChannel:
    def __init__(self, policy: AddressPolicy, *, timeout_s: float = 10.0, max_connections: int = 100) -> None:
        self.timeout_s = timeout_s
        self.client = httpx.AsyncClient(
            transport=guarded_transport(policy, max_connections=max_connections),
            trust_env=False,  # an environment proxy would bypass the address check
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            headers={"User-Agent": f"pulse-delivery/{__version__}"},
        )

    async def send(self, delivery: Delivery) -> Outcome:
        url = delivery.config.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return Outcome.failed("config: url must be an http(s) URL")
        body = _encoder.encode(delivery.payload)
        headers = _extra_headers(delivery.config.get("headers"))
        headers.update(
            {
                "Content-Type": "application/json",
                "X-Pulse-Delivery-Id": delivery.delivery_id,
                "X-Pulse-Event": str(delivery.payload.get("transition", "")),
            }
        )
        secret = delivery.secrets.get("hmac_secret")
        if isinstance(secret, str) and secret:
            headers["X-Pulse-Signature"] = sign(secret, body)
        timeout = _bounded(delivery.config.get("timeout_s"), self.timeout_s)
        try:
            resp = await self.client.post(url, content=body, headers=headers, timeout=timeout)
        except BlockedDestination as exc:
            if exc.reason == "unresolvable":
                return Outcome.retry(str(exc))
            return Outcome.failed(str(exc))
        except httpx.TimeoutException as exc:
            return Outcome.retry(f"timeout: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return Outcome.retry(f"network: {type(exc).__name__}: {exc}"[:500])
        except httpx.InvalidURL as exc:
            return Outcome.failed(f"config: invalid url: {exc}")
        status = resp.status_code
        if 200 <= status < 300:
            return Outcome.success(status)
        if status in RETRYABLE_STATUSES or status >= 500:
            return Outcome.retry(f"HTTP {status}", status, parse_retry_after(resp.headers.get("retry-after")))
        if 300 <= status < 400:
            return Outcome.failed(f"HTTP {status}: redirects are not followed", status)
        return Outcome.failed(f"HTTP {status}", status)

    async def close(self) -> None:
        await self.client.aclose()


_RESERVED_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection"})


def _extra_headers(raw: Any) -> dict[str, str]:
    """Per-integration static headers (e.g. an Authorization token), minus the ones we own."""
    if not isinstance(raw, dict):
        return {}
    return {
        str(k): str(v)
        for k, v in raw.items()
        if str(k).lower() not in _RESERVED_HEADERS and not str(k).lower().startswith("x-pulse-")
    }


def _bounded(value: Any, ceiling: float) -> float:
    if isinstance(value, int | float) and 0 < value <= ceiling:
        return float(value)
    return ceiling
