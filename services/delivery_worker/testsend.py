"""Send test: deliver a sample alert through one integration now and return the outcome.

Used by the UI's test buttons (it builds a `SendTest` over its own Database and Redis and the
same channels). The integration is read in the caller's tenant transaction, so a customer can
only test their own integrations. Limited to `per_minute` tests per integration (a fixed
one-minute window in Redis, shared by every replica). Nothing is written to delivery_jobs or
delivery_attempts: a test is not an alert delivery.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

from services.common import constants
from services.common.db import Database
from services.delivery_worker.channels.base import Channel, Delivery
from services.delivery_worker.payload import sample_payload

__all__ = ["IntegrationNotFound", "SendTest", "SendTestLimited", "SendTestResult"]

log = logging.getLogger("pulse.delivery_worker.testsend")


class IntegrationNotFound(LookupError):
    """No such integration for this tenant."""


class SendTestLimited(Exception):
    """Too many tests of this integration this minute; `retry_after_s` until the window ends."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"send-test limit reached; retry in {retry_after_s}s")


@dataclass(frozen=True)
class SendTestResult:
    outcome: str  # success | retry | failed (retry: would have been retried in a real delivery)
    delivery_id: str
    duration_ms: int
    status_code: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "success"


_LOAD = """
SELECT i.type, i.config, i.secrets, t.name AS tenant_name
  FROM integrations i JOIN tenants t ON t.tenant_id = i.tenant_id
 WHERE i.integration_id = $1
"""


class SendTest:
    def __init__(
        self,
        db: Database,
        r: aioredis.Redis,
        channels: Mapping[str, Channel],
        *,
        per_minute: int = 5,
        ui_base_url: str = "http://localhost:8080",
    ) -> None:
        self.db = db
        self.redis = r
        self.channels = channels
        self.per_minute = per_minute
        self.ui_base_url = ui_base_url

    async def send(self, tenant_id: str, integration_id: str) -> SendTestResult:
        """Deliver a sample alert; raises IntegrationNotFound or SendTestLimited."""
        try:
            uuid.UUID(integration_id)
        except ValueError as exc:
            raise IntegrationNotFound(integration_id) from exc
        async with self.db.tenant(tenant_id) as conn:
            row = await conn.fetchrow(_LOAD, integration_id)
        if row is None:
            raise IntegrationNotFound(integration_id)
        await self._take_slot(integration_id)
        channel = self.channels.get(row["type"])
        delivery_id = str(uuid.uuid4())
        t0 = time.monotonic()
        if channel is None:
            return SendTestResult("failed", delivery_id, 0, error=f"no channel for type {row['type']!r}")
        delivery = Delivery(
            delivery_id=delivery_id,
            integration_id=integration_id,
            integration_type=row["type"],
            config=row["config"] or {},
            secrets=row["secrets"] or {},
            payload=sample_payload(tenant_id, row["tenant_name"], delivery_id, self.ui_base_url),
        )
        outcome = await channel.send(delivery)
        result = SendTestResult(
            outcome=outcome.kind.value,
            delivery_id=delivery_id,
            duration_ms=int((time.monotonic() - t0) * 1000),
            status_code=outcome.status_code,
            error=outcome.error,
        )
        log.info(
            "send test",
            extra={
                "tenant_id": tenant_id,
                "integration_id": integration_id,
                "type": row["type"],
                "outcome": result.outcome,
                "status_code": result.status_code,
                "error": result.error,
            },
        )
        return result

    async def _take_slot(self, integration_id: str) -> None:
        key = f"{constants.SEND_TEST_RATE_PREFIX}{integration_id}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(key, 0, ex=60, nx=True)  # the window starts with the first test
        pipe.incr(key)
        pipe.ttl(key)
        _set, count, ttl = await pipe.execute()
        if int(count) > self.per_minute:
            raise SendTestLimited(max(1, int(ttl)))
