"""Tell ingest that devices' credentials changed, so it drops what it has cached for them.

Published on the Redis pub/sub channel CHANNEL_DEVICE_CREDENTIALS after the change is
committed: one JSON message {"tenant_id", "device_id", "action"} per device. Postgres stays
the source of truth; a lost message (Redis down) is logged and counted, and ingest's cache
lifetime bounds how long it may still accept the old credentials.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Iterable

import redis.asyncio as aioredis
from prometheus_client import Counter

from services.common.constants import CHANNEL_DEVICE_CREDENTIALS

__all__ = ["CredentialAction", "CredentialNotifier"]

log = logging.getLogger("pulse.ui.admin.notify")

PUBLISH_FAILURES = Counter(
    "pulse_ui_credential_notify_failures_total", "Credential-change messages that could not be published"
)


class CredentialAction(enum.StrEnum):
    REVOKE = "revoke"  # the device was revoked: refuse its token
    ROTATE = "rotate"  # the device has a new token: the old one is retired
    TENANT_DISABLE = "tenant_disable"  # the device's tenant was disabled
    TENANT_ENABLE = "tenant_enable"  # the device's tenant was enabled again


class CredentialNotifier:
    def __init__(self, redis: aioredis.Redis, channel: str = CHANNEL_DEVICE_CREDENTIALS) -> None:
        self.redis = redis
        self.channel = channel

    async def publish(self, tenant_id: str, device_ids: Iterable[str], action: CredentialAction) -> bool:
        """Publish one message per device in one round trip; False (logged) when Redis failed."""
        messages = [
            json.dumps({"tenant_id": tenant_id, "device_id": d, "action": action.value}, separators=(",", ":"))
            for d in device_ids
        ]
        if not messages:
            return True
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for message in messages:
                    pipe.publish(self.channel, message)
                await pipe.execute()
        except (aioredis.RedisError, OSError) as exc:
            PUBLISH_FAILURES.inc(len(messages))
            log.error(
                "credential change not published; ingest may accept old credentials until its cache expires",
                extra={"tenant_id": tenant_id, "devices": len(messages), "action": action.value, "error": str(exc)},
            )
            return False
        return True
