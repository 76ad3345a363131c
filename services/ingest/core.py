"""The one accept path for device messages, whichever way they arrive (MQTT, HTTP, HTTP batch).

Checks run cheapest first; each refusal raises Rejected with its reason code and is
quarantined here, so MQTT and HTTP cannot drift apart.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec

from services.common.observations import Observation, observation_id
from services.ingest.device_cache import DeviceCache, DeviceCredentials
from services.ingest.payload import (
    DevicePayload,
    Limits,
    check_ids,
    check_msg_type,
    check_payload,
    decode_batch_item,
    decode_payload,
    format_ts,
    parse_topic,
)
from services.ingest.publisher import ObservationPublisher
from services.ingest.quarantine import Quarantine
from services.ingest.ratelimit import RateLimiter
from services.ingest.reasons import Reason, Rejected
from services.ingest.tenant_settings import TenantSettings

__all__ = ["Ingestor"]

_encoder = msgspec.json.Encoder()


class Ingestor:
    def __init__(
        self,
        *,
        settings: TenantSettings,
        devices: DeviceCache,
        publisher: ObservationPublisher,
        quarantine: Quarantine,
        limiter: RateLimiter | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.settings = settings
        self.devices = devices
        self.publisher = publisher
        self.quarantine = quarantine
        self.limiter = limiter or RateLimiter()
        self.limits = limits or Limits()
        self.accepted = 0

    async def from_mqtt(self, topic: str, body: bytes) -> tuple[Observation, asyncio.Future[None]]:
        tenant_id = device_id = None
        try:
            tenant_id, device_id, msg_type = parse_topic(topic)
            self._check_size(tenant_id, body)
            payload = decode_payload(body)
            return await self._accept("mqtt", tenant_id, device_id, msg_type, payload, None)
        except Rejected as rej:
            self._quarantine("mqtt", rej.reason, tenant_id, device_id, topic, body)
            raise

    async def from_http(
        self, tenant_id: str, device_id: str, msg_type: str, body: bytes, token: str | None
    ) -> tuple[Observation, asyncio.Future[None]]:
        topic = f"tenant/{tenant_id}/device/{device_id}/{msg_type}"
        try:
            check_ids(tenant_id, device_id)
            check_msg_type(msg_type)
            self._check_size(tenant_id, body)
            payload = decode_payload(body)
            return await self._accept("http", tenant_id, device_id, msg_type, payload, token)
        except Rejected as rej:
            self._quarantine("http", rej.reason, tenant_id, device_id, topic, body)
            raise

    async def from_batch_item(self, raw: bytes) -> tuple[Observation, asyncio.Future[None]]:
        """One message of POST /ingest/v1/batch (its raw JSON): the device payload plus
        tenant_id, device_id and msg_type (default telemetry)."""
        tenant_id = device_id = None
        try:
            item = decode_batch_item(raw)
            tenant_id, device_id, msg_type = item.tenant_id, item.device_id, item.msg_type
            check_ids(tenant_id, device_id)
            check_msg_type(msg_type)
            self._check_size(tenant_id, raw)
            found, creds = self.devices.peek(tenant_id, device_id)
            token = self._precheck(tenant_id, device_id, item, None)
            if not found:
                creds = await self.devices.get(tenant_id, device_id)
            return self._finish("http", tenant_id, device_id, msg_type, item, token, creds)
        except Rejected as rej:
            topic = f"tenant/{tenant_id}/device/{device_id}/batch" if tenant_id else None
            self._quarantine("http", rej.reason, tenant_id, device_id, topic, raw)
            raise

    def refuse_oversize(self, source: str, tenant_id: str, device_id: str, msg_type: str) -> Rejected:
        """Quarantine a body refused before it was read in full; return the rejection to report."""
        limit = self.settings.for_tenant(tenant_id).max_payload_bytes
        rej = Rejected(Reason.PAYLOAD_TOO_LARGE, f"body over {limit} bytes")
        self._quarantine(
            source, rej.reason, tenant_id, device_id, f"tenant/{tenant_id}/device/{device_id}/{msg_type}", None
        )
        return rej

    def _check_size(self, tenant_id: str, body: bytes) -> None:
        limit = self.settings.for_tenant(tenant_id).max_payload_bytes
        if len(body) > limit:
            raise Rejected(Reason.PAYLOAD_TOO_LARGE, f"{len(body)} bytes > {limit}")

    def _quarantine(
        self,
        source: str,
        reason: Reason,
        tenant_id: str | None,
        device_id: str | None,
        topic: str | None,
        body: bytes | None,
    ) -> None:
        self.quarantine.record(
            source=source,
            reason=reason,
            policy=self.settings.for_tenant(tenant_id),
            tenant_id=tenant_id,
            device_id=device_id,
            topic=topic,
            payload=body,
        )

    def _precheck(self, tenant_id: str, device_id: str, payload: DevicePayload, header_token: str | None) -> str:
        """Checks that need no credentials; returns the token to verify."""
        if payload.tenant_id is not None and payload.tenant_id != tenant_id:
            raise Rejected(Reason.TENANT_MISMATCH, "payload tenant_id differs from the topic/path tenant")
        if not payload.site_id:
            raise Rejected(Reason.MISSING_SITE_ID, "site_id is required")
        policy = self.settings.for_tenant(tenant_id)
        if not self.limiter.allow((tenant_id, device_id), policy.rate_per_s, policy.burst):
            raise Rejected(Reason.RATE_LIMITED, f"more than {policy.rate_per_s:g}/s (burst {policy.burst:g})")
        token = header_token or payload.provision_token
        if not token:
            raise Rejected(Reason.TOKEN_MISSING, "provision token required")
        return token

    async def _accept(
        self,
        source: str,
        tenant_id: str,
        device_id: str,
        msg_type: str,
        payload: DevicePayload,
        header_token: str | None,
    ) -> tuple[Observation, asyncio.Future[None]]:
        token = self._precheck(tenant_id, device_id, payload, header_token)
        found, creds = self.devices.peek(tenant_id, device_id)
        if not found:
            creds = await self.devices.get(tenant_id, device_id)
        return self._finish(source, tenant_id, device_id, msg_type, payload, token, creds)

    def from_mqtt_nowait(self, topic: str, body: bytes) -> tuple[Observation, asyncio.Future[None]] | None:
        """from_mqtt without awaiting, for the hot path: None when the device's credentials are not
        cached yet (then call from_mqtt, which loads them). Rejections are quarantined and raised."""
        tenant_id = device_id = None
        try:
            tenant_id, device_id, msg_type = parse_topic(topic)
            self._check_size(tenant_id, body)
            payload = decode_payload(body)
            found, creds = self.devices.peek(tenant_id, device_id)
            if not found:
                return None
            token = self._precheck(tenant_id, device_id, payload, None)
            return self._finish("mqtt", tenant_id, device_id, msg_type, payload, token, creds)
        except Rejected as rej:
            self._quarantine("mqtt", rej.reason, tenant_id, device_id, topic, body)
            raise

    def _finish(
        self,
        source: str,
        tenant_id: str,
        device_id: str,
        msg_type: str,
        payload: DevicePayload,
        token: str,
        creds: DeviceCredentials | None,
    ) -> tuple[Observation, asyncio.Future[None]]:
        if creds is None:
            raise Rejected(Reason.UNREGISTERED_DEVICE, "device is not registered")
        if creds.status == "revoked" or not creds.tenant_active:
            raise Rejected(Reason.DEVICE_REVOKED, "device is revoked" if creds.tenant_active else "tenant is disabled")
        if not creds.token_matches(token):
            raise Rejected(Reason.TOKEN_INVALID, "token does not match this device")
        if creds.site_id is not None and payload.site_id != creds.site_id:
            raise Rejected(Reason.SITE_MISMATCH, "site_id differs from the device's registered site")
        now = datetime.now(UTC)
        metrics, ts = check_payload(payload, self.limits, now)
        ts_text = format_ts(ts)
        obs = Observation(
            id=observation_id(tenant_id, device_id, msg_type, payload.seq, ts_text),
            tenant_id=tenant_id,
            device_id=device_id,
            site_id=payload.site_id,
            source=source,
            kind=msg_type,
            ts=ts_text,
            received_at=format_ts(now),
            metrics=metrics,
            seq=payload.seq,
        )
        self.accepted += 1
        return obs, self.publisher.add(_encoder.encode(obs))
