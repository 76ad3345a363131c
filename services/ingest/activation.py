"""POST /api/device/activate: exchange a one-time activation code for the device token.

The token is returned once and stored only as a hash. A used, expired or wrong code is
refused with 400; failed attempts per device are limited to slow down guessing.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.common import constants
from services.common.credentials import hash_secret, new_device_token, secrets_equal
from services.common.db import Database, InvalidTenantId, validate_tenant_id
from services.common.http import error_response
from services.ingest.ratelimit import RateLimiter

__all__ = ["Activation"]

log = logging.getLogger("pulse.ingest.activation")


class Activation:
    def __init__(self, db: Database, r: aioredis.Redis, *, failures_per_min: float = 5.0) -> None:
        self.db = db
        self.redis = r
        self._failures = RateLimiter()
        self._failures_per_s = failures_per_min / 60.0
        self._failure_burst = failures_per_min

    async def endpoint(self, request: Request) -> Response:
        try:
            body = await request.json()
            tenant_id = validate_tenant_id(body["tenant_id"])
            device_id, code = body["device_id"], body["activation_code"]
            if not isinstance(device_id, str) or not isinstance(code, str) or not device_id or not code:
                raise TypeError
        except (ValueError, KeyError, TypeError, InvalidTenantId):
            return error_response(400, "INVALID_REQUEST", "expected JSON {tenant_id, device_id, activation_code}")
        key = (tenant_id, device_id)
        # peek: a full bucket means this device has failed too often lately
        if not self._failures.allow(key, self._failures_per_s, self._failure_burst):
            return error_response(429, "RATE_LIMITED", "too many failed activation attempts; wait a minute")
        self._failures.refund(key, self._failure_burst)
        outcome = await self._activate(tenant_id, device_id, code)
        if isinstance(outcome, str):
            self._failures.allow(key, self._failures_per_s, self._failure_burst)  # count the failure
            detail = {
                "ACTIVATION_CODE_EXPIRED": "the activation code has expired; ask for a new one",
                "ACTIVATION_CODE_INVALID": "unknown device, or a wrong or already used activation code",
            }[outcome]
            log.info("activation refused", extra={"tenant_id": tenant_id, "device_id": device_id, "reason": outcome})
            return error_response(400, outcome, detail)
        await self.redis.publish(
            constants.CHANNEL_DEVICE_CREDENTIALS,
            json.dumps({"tenant_id": tenant_id, "device_id": device_id, "action": "activated"}),
        )
        log.info("device activated", extra={"tenant_id": tenant_id, "device_id": device_id})
        return JSONResponse(
            {"tenant_id": tenant_id, "device_id": device_id, "status": "active", "device_token": outcome[0]}
        )

    async def _activate(self, tenant_id: str, device_id: str, code: str) -> str | tuple[str]:
        now = datetime.now(UTC)
        async with self.db.worker() as conn:
            row = await conn.fetchrow(
                "SELECT d.status, d.activation_code_hash, d.activation_expires_at, t.status AS tenant_status"
                " FROM devices d JOIN tenants t USING (tenant_id)"
                " WHERE d.tenant_id = $1 AND d.device_id = $2 FOR UPDATE OF d",
                tenant_id,
                device_id,
            )
            if (
                row is None
                or row["activation_code_hash"] is None
                or row["status"] == "revoked"
                or row["tenant_status"] != "active"
                or not secrets_equal(hash_secret(code), row["activation_code_hash"])
            ):
                return "ACTIVATION_CODE_INVALID"
            if row["activation_expires_at"] <= now:
                return "ACTIVATION_CODE_EXPIRED"
            token = new_device_token()
            token_hash = hash_secret(token)
            await conn.execute(
                "UPDATE device_token_history SET retired_at = $3"
                " WHERE tenant_id = $1 AND device_id = $2 AND retired_at IS NULL",
                tenant_id,
                device_id,
                now,
            )
            await conn.execute(
                "UPDATE devices SET token_hash = $3, status = 'active', activated_at = $4,"
                " activation_code_hash = NULL, activation_expires_at = NULL"
                " WHERE tenant_id = $1 AND device_id = $2",
                tenant_id,
                device_id,
                token_hash,
                now,
            )
            await conn.execute(
                "INSERT INTO device_token_history (tenant_id, device_id, token_hash, issued_at, reason)"
                " VALUES ($1, $2, $3, $4, 'activated')",
                tenant_id,
                device_id,
                token_hash,
                now,
            )
        return (token,)
