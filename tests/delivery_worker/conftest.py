"""A delivery worker running in-process against the session's PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from services.common.db import Database
from services.common.ssrf import AddressPolicy
from services.delivery_worker.channels import build_channels
from services.delivery_worker.worker import Backoff, DeliveryWorker, WorkerConfig
from tests.ingest.conftest import eventually

LOOPBACK = AddressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"])


def fast_config(**overrides: Any) -> WorkerConfig:
    """Small backoff and lease values so fault tests run in seconds."""
    values: dict[str, Any] = {
        "worker_id": f"test-{uuid.uuid4().hex[:6]}",
        "concurrency": 8,
        "poll_s": 0.1,
        "lease_s": 2.0,
        "max_attempts": 5,
        "backoff": Backoff(base_s=0.1, cap_s=5.0, jitter=0.2),
        "ui_base_url": "https://pulse.example",
    }
    values.update(overrides)
    return WorkerConfig(**values)


@asynccontextmanager
async def running_worker(
    db: Database,
    config: WorkerConfig | None = None,
    *,
    policy: AddressPolicy = LOOPBACK,
    redis: aioredis.Redis | None = None,
    timeout_s: float = 2.0,
) -> AsyncIterator[DeliveryWorker]:
    channels = build_channels(policy, timeout_s=timeout_s)
    worker = DeliveryWorker(db, channels, config or fast_config(), redis)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        for channel in channels.values():
            await channel.close()


async def job_state(admin: asyncpg.Connection, job_id: uuid.UUID) -> asyncpg.Record:
    row: asyncpg.Record = await admin.fetchrow("SELECT * FROM delivery_jobs WHERE job_id = $1", job_id)
    return row


async def wait_state(admin: asyncpg.Connection, job_id: uuid.UUID, state: str, timeout: float = 10.0) -> asyncpg.Record:
    row: asyncpg.Record = await eventually(lambda: job_state(admin, job_id), lambda r: r["state"] == state, timeout)
    return row


async def attempts(admin: asyncpg.Connection, job_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await admin.fetch("SELECT * FROM delivery_attempts WHERE job_id = $1 ORDER BY attempt_no", job_id))
