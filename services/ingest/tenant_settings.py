"""Ingest settings from the `settings` table: global defaults plus per-tenant overrides.

Keys (jsonb values): ingest.mode ("DEV"|"PROD"), ingest.store_rejects (bool),
ingest.max_payload_bytes (int), ingest.rate_per_s (number), ingest.burst (number).
Reloaded every `refresh_s`, so a change takes effect within seconds, for MQTT and HTTP alike.
A process running with PULSE_MODE=PROD is PROD whatever the table says.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from services.common.config import Mode
from services.common.db import Database
from services.common.lifecycle import sleep_or_stop

__all__ = ["IngestPolicy", "TenantSettings"]

log = logging.getLogger("pulse.ingest.settings")

_KEYS = {
    "ingest.mode": "mode",
    "ingest.store_rejects": "store_rejects",
    "ingest.max_payload_bytes": "max_payload_bytes",
    "ingest.rate_per_s": "rate_per_s",
    "ingest.burst": "burst",
}


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    mode: Mode = Mode.DEV
    store_rejects: bool = True
    max_payload_bytes: int = 8192
    rate_per_s: float = 50.0
    burst: float = 100.0

    @property
    def keep_payload(self) -> bool:
        return self.mode is Mode.DEV and self.store_rejects


def _coerce(field: str, value: Any) -> Any:
    if field == "mode":
        return Mode(str(value).upper())
    if field == "store_rejects":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if field == "max_payload_bytes":
        size = int(value)
        if size < 64:
            raise ValueError("expected an integer >= 64")
        return size
    rate = float(value)
    if rate <= 0:
        raise ValueError("expected a number > 0")
    return rate


class TenantSettings:
    """Current IngestPolicy per tenant; `for_tenant` is a dict lookup on the hot path."""

    def __init__(self, db: Database, base: IngestPolicy, *, forced_mode: Mode | None = None) -> None:
        self._db = db
        self._base = base
        self._forced_mode = forced_mode
        self.default = base
        self._tenants: dict[str, IngestPolicy] = {}
        self._last_rows: list[tuple[str | None, str, Any]] | None = None

    def for_tenant(self, tenant_id: str | None) -> IngestPolicy:
        if tenant_id is None:
            return self.default
        return self._tenants.get(tenant_id, self.default)

    async def refresh(self) -> None:
        async with self._db.worker() as conn:
            rows = await conn.fetch(
                "SELECT tenant_id, key, value FROM settings WHERE key = ANY($1::text[]) ORDER BY tenant_id NULLS FIRST",
                list(_KEYS),
            )
        current = [(r["tenant_id"], r["key"], r["value"]) for r in rows]
        if current == self._last_rows:
            return
        self._last_rows = current
        global_changes: dict[str, Any] = {}
        tenant_changes: dict[str, dict[str, Any]] = {}
        for tenant_id, key, value in current:
            field = _KEYS[key]
            try:
                coerced = _coerce(field, value)
            except (ValueError, TypeError) as exc:
                log.warning("ignoring invalid setting", extra={"tenant_id": tenant_id, "key": key, "error": str(exc)})
                continue
            target = global_changes if tenant_id is None else tenant_changes.setdefault(tenant_id, {})
            target[field] = coerced
        default = dataclasses.replace(self._base, **global_changes)
        if self._forced_mode is not None:
            default = dataclasses.replace(default, mode=self._forced_mode)
        tenants = {}
        for tenant_id, changes in tenant_changes.items():
            policy = dataclasses.replace(default, **changes)
            if self._forced_mode is not None:
                policy = dataclasses.replace(policy, mode=self._forced_mode)
            tenants[tenant_id] = policy
        self.default, self._tenants = default, tenants
        log.info("ingest settings loaded", extra={"overrides": sorted(tenants), "default": dataclasses.asdict(default)})

    async def run(self, stop: asyncio.Event, refresh_s: float) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("settings refresh failed; keeping current settings", extra={"error": repr(exc)})
            await sleep_or_stop(stop, refresh_s)
