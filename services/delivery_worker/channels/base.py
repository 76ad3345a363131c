"""The delivery channel interface: one small module per channel type implements `Channel`."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Channel", "Delivery", "Outcome", "OutcomeKind"]


class OutcomeKind(enum.StrEnum):
    """What one attempt came to; the values are delivery_attempts.outcome."""

    SUCCESS = "success"
    RETRY = "retry"  # worth trying again later (network, timeout, 408/429/5xx)
    FAILED = "failed"  # trying again cannot help (4xx, refused destination, bad config)


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None  # the receiver's Retry-After, if any

    @classmethod
    def success(cls, status_code: int | None = None) -> Outcome:
        return cls(OutcomeKind.SUCCESS, status_code)

    @classmethod
    def retry(cls, error: str, status_code: int | None = None, retry_after_s: float | None = None) -> Outcome:
        return cls(OutcomeKind.RETRY, status_code, error, retry_after_s)

    @classmethod
    def failed(cls, error: str, status_code: int | None = None) -> Outcome:
        return cls(OutcomeKind.FAILED, status_code, error)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt's input: the documented payload plus the integration's settings."""

    delivery_id: str  # stable across attempts: receivers drop repeats on it
    integration_id: str
    integration_type: str
    config: dict[str, Any]
    secrets: dict[str, Any]  # never logged
    payload: dict[str, Any]  # see services/delivery_worker/payload.py


class Channel(Protocol):
    """Sends one delivery; never raises for a delivery problem, returns the Outcome instead."""

    async def send(self, delivery: Delivery) -> Outcome: ...

    async def close(self) -> None: ...
