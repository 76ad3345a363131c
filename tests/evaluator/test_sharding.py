"""Stream shards owned through Redis leases: split between replicas, handed over on death."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from services.evaluator.sharding import Leases, shard_of, shard_stream
from tests.evaluator.conftest import Harness, eventually, observation, seed


@pytest.mark.unit
def test_a_device_always_maps_to_the_same_shard_and_stream() -> None:
    assert shard_of("acme", "d1", 1) == 0
    assert shard_of("acme", "d1", 8) == shard_of("acme", "d1", 8)
    assert {shard_of("acme", f"d{i}", 4) for i in range(100)} == {0, 1, 2, 3}
    assert shard_stream("pulse:observations", 0, 1) == "pulse:observations"
    assert shard_stream("pulse:observations", 3, 4) == "pulse:observations:3"


@pytest.mark.integration
async def test_leases_split_shards_between_replicas_and_move_when_one_dies(redis_client: aioredis.Redis) -> None:
    a = Leases(redis_client, "a", 4, ttl_ms=400)
    b = Leases(redis_client, "b", 4, ttl_ms=400)
    assert (await a.step())[0] == {0, 1, 2, 3}
    await b.step()  # b is now live: a hands over its extras on its next step, b takes them after
    _, lost = await a.step()
    assert len(lost) == 2
    acquired, _ = await b.step()
    assert acquired == lost
    assert a.owned | b.owned == {0, 1, 2, 3} and not a.owned & b.owned
    # a dies (stops renewing); b keeps renewing every third of the lease and takes a's shards
    taken: set[int] = set()
    for _ in range(6):
        await asyncio.sleep(0.12)
        acquired, _ = await b.step()
        taken |= acquired
    assert taken == {0, 1, 2, 3} - lost
    assert b.owned == {0, 1, 2, 3}
    # a comes back late: its renewals fail, so it gives up what b now holds
    _, lost_late = await a.step()
    assert lost_late == {0, 1, 2, 3} - lost
    assert not a.owned


@pytest.mark.integration
async def test_shard_moves_to_the_surviving_replica_which_finds_its_silent_devices(harness: Harness) -> None:
    devices = {f"d{i}": None for i in range(8)}
    await seed(harness.admin, "acme", devices)
    env = {"PULSE_EVALUATOR_SHARDS": "2", "PULSE_EVALUATOR_LEASE_TTL_MS": "600"}
    a = await harness.start(PULSE_EVALUATOR_CONSUMER="replica-a", **env)
    b = await harness.start(PULSE_EVALUATOR_CONSUMER="replica-b", **env)
    try:
        await eventually(lambda: (a.service.shards, b.service.shards), lambda s: len(s[0]) == 1 and len(s[1]) == 1)

        async def send(device_id: str) -> None:
            stream = shard_stream("pulse:observations", shard_of("acme", device_id, 2), 2)
            await harness.send(observation("acme", device_id, kind="heartbeat"), stream=stream)

        for device_id in devices:
            await send(device_id)
        await eventually(lambda: harness.statuses(), lambda s: s.count("ONLINE") == 8)
        (a_shard,) = a.service.shards
        on_a = [d for d in devices if shard_of("acme", d, 2) == a_shard]
        await a.kill()

        # b takes a's shard within about one lease period, loads its devices, finds them silent
        await eventually(lambda: b.service.shards, lambda s: s == {0, 1}, 3)
        for device_id in on_a:
            await eventually(lambda d=device_id: harness.statuses(d), lambda s: s[-1] == "STALE", 3)
            await harness.wait_alert_statuses(f"NO_HEARTBEAT:{device_id}", ["OPEN"], 3)
        await send(on_a[0])  # a's stream is now b's
        await eventually(lambda: harness.statuses(on_a[0]), lambda s: s[-1] == "ONLINE", 3)
    finally:
        b.stop.set()
        await asyncio.wait_for(b.task, 15)
        await b.service.close()
    for device_id in devices:
        assert len(await harness.alerts(f"NO_HEARTBEAT:{device_id}")) <= 1
