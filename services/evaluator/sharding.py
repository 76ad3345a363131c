"""Stream shards and the Redis leases that give each one a single owning evaluator replica.

With N shards, observations of device (tenant, device) go to stream f"{base}:{k}", k =
crc32(tenant, device) mod N, so one replica sees the whole life of a device. Each replica:
- heartbeats in a sorted set (score = time); replicas silent for a lease period are dead;
- aims to own ceil(N / live replicas) shards: takes free ones with SET key me NX PX ttl,
  renews its own (compare-and-PEXPIRE), and releases extras (compare-and-DEL) so that a
  replica that joins gets its share;
- loses a shard whose renewal fails (expired and taken): it stops evaluating it at once.
When a replica dies its leases expire after `ttl_ms` and the survivors take them over, load the
shard's device states and open alerts from Postgres, and reclaim its pending entries.
"""

from __future__ import annotations

import math
import time
import zlib

import redis.asyncio as aioredis

from services.common import constants

__all__ = ["Leases", "shard_of", "shard_stream"]


def shard_of(tenant_id: str, device_id: str, shards: int) -> int:
    """The shard of a device: stable across processes and restarts."""
    if shards <= 1:
        return 0
    return zlib.crc32(f"{tenant_id}\x1f{device_id}".encode()) % shards


def shard_stream(base: str, shard: int, shards: int) -> str:
    """The observations stream of `shard` (the base stream itself when there is one shard)."""
    return base if shards <= 1 else f"{base}:{shard}"


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Leases:
    """The shards one replica owns; call `step()` every ttl/3."""

    def __init__(
        self,
        r: aioredis.Redis,
        replica: str,
        shards: int,
        *,
        ttl_ms: int,
        prefix: str = constants.EVALUATOR_LEASE_PREFIX,
        replicas_key: str = constants.EVALUATOR_REPLICAS_KEY,
    ) -> None:
        self.redis = r
        self.replica = replica
        self.shards = shards
        self.ttl_ms = ttl_ms
        self.prefix = prefix
        self.replicas_key = replicas_key
        self.owned: set[int] = set()
        self._renew = r.register_script(_RENEW)
        self._release = r.register_script(_RELEASE)
        # start scanning at a replica-specific shard so that replicas do not all race for shard 0
        self._offset = zlib.crc32(replica.encode()) % max(shards, 1)

    def key(self, shard: int) -> str:
        return f"{self.prefix}{shard}"

    async def live_replicas(self) -> int:
        now_ms = time.time() * 1000
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.replicas_key, {self.replica: now_ms})
        pipe.zremrangebyscore(self.replicas_key, "-inf", now_ms - self.ttl_ms)
        pipe.zcard(self.replicas_key)
        _, _, live = await pipe.execute()
        return max(int(live), 1)

    async def step(self) -> tuple[set[int], set[int]]:
        """Heartbeat, renew, rebalance; return (shards acquired, shards lost) by this step."""
        target = math.ceil(self.shards / await self.live_replicas())
        lost: set[int] = set()
        for shard in sorted(self.owned):
            if not await self._renew(keys=[self.key(shard)], args=[self.replica, self.ttl_ms]):
                lost.add(shard)
        self.owned -= lost
        while len(self.owned) > target:  # a replica joined: hand over the extras
            shard = max(self.owned)
            await self._release(keys=[self.key(shard)], args=[self.replica])
            self.owned.discard(shard)
            lost.add(shard)
        acquired: set[int] = set()
        for i in range(self.shards):
            if len(self.owned) >= target:
                break
            shard = (self._offset + i) % self.shards
            if shard in self.owned:
                continue
            if await self.redis.set(self.key(shard), self.replica, nx=True, px=self.ttl_ms):
                self.owned.add(shard)
                acquired.add(shard)
        return acquired, lost

    async def release_all(self) -> None:
        for shard in sorted(self.owned):
            await self._release(keys=[self.key(shard)], args=[self.replica])
        self.owned.clear()
        await self.redis.zrem(self.replicas_key, self.replica)
