"""Delivery jobs: claim from Postgres, attempt, record, and move to their next state.

Job lifecycle (delivery_jobs.state):

    PENDING --claim--> IN_PROGRESS --success--> DELIVERED
       ^                  |  |
       +----retry---------+  +--4xx / refused / attempts exhausted--> FAILED
       (next_attempt_at = now + backoff, or the receiver's Retry-After if longer)

A claim (FOR UPDATE SKIP LOCKED, so workers never take the same job) takes due PENDING jobs
and IN_PROGRESS jobs whose lease expired (their worker died), sets a lease, and counts the
attempt up front: a job that kills its worker still uses up its attempts. Completion is
fenced on (leased_by, attempts): a worker whose lease ran out and whose job was taken over
records its attempt but does not overwrite the job. Every attempt sends the job's stable
delivery_id, so a repeat after a crash is recognisable by the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram

from services.common.db import Database
from services.delivery_worker.channels.base import Channel, Delivery, Outcome, OutcomeKind
from services.delivery_worker.payload import build_payload
from services.delivery_worker.recorder import AttemptRecord, Recorder

__all__ = ["Backoff", "DeliveryWorker", "JobState", "WorkerConfig"]

log = logging.getLogger("pulse.delivery_worker")

_ATTEMPTS = Counter("pulse_delivery_attempts_total", "Delivery attempts", ["type", "outcome"])
_DURATION = Histogram("pulse_delivery_attempt_seconds", "Duration of one delivery attempt", ["type"])


class JobState:
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: base, doubling per attempt, capped; jitter ±fraction."""

    base_s: float = 30.0
    cap_s: float = 7200.0
    jitter: float = 0.2

    def delay(self, attempt: int, retry_after_s: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds before attempt `attempt + 1`, given that attempt `attempt` (1-based) failed."""
        raw = min(self.cap_s, self.base_s * 2.0 ** max(0, attempt - 1))
        uniform = rng.uniform if rng is not None else random.uniform
        spread = uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else 1.0
        delay = min(self.cap_s, raw * spread)
        if retry_after_s is not None:  # the receiver knows best, within our cap
            delay = max(delay, min(retry_after_s, self.cap_s))
        return delay


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: str
    concurrency: int = 64
    claim_batch: int = 100
    poll_s: float = 2.0
    lease_s: float = 60.0
    max_attempts: int = 5
    backoff: Backoff = Backoff()
    ui_base_url: str = "http://localhost:8080"
    wake_stream: str | None = None  # pulse:deliveries; None: poll only


_CLAIM = """
WITH due AS (
    SELECT job_id FROM delivery_jobs
     WHERE (state = 'PENDING' AND next_attempt_at <= now())
        OR (state = 'IN_PROGRESS' AND lease_expires_at < now())
     ORDER BY next_attempt_at
     LIMIT $1
     FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE delivery_jobs j
       SET state = 'IN_PROGRESS', attempts = j.attempts + 1, leased_by = $2,
           lease_expires_at = now() + make_interval(secs => $3)
      FROM due
     WHERE j.job_id = due.job_id
 RETURNING j.job_id, j.tenant_id, j.event_id, j.alert_id, j.integration_id, j.attempts, j.delivery_id
)
SELECT c.*, e.status AS transition, e.severity AS event_severity, e.at AS event_at,
       a.device_id, a.site_id, a.alert_type, a.status AS alert_status, a.fingerprint, a.summary, a.details,
       a.first_seen_at, a.last_seen_at, a.event_count, t.name AS tenant_name,
       i.type AS integration_type, i.enabled AS integration_enabled, i.config, i.secrets
  FROM claimed c
  JOIN alert_events e ON e.event_id = c.event_id
  JOIN alerts a ON a.alert_id = c.alert_id
  JOIN tenants t ON t.tenant_id = c.tenant_id
  JOIN integrations i ON i.integration_id = c.integration_id
"""


class DeliveryWorker:
    """Claims due jobs, runs up to `concurrency` attempts at once, records each outcome."""

    def __init__(
        self, db: Database, channels: Mapping[str, Channel], config: WorkerConfig, r: aioredis.Redis | None = None
    ) -> None:
        self.db = db
        self.channels = channels
        self.config = config
        self.redis = r
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self.recorder = Recorder(db, config.worker_id)
        # claim again once this many slots are free: one claim per completion would cost a
        # transaction per delivery under load
        self._claim_at = max(1, config.concurrency // 4)
        self.delivered = 0
        self.failed = 0
        self.retried = 0

    def wake(self) -> None:
        """Look for due jobs now (a new job was announced, or a retry fell due)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and deliver until `stop`; then finish the attempts in hand."""
        cfg = self.config
        listener = asyncio.create_task(self._listen(stop)) if self.redis is not None and cfg.wake_stream else None
        try:
            while not stop.is_set():
                free = cfg.concurrency - len(self._inflight)
                if free >= self._claim_at:
                    self._wake.clear()
                    want = min(free, cfg.claim_batch)
                    jobs = await self._claim_safely(want, stop)
                    for row in jobs:
                        task = asyncio.create_task(self._attempt(row))
                        self._inflight.add(task)
                        task.add_done_callback(self._inflight.discard)
                    if len(jobs) == want and cfg.concurrency - len(self._inflight) >= self._claim_at:
                        continue  # more may be due at once
                await self._idle(stop)
        finally:
            if self._inflight:  # drain: each attempt is bounded by its channel's timeout
                await asyncio.gather(*list(self._inflight), return_exceptions=True)
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Wait for a wake-up, a stop, a free slot (when full) or the poll interval."""
        waiters: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(stop.wait()),
        }
        if self.config.concurrency - len(self._inflight) < self._claim_at:
            waiters |= set(self._inflight)
        try:
            await asyncio.wait(waiters, timeout=self.config.poll_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                if w not in self._inflight:
                    w.cancel()

    async def _claim_safely(self, limit: int, stop: asyncio.Event) -> list[asyncpg.Record]:
        try:
            return await self.claim(limit)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("claiming jobs failed; retrying", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.poll_s)
            return []

    async def claim(self, limit: int) -> list[asyncpg.Record]:
        cfg = self.config
        async with self.db.worker() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(_CLAIM, limit, cfg.worker_id, cfg.lease_s)
        return rows

    async def _attempt(self, row: asyncpg.Record) -> None:
        try:
            await self.attempt(row)
        except Exception:
            # the lease expires and the job is claimed again; nothing is lost
            log.exception("delivery attempt crashed", extra={"job_id": str(row["job_id"])})

    async def attempt(self, row: asyncpg.Record) -> OutcomeKind:
        """Deliver one claimed job and record the outcome; returns the job's resulting outcome."""
        cfg = self.config
        attempt_no = int(row["attempts"])
        kind = str(row["integration_type"])
        started = datetime.now(UTC)
        t0 = time.monotonic()
        if attempt_no > cfg.max_attempts:  # its worker died during the last allowed attempt
            outcome = Outcome.failed(f"attempts exhausted ({cfg.max_attempts}); the last one never reported back")
        elif not row["integration_enabled"]:
            outcome = Outcome.failed("integration disabled")
        elif (channel := self.channels.get(kind)) is None:
            outcome = Outcome.failed(f"no channel for integration type {kind!r} in this worker")
        else:
            delivery = Delivery(
                delivery_id=str(row["delivery_id"]),
                integration_id=str(row["integration_id"]),
                integration_type=kind,
                config=row["config"] or {},
                secrets=row["secrets"] or {},
                payload=build_payload(row, cfg.ui_base_url),
            )
            try:
                outcome = await channel.send(delivery)
            except Exception as exc:  # a channel bug: recorded and retried like any failure
                log.exception("channel raised", extra={"job_id": str(row["job_id"]), "type": kind})
                outcome = Outcome.retry(f"internal error: {type(exc).__name__}: {exc}"[:500])
        duration = time.monotonic() - t0
        _ATTEMPTS.labels(kind, outcome.kind.value).inc()
        _DURATION.labels(kind).observe(duration)
        return await self._record(row, attempt_no, started, duration, outcome)

    async def _record(
        self, row: asyncpg.Record, attempt_no: int, started: datetime, duration: float, outcome: Outcome
    ) -> OutcomeKind:
        cfg = self.config
        next_at: datetime | None = None
        error = outcome.error
        if outcome.kind is OutcomeKind.SUCCESS:
            state, result = JobState.DELIVERED, OutcomeKind.SUCCESS
        elif outcome.kind is OutcomeKind.RETRY and attempt_no < cfg.max_attempts:
            state, result = JobState.PENDING, OutcomeKind.RETRY
            delay = cfg.backoff.delay(attempt_no, outcome.retry_after_s)
            next_at = datetime.fromtimestamp(time.time() + delay, UTC)
            asyncio.get_running_loop().call_later(delay, self.wake)  # no need to wait for the poll
        else:
            state, result = JobState.FAILED, OutcomeKind.FAILED
            if outcome.kind is OutcomeKind.RETRY:
                error = f"gave up after {attempt_no} attempts: {outcome.error}"
        ours = await self.recorder.record(
            AttemptRecord(
                tenant_id=row["tenant_id"],
                job_id=row["job_id"],
                attempt_no=attempt_no,
                started_at=started,
                duration_ms=int(duration * 1000),
                outcome=outcome.kind.value,
                status_code=outcome.status_code,
                error=(outcome.error or "")[:2000] or None,
                state=state,
                next_attempt_at=next_at,
                last_error=(error or "")[:2000] or None,
            )
        )
        if not ours:
            log.warning(
                "job was taken over after its lease expired; outcome recorded, state left to the new holder",
                extra={"job_id": str(row["job_id"]), "attempt": attempt_no},
            )
        extra = {
            "job_id": str(row["job_id"]),
            "delivery_id": str(row["delivery_id"]),
            "tenant_id": row["tenant_id"],
            "integration_id": str(row["integration_id"]),
            "type": row["integration_type"],
            "attempt": attempt_no,
            "outcome": outcome.kind.value,
            "state": state,
            "status_code": outcome.status_code,
            "duration_ms": int(duration * 1000),
        }
        if state == JobState.DELIVERED:
            self.delivered += 1
            log.debug("delivered", extra=extra)
        elif state == JobState.PENDING:
            self.retried += 1
            log.info("delivery will be retried", extra={**extra, "error": error, "next_attempt_at": str(next_at)})
        else:
            self.failed += 1
            log.warning("delivery failed", extra={**extra, "error": error})
        return result

    async def _listen(self, stop: asyncio.Event) -> None:
        """Wake on pulse:deliveries entries ({v, job_id}); every worker hears each one (no group):
        the claim decides who takes the job, and the poll covers anything missed."""
        assert self.redis is not None and self.config.wake_stream
        stream = self.config.wake_stream
        last = "$"
        while not stop.is_set():
            try:
                raw_resp = await self.redis.xread({stream: last}, count=1000, block=1000)
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning("wake-up stream unavailable; polling only", extra={"error": str(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
                continue
            resp = cast("list[tuple[bytes, list[tuple[bytes, Any]]]] | None", raw_resp)  # RESP2 reply shape
            for _stream, entries in resp or []:
                if entries:
                    raw = entries[-1][0]
                    last = raw.decode() if isinstance(raw, bytes) else str(raw)
                    self.wake()
