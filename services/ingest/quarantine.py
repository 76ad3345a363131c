"""Rejected device messages: per-minute counters always, events with a reason, payload in DEV only.

Rejections are recorded in memory on the hot path and flushed to Postgres every second by one
task (one INSERT over unnest() for events, an upsert for counters). If Postgres is away the records wait, bounded:
counters are tiny and always kept; beyond `max_pending` events the oldest event *details* are
dropped (counted in pulse_ingest_quarantine_events_dropped_total and logged), never the counts.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from datetime import UTC, datetime

from prometheus_client import Counter

from services.common.db import Database
from services.common.lifecycle import sleep_or_stop
from services.ingest.reasons import Reason
from services.ingest.tenant_settings import IngestPolicy

__all__ = ["REJECTED", "Quarantine"]

log = logging.getLogger("pulse.ingest.quarantine")

REJECTED = Counter("pulse_ingest_rejected_total", "Rejected device messages", ["source", "reason"])
_DROPPED = Counter(
    "pulse_ingest_quarantine_events_dropped_total", "Quarantine event details dropped while Postgres was away"
)
EXCERPT_BYTES = 1024

_Event = tuple[str | None, str | None, datetime, str, str, str | None, str | None]


class Quarantine:
    def __init__(self, db: Database, *, max_pending: int = 50_000) -> None:
        self._db = db
        self._events: collections.deque[_Event] = collections.deque(maxlen=max_pending)
        self._counters: collections.Counter[tuple[str | None, datetime, str]] = collections.Counter()
        self._dropped = 0

    def record(
        self,
        *,
        source: str,
        reason: Reason,
        policy: IngestPolicy,
        tenant_id: str | None,
        device_id: str | None,
        topic: str | None,
        payload: bytes | None,
        at: datetime | None = None,
    ) -> None:
        at = at or datetime.now(UTC)
        REJECTED.labels(source, reason.value).inc()
        self._counters[(tenant_id, at.replace(second=0, microsecond=0), reason.value)] += 1
        excerpt = None
        if policy.keep_payload and payload is not None:
            excerpt = payload[:EXCERPT_BYTES].decode("utf-8", errors="replace")
        if len(self._events) == self._events.maxlen:
            self._dropped += 1
            _DROPPED.inc()
        # PROD keeps time, tenant, device and reason only: no payload, no topic
        keep_topic = topic if policy.keep_payload else None
        self._events.append((tenant_id, device_id, at, source, reason.value, keep_topic, excerpt))

    @property
    def pending(self) -> int:
        return len(self._events)

    async def flush(self) -> int:
        """Write what is pending; on failure everything stays for the next flush."""
        if not self._events and not self._counters:
            return 0
        events = list(self._events)
        counters = dict(self._counters)
        async with self._db.worker() as conn:
            if events:
                # COPY is refused on tables with row level security: one INSERT over unnest() instead
                columns = list(zip(*events, strict=True))
                await conn.execute(
                    "INSERT INTO quarantine_events"
                    " (tenant_id, device_id, received_at, source, reason, topic, payload_excerpt)"
                    " SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],"
                    " $6::text[], $7::text[])",
                    *columns,
                )
            if counters:
                await conn.executemany(
                    "INSERT INTO quarantine_counters (tenant_id, minute, reason, count) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT ON CONSTRAINT quarantine_counters_key"
                    " DO UPDATE SET count = quarantine_counters.count + EXCLUDED.count",
                    [(t, m, r, c) for (t, m, r), c in counters.items()],
                )
        for _ in range(len(events)):
            self._events.popleft()
        self._counters.subtract(counters)
        self._counters = +self._counters  # drop zero entries
        if self._dropped:
            log.error("quarantine event details were dropped while Postgres was away", extra={"dropped": self._dropped})
            self._dropped = 0
        return len(events)

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        while True:
            try:
                await self.flush()
            except Exception as exc:
                log.warning("quarantine flush failed; will retry", extra={"error": repr(exc), "pending": self.pending})
            if stop.is_set():
                return
            await sleep_or_stop(stop, interval_s)
