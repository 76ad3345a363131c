"""Attempt outcomes written in batches: one transaction for every attempt that finished meanwhile.

Each finished attempt waits until its row in delivery_attempts and its job's new state are
committed (so the job never looks done before it is). Attempts that finish while a batch is
being written form the next batch, so under load a transaction carries many outcomes and
when idle one outcome costs one transaction, as before. The job update is fenced on
(leased_by, attempts): `record` returns False when the job was taken over after its lease ran
out; the attempt row is written either way.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime

from services.common.db import Database

__all__ = ["AttemptRecord", "Recorder"]

_INSERT_ATTEMPTS = """
INSERT INTO delivery_attempts (tenant_id, job_id, attempt_no, started_at, duration_ms, outcome, status_code, error)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::int[], $4::timestamptz[], $5::int[], $6::text[], $7::int[],
                     $8::text[])
ON CONFLICT (job_id, attempt_no) DO NOTHING
"""

_UPDATE_JOBS = """
UPDATE delivery_jobs j
   SET state = u.state, next_attempt_at = COALESCE(u.next_at, j.next_attempt_at), last_error = u.last_error,
       completed_at = CASE WHEN u.state IN ('DELIVERED', 'FAILED') THEN now() END,
       lease_expires_at = NULL, leased_by = NULL
  FROM unnest($1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::text[])
       AS u(job_id, attempts, state, next_at, last_error)
 WHERE j.job_id = u.job_id AND j.attempts = u.attempts AND j.leased_by = $6 AND j.state = 'IN_PROGRESS'
RETURNING j.job_id
"""


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    tenant_id: str
    job_id: uuid.UUID
    attempt_no: int
    started_at: datetime
    duration_ms: int
    outcome: str
    status_code: int | None
    error: str | None
    state: str  # the job's next state
    next_attempt_at: datetime | None
    last_error: str | None


class Recorder:
    def __init__(self, db: Database, worker_id: str, *, max_batch: int = 500) -> None:
        self.db = db
        self.worker_id = worker_id
        self.max_batch = max_batch
        self._pending: list[tuple[AttemptRecord, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, rec: AttemptRecord) -> bool:
        """Commit `rec`; True when the job's state was updated (it was still ours)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((rec, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        return await future

    async def _write_all(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # attempts finishing in this turn of the loop join the batch
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                ours = await self._write([rec for rec, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for rec, future in batch:
                if not future.done():
                    future.set_result(rec.job_id in ours)

    async def _write(self, records: list[AttemptRecord]) -> set[uuid.UUID]:
        async with self.db.worker() as conn:
            await conn.execute(
                _INSERT_ATTEMPTS,
                [r.tenant_id for r in records],
                [r.job_id for r in records],
                [r.attempt_no for r in records],
                [r.started_at for r in records],
                [r.duration_ms for r in records],
                [r.outcome for r in records],
                [r.status_code for r in records],
                [r.error for r in records],
            )
            rows = await conn.fetch(
                _UPDATE_JOBS,
                [r.job_id for r in records],
                [r.attempt_no for r in records],
                [r.state for r in records],
                [r.next_attempt_at for r in records],
                [r.last_error for r in records],
                self.worker_id,
            )
        return {row["job_id"] for row in rows}
