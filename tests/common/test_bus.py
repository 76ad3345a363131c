from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services.common.bus import (
    ConsumerConfig,
    Entry,
    MalformedEntry,
    RetryLater,
    StreamConsumer,
    decode,
    encode,
    publish,
    publish_many,
)
from tests.common.bus_worker import BATCH_STARTED, BATCHES_DONE, HANDLED

ROOT = Path(__file__).resolve().parents[2]
STREAM = "test:stream"
GROUP = "workers"


async def wait_for(pred: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def spawn_worker(url: str, consumer: str, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.common.bus_worker", url, STREAM, GROUP, consumer, mode],
        cwd=ROOT,  # its stderr (JSON logs) goes to pytest's captured output
    )


async def pending_count(r: aioredis.Redis) -> int:
    return int((await r.xpending(STREAM, GROUP))["pending"])


@pytest.mark.unit
def test_entry_carries_version_and_round_trips() -> None:
    data = encode({"tenant_id": "t1", "metrics": {"temp": 21.5}})
    assert json.loads(data)["v"] == 1
    assert decode({b"data": data}) == {"tenant_id": "t1", "metrics": {"temp": 21.5}, "v": 1}


@pytest.mark.unit
@pytest.mark.parametrize(
    "fields", [None, {}, {b"other": b"x"}, {b"data": b"not json"}, {b"data": b"[1]"}, {b"data": b'{"v": 2}'}]
)
def test_malformed_entries_are_refused_with_a_reason(fields: dict[bytes, bytes] | None) -> None:
    with pytest.raises(MalformedEntry):
        decode(fields)


@pytest.mark.integration
async def test_publish_caps_the_stream_approximately(redis_client: aioredis.Redis) -> None:
    for chunk in range(10):
        await publish_many(redis_client, STREAM, ({"seq": chunk * 500 + i} for i in range(500)), maxlen=1000)
    one = await publish(redis_client, STREAM, {"seq": "last"}, maxlen=1000)
    length = await redis_client.xlen(STREAM)
    assert 1000 <= length < 5001
    last = await redis_client.xrevrange(STREAM, count=1)
    assert last[0][0].decode() == one
    assert json.loads(last[0][1][b"data"]) == {"seq": "last", "v": 1}


@pytest.mark.integration
async def test_10k_entries_survive_a_consumer_dying_mid_batch(redis_server, redis_client: aioredis.Redis) -> None:
    total = 10_000
    for start in range(0, total, 1000):
        await publish_many(redis_client, STREAM, ({"seq": i} for i in range(start, start + 1000)), maxlen=100_000)
    await StreamConsumer(redis_client, ConsumerConfig(STREAM, GROUP, "setup"), _noop).ensure_group()

    dying = spawn_worker(redis_server.url(), "dying", "die")
    assert await asyncio.to_thread(dying.wait, 60) == -signal.SIGKILL
    # it acked two batches and left the third (half handled) pending
    assert await pending_count(redis_client) == 100
    assert await redis_client.scard(HANDLED) == 250

    handled_twice: list[int] = []

    async def handler(entries: list[Entry]) -> None:
        seqs = [e.data["seq"] for e in entries]
        added = await redis_client.sadd(HANDLED, *seqs)
        if added != len(seqs):
            handled_twice.append(len(seqs) - added)

    stop = asyncio.Event()
    survivors = [
        StreamConsumer(
            redis_client,
            ConsumerConfig(
                STREAM, GROUP, f"survivor-{n}", batch_size=200, block_ms=100, claim_idle_ms=300, claim_interval_s=0.1
            ),
            handler,
        )
        for n in range(2)
    ]
    tasks = [asyncio.create_task(c.run(stop)) for c in survivors]

    async def all_done() -> bool:
        return await redis_client.scard(HANDLED) == total and await pending_count(redis_client) == 0

    await wait_for(all_done, 30, "every entry handled and acked")
    stop.set()
    await asyncio.gather(*tasks)

    members = {int(m) for m in await redis_client.smembers(HANDLED)}
    assert members == set(range(total))
    assert sum(c.stats.reclaimed for c in survivors) == 100  # the dead consumer's batch
    assert sum(handled_twice) == 50  # at-least-once: the half it handled before dying
    assert await redis_client.xlen(f"{STREAM}:dead") == 0


async def _noop(entries: list[Entry]) -> None:
    return None


@pytest.mark.integration
async def test_poison_entry_is_dead_lettered_after_n_failures_while_others_flow(redis_client: aioredis.Redis) -> None:
    await publish_many(redis_client, STREAM, ({"seq": i, "poison": i == 137} for i in range(500)), maxlen=10_000)
    await redis_client.xadd(STREAM, {"data": b"{not json"})
    handled: list[int] = []
    attempts: dict[int, int] = {}

    async def handler(entries: list[Entry]) -> None:
        for e in entries:
            if e.data["poison"]:
                attempts[e.data["seq"]] = attempts.get(e.data["seq"], 0) + 1
                raise ValueError(f"cannot handle seq {e.data['seq']}")
        handled.extend(e.data["seq"] for e in entries)

    cfg = ConsumerConfig(
        STREAM, GROUP, "c1", batch_size=50, block_ms=50, claim_idle_ms=100, claim_interval_s=0.05, max_failures=3
    )
    consumer = StreamConsumer(redis_client, cfg, handler)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def dead_lettered() -> bool:
        return await redis_client.xlen(cfg.dead_letters) == 2 and await pending_count(redis_client) == 0

    await wait_for(dead_lettered, 15, "poison and malformed entries in the dead-letter stream")
    stop.set()
    await task

    assert sorted(handled) == [i for i in range(500) if i != 137]
    assert consumer.stats.failures == 3
    assert attempts == {137: 4}  # once inside its first batch, then three times on its own
    dead = [fields for _id, fields in await redis_client.xrange(cfg.dead_letters)]
    by_kind = {b"malformed" if f[b"error"].startswith(b"malformed") else b"poison": f for f in dead}
    assert json.loads(by_kind[b"poison"][b"data"])["seq"] == 137
    assert b"ValueError" in by_kind[b"poison"][b"error"] and by_kind[b"poison"][b"failures"] == b"3"
    assert by_kind[b"malformed"][b"data"] == b"{not json"
    assert await redis_client.hlen(cfg.failures_key) == 0


@pytest.mark.integration
async def test_retry_later_keeps_entries_pending_without_counting_failures(redis_client: aioredis.Redis) -> None:
    await publish_many(redis_client, STREAM, ({"seq": i} for i in range(20)), maxlen=10_000)
    store_up = False
    stored: list[int] = []

    async def handler(entries: list[Entry]) -> None:
        if not store_up:
            raise RetryLater("store unavailable")
        stored.extend(e.data["seq"] for e in entries)

    # redelivered far more often than max_deliveries while the store is down: still not a "crasher"
    cfg = ConsumerConfig(
        STREAM, GROUP, "c1", block_ms=50, claim_idle_ms=100, claim_interval_s=0.05, max_failures=1, max_deliveries=2
    )
    consumer = StreamConsumer(redis_client, cfg, handler)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await asyncio.sleep(2.0)
    assert stored == [] and await pending_count(redis_client) == 20
    pending = await redis_client.xpending_range(STREAM, GROUP, min="-", max="+", count=20)
    assert max(p["times_delivered"] for p in pending) > cfg.max_deliveries
    store_up = True

    async def drained() -> bool:
        return await pending_count(redis_client) == 0

    await wait_for(drained, 15, "pending entries written once the store is back")
    stop.set()
    await task
    assert sorted(stored) == list(range(20))
    assert await redis_client.xlen(cfg.dead_letters) == 0
    assert consumer.stats.failures == 0


@pytest.mark.integration
async def test_sigterm_finishes_the_batch_in_hand_and_reads_no_more(redis_server, redis_client: aioredis.Redis) -> None:
    await publish_many(redis_client, STREAM, ({"seq": i} for i in range(300)), maxlen=10_000)
    worker = spawn_worker(redis_server.url(), "graceful", "slow")

    async def batch_started() -> bool:
        return await redis_client.llen(BATCH_STARTED) == 1

    await wait_for(batch_started, 20, "the worker to start its first batch")
    os.kill(worker.pid, signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 20) == 0

    in_hand = json.loads(await redis_client.lindex(BATCH_STARTED, 0))
    assert len(in_hand) == 100
    assert {int(m) for m in await redis_client.smembers(HANDLED)} == set(in_hand)
    assert await redis_client.lrange(BATCHES_DONE, 0, -1) == [b"100"]
    assert await pending_count(redis_client) == 0  # the batch was acked before exit
    rest = await redis_client.xreadgroup(GROUP, "after", {STREAM: ">"}, count=1000)
    assert len(rest[0][1]) == 200  # the rest was never read by the stopped worker
