"""A stream consumer in its own process, for tests that kill or signal it.

python -m tests.common.bus_worker REDIS_URL STREAM GROUP CONSUMER MODE
MODE die:  handles two batches, then handles half of the third and SIGKILLs itself
MODE slow: marks each batch start in Redis, then takes ~1.5 s to handle it
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import redis.asyncio as aioredis

from services.common.bus import ConsumerConfig, Entry, StreamConsumer
from services.common.lifecycle import run_main
from services.common.logging import setup_logging

HANDLED = "test:handled"
BATCH_STARTED = "test:batch-started"
BATCHES_DONE = "test:batches-done"


def main() -> None:
    url, stream, group, consumer, mode = sys.argv[1:6]
    setup_logging("bus-worker")

    async def run(stop: asyncio.Event) -> None:
        r = aioredis.from_url(url)
        batches = 0

        async def handler(entries: list[Entry]) -> None:
            nonlocal batches
            batches += 1
            seqs = [e.data["seq"] for e in entries]
            if mode == "die" and batches == 3:
                await r.sadd(HANDLED, *seqs[: len(seqs) // 2])
                os.kill(os.getpid(), signal.SIGKILL)  # dies before acking, mid-batch
            if mode == "slow":
                await r.rpush(BATCH_STARTED, json.dumps(seqs))
                for seq in seqs:
                    await asyncio.sleep(1.5 / len(seqs))
                    await r.sadd(HANDLED, seq)
                await r.rpush(BATCHES_DONE, len(seqs))
                return
            await r.sadd(HANDLED, *seqs)

        cfg = ConsumerConfig(stream=stream, group=group, consumer=consumer, batch_size=100, block_ms=200)
        await StreamConsumer(r, cfg, handler).run(stop)
        await r.aclose()

    run_main(run, grace_s=10)


if __name__ == "__main__":
    main()
