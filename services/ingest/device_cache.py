"""Device credentials cached in memory with a short TTL, dropped at once on revoke/rotate.

The admin API publishes on CHANNEL_DEVICE_CREDENTIALS when a device's credentials change;
every ingest replica listens and forgets that device, so a revoked device is refused within
moments. The TTL bounds staleness should a notification be missed (e.g. Redis restarted).
Unknown devices are cached too (negative entries, shorter TTL) so a flood of messages for an
unregistered id does not become a flood of database reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from services.common import constants
from services.common.credentials import hash_secret, secrets_equal
from services.common.db import Database

__all__ = ["DeviceCache", "DeviceCredentials"]

log = logging.getLogger("pulse.ingest.devices")


@dataclass(slots=True)
class DeviceCredentials:
    tenant_id: str
    device_id: str
    status: str  # provisioned | active | revoked
    site_id: str | None
    token_hash: str | None
    tenant_active: bool
    last_good_token: str | None = None  # skip re-hashing the token the device keeps sending

    def token_matches(self, token: str) -> bool:
        if self.token_hash is None:
            return False
        if self.last_good_token is not None and secrets_equal(token, self.last_good_token):
            return True
        if secrets_equal(hash_secret(token), self.token_hash):
            self.last_good_token = token
            return True
        return False


_Key = tuple[str, str]


class DeviceCache:
    def __init__(self, db: Database, *, ttl_s: float = 30.0, negative_ttl_s: float = 5.0) -> None:
        self._db = db
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        self._entries: dict[_Key, tuple[DeviceCredentials | None, float]] = {}
        self._loading: dict[_Key, asyncio.Future[DeviceCredentials | None]] = {}
        self.hits = 0
        self.misses = 0
        self.subscribed = asyncio.Event()  # set once listen() hears invalidations

    def peek(self, tenant_id: str, device_id: str) -> tuple[bool, DeviceCredentials | None]:
        """(found, credentials) from memory only; found=False means a database read is needed."""
        entry = self._entries.get((tenant_id, device_id))
        if entry is not None and entry[1] > time.monotonic():
            self.hits += 1
            return True, entry[0]
        return False, None

    async def get(self, tenant_id: str, device_id: str) -> DeviceCredentials | None:
        found, creds = self.peek(tenant_id, device_id)
        if found:
            return creds
        key = (tenant_id, device_id)
        pending = self._loading.get(key)
        if pending is not None:  # one database read per device, however many messages wait
            return await asyncio.shield(pending)
        future: asyncio.Future[DeviceCredentials | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            self.misses += 1
            creds = await self._load(tenant_id, device_id)
            ttl = self._ttl if creds is not None else self._negative_ttl
            self._entries[key] = (creds, time.monotonic() + ttl)
            future.set_result(creds)
            return creds
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it via shield; no "never retrieved" noise
            raise
        finally:
            del self._loading[key]

    async def preload(self, limit: int) -> int:
        """Cache up to `limit` active devices in one query, so a restart under load (a broker
        backlog) does not begin with a database read per device."""
        if limit <= 0:
            return 0
        async with self._db.worker() as conn:
            rows = await conn.fetch(
                "SELECT d.tenant_id, d.device_id, d.status, d.site_id, d.token_hash,"
                " t.status = 'active' AS tenant_active"
                " FROM devices d JOIN tenants t USING (tenant_id) WHERE d.status = 'active'"
                " ORDER BY d.updated_at DESC LIMIT $1",
                limit,
            )
        expires = time.monotonic() + self._ttl
        for r in rows:
            creds = DeviceCredentials(
                r["tenant_id"], r["device_id"], r["status"], r["site_id"], r["token_hash"], r["tenant_active"]
            )
            self._entries[(r["tenant_id"], r["device_id"])] = (creds, expires)
        return len(rows)

    async def _load(self, tenant_id: str, device_id: str) -> DeviceCredentials | None:
        async with self._db.worker() as conn:
            row = await conn.fetchrow(
                "SELECT d.status, d.site_id, d.token_hash, t.status = 'active' AS tenant_active"
                " FROM devices d JOIN tenants t USING (tenant_id)"
                " WHERE d.tenant_id = $1 AND d.device_id = $2",
                tenant_id,
                device_id,
            )
        if row is None:
            return None
        return DeviceCredentials(
            tenant_id, device_id, row["status"], row["site_id"], row["token_hash"], row["tenant_active"]
        )

    def invalidate(self, tenant_id: str, device_id: str) -> None:
        self._entries.pop((tenant_id, device_id), None)

    def clear(self) -> None:
        self._entries.clear()

    async def listen(self, r: aioredis.Redis, stop: asyncio.Event) -> None:
        """Drop devices named on the credentials channel until `stop`; resubscribe after errors."""
        while not stop.is_set():
            pubsub = r.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(constants.CHANNEL_DEVICE_CREDENTIALS)
                # anything could have changed while we were not subscribed
                self.clear()
                self.subscribed.set()
                while not stop.is_set():
                    message = await pubsub.get_message(timeout=0.25)
                    if message is None:
                        continue
                    try:
                        body = json.loads(message["data"])
                        self.invalidate(str(body["tenant_id"]), str(body["device_id"]))
                    except (ValueError, KeyError, TypeError):
                        log.warning("ignoring malformed credentials notification")
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning("credentials channel lost; cache cleared, resubscribing", extra={"error": str(exc)})
                self.subscribed.clear()
                self.clear()
                await asyncio.sleep(1.0)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
