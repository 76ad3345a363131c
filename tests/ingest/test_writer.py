"""The telemetry writer between the real Redis stream and a real PostgreSQL telemetry store."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.common import constants
from services.common.bus import publish_many
from services.common.db import Database
from services.common.migrations import migrate
from services.common.observations import Observation, observation_id
from services.common.telemetry import TelemetryStore, open_store
from services.devstack import PostgresServer
from services.ingest.writer import TelemetryWriter, WriterOptions

pytestmark = pytest.mark.integration

STREAM = constants.STREAM_OBSERVATIONS
GROUP = constants.GROUP_TELEMETRY_WRITER
FAST = WriterOptions(batch_size=50, block_ms=100, claim_idle_ms=300, claim_interval_s=0.2, max_failures=2)
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def observation(i: int, tenant_id: str = "tenant-a") -> Observation:
    ts = (T0 + timedelta(milliseconds=10 * i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    device_id = f"dev-{i % 7}"
    return Observation(
        id=observation_id(tenant_id, device_id, "telemetry", i, ts),
        tenant_id=tenant_id,
        device_id=device_id,
        site_id="site-1",
        source="mqtt",
        kind="telemetry",
        ts=ts,
        received_at=ts,
        metrics={"temp_c": 20.0 + i % 10, "seq_seen": float(i)},
        seq=i,
    )


async def publish(r: aioredis.Redis, observations: list[Observation]) -> None:
    await publish_many(r, STREAM, (o.to_message() for o in observations), maxlen=1_000_000)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def pending(r: aioredis.Redis) -> int:
    return int((await r.xpending(STREAM, GROUP))["pending"])


@contextlib.asynccontextmanager
async def running(writer: TelemetryWriter) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def test_observations_on_the_stream_are_stored_and_acked(
    redis_client: aioredis.Redis, db: Database, admin_conn: asyncpg.Connection
) -> None:
    store = await open_store("postgres", database=db)
    writer = TelemetryWriter(redis_client, store, consumer="w1", options=FAST)
    async with running(writer):
        await publish(redis_client, [observation(i) for i in range(120)])
        await publish(redis_client, [observation(i, "tenant-b") for i in range(30)])

        async def stored() -> bool:
            return await admin_conn.fetchval("SELECT count(*) FROM telemetry") == 150

        await eventually(stored, what="150 readings stored")
        await eventually(lambda: _zero(pending(redis_client)), what="nothing pending")
    assert writer.written == 150
    assert [r.seq for r in await store.recent("tenant-b", "dev-0", limit=3)] == [14, 21, 28]


async def _zero(value: Awaitable[int]) -> bool:
    return await value == 0


async def test_an_entry_that_is_no_observation_is_dead_lettered_and_the_rest_stored(
    redis_client: aioredis.Redis, db: Database, admin_conn: asyncpg.Connection
) -> None:
    store = await open_store("postgres", database=db)
    writer = TelemetryWriter(redis_client, store, consumer="w1", options=FAST)
    good = [observation(i) for i in range(20)]
    broken = {**observation(99).to_message(), "ts": "last tuesday"}
    missing = {"id": "x", "kind": "telemetry"}
    await publish_many(redis_client, STREAM, [*(o.to_message() for o in good[:10]), broken, missing], maxlen=10_000)
    await publish(redis_client, good[10:])
    async with running(writer):

        async def settled() -> bool:
            return (
                await redis_client.xlen(f"{STREAM}{constants.DEAD_LETTER_SUFFIX}") == 2
                and await pending(redis_client) == 0
            )

        await eventually(settled, what="two entries dead-lettered, none pending")
    assert await admin_conn.fetchval("SELECT count(*) FROM telemetry") == 20
    dead = await redis_client.xrange(f"{STREAM}{constants.DEAD_LETTER_SUFFIX}")
    errors = sorted(fields[b"error"].decode() for _, fields in dead)
    assert "InvalidObservation" in errors[0] and "ValidationError" in errors[1]


async def test_a_store_outage_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    server = PostgresServer(tmp_path / "pg", durable=False)
    await asyncio.to_thread(server.start)
    try:
        server.ensure_database("outage")
        await migrate(server.url("postgres", "outage"))
        store = await open_store("postgres", database_url=server.url(constants.DB_ROLE_SERVICE, "outage"))
        try:
            await _outage(server, store, redis_client)
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(server.stop)


async def _outage(server: PostgresServer, store: TelemetryStore, r: aioredis.Redis) -> None:
    admin_url = server.url("postgres", "outage")

    async def stored(sql: str = "SELECT count(*) FROM telemetry") -> int:
        conn = await asyncpg.connect(admin_url)
        try:
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()

    n_before, n_during = 200, 300
    everything = [observation(i) for i in range(n_before + n_during)]
    writer = TelemetryWriter(r, store, consumer="w1", options=FAST)
    async with running(writer) as task:
        await publish(r, everything[:n_before])
        await eventually(lambda: _equals(stored(), n_before), what="the first readings stored")

        async def trickle() -> None:  # ingest keeps publishing through the outage
            for start in range(n_before, n_before + n_during, 20):
                await publish(r, everything[start : start + 20])
                await asyncio.sleep(0.03)

        publisher = asyncio.create_task(trickle())
        await asyncio.sleep(0.1)
        await asyncio.to_thread(server.stop)  # mid-stream
        await publisher
        await eventually(lambda: _positive(pending(r)), what="entries pending while the store is down")
        await asyncio.sleep(1.0)
        assert not task.done(), "the writer must keep running while its store is down"
        assert writer.unavailable > 0
        assert await pending(r) > 0
        assert await r.xlen(f"{STREAM}{constants.DEAD_LETTER_SUFFIX}") == 0

        await asyncio.to_thread(server.start)  # same data directory and port
        total = n_before + n_during
        await eventually(lambda: _equals(stored(), total), timeout=15, what="every reading stored after the outage")
        await eventually(lambda: _zero(pending(r)), what="nothing pending after the outage")

    assert await stored("SELECT count(DISTINCT obs_id) FROM telemetry") == total
    assert (
        await stored("SELECT count(*) FROM (SELECT obs_id FROM telemetry GROUP BY obs_id HAVING count(*) > 1) d") == 0
    )
    assert await r.xlen(f"{STREAM}{constants.DEAD_LETTER_SUFFIX}") == 0
    assert writer.consumer.stats.failures == 0


async def _equals(value: Awaitable[int], expected: int) -> bool:
    try:
        return await value == expected
    except (OSError, asyncpg.PostgresError):  # the server is still starting
        return False


async def _positive(value: Awaitable[int]) -> bool:
    return await value > 0
