"""Redis-stream bus: versioned JSON entries, batched publish, consumer-group loop.

Publish: each entry has one field `data` holding a JSON object with "v": 1; streams are
capped with an approximate MAXLEN; `publish_many` pipelines a batch in one round trip.

Consume (`StreamConsumer`): create the group if missing; XREADGROUP '>' in batches; pass a
batch to an async handler; XACK only after the handler returns. Entries idle too long in
any consumer's pending list (a dead consumer, or a failed attempt here) are taken over with
XAUTOCLAIM and handled again. When a batch fails, its entries are retried one by one so a
poison entry is isolated; an entry that failed `max_failures` times, or was delivered
`max_deliveries` times without an ack (it crashes its consumer), moves to the dead-letter
stream with its error. A handler that raises `RetryLater` (its store is down) leaves the
batch pending without counting a failure. `stop` ends reading; the batch in hand finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from services.common import constants
from services.common.lifecycle import sleep_or_stop

__all__ = [
    "ConsumerConfig",
    "ConsumerStats",
    "Entry",
    "Handler",
    "RetryLater",
    "StreamConsumer",
    "decode",
    "encode",
    "publish",
    "publish_encoded",
    "publish_many",
]

log = logging.getLogger("pulse.bus")

_HANDLED = Counter("pulse_bus_entries_handled_total", "Entries handled and acked", ["stream", "group"])
_RECLAIMED = Counter("pulse_bus_entries_reclaimed_total", "Entries taken over with XAUTOCLAIM", ["stream", "group"])
_FAILED = Counter("pulse_bus_handler_failures_total", "Handler failures per entry", ["stream", "group"])
_DEAD = Counter("pulse_bus_entries_dead_lettered_total", "Entries moved to the dead-letter stream", ["stream", "group"])
_PUBLISHED = Counter("pulse_bus_entries_published_total", "Entries published", ["stream"])

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Any])


class RetryLater(Exception):
    """Raised by a handler whose dependency is down: keep the batch pending, count no failure."""


class MalformedEntry(ValueError):
    """An entry without a JSON object in `data`, or of an unknown version."""


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    data: dict[str, Any]


Handler = Callable[[list[Entry]], Awaitable[None]]


def encode(message: Mapping[str, Any]) -> bytes:
    """The `data` field for `message`, stamped with the schema version."""
    body = dict(message)
    body["v"] = constants.SCHEMA_VERSION
    return _encoder.encode(body)


def decode(fields: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    if not fields or b"data" not in fields:
        raise MalformedEntry("entry has no 'data' field")
    try:
        body = _decoder.decode(fields[b"data"])
    except msgspec.DecodeError as exc:
        raise MalformedEntry(f"'data' is not a JSON object: {exc}") from exc
    if body.get("v") != constants.SCHEMA_VERSION:
        raise MalformedEntry(f"unsupported entry version {body.get('v')!r}")
    return body


async def publish(r: aioredis.Redis, stream: str, message: Mapping[str, Any], *, maxlen: int) -> str:
    entry_id = await r.xadd(stream, {"data": encode(message)}, maxlen=maxlen, approximate=True)
    _PUBLISHED.labels(stream).inc()
    return _text(entry_id)


async def publish_many(
    r: aioredis.Redis, stream: str, messages: Iterable[Mapping[str, Any]], *, maxlen: int
) -> list[str]:
    """Publish a batch in one round trip; returns the entry ids in order."""
    return await publish_encoded(r, stream, [encode(m) for m in messages], maxlen=maxlen)


# One script call adds a whole batch: packing one command with N arguments costs a fraction of
# packing N XADD commands in a pipeline (measured: ~38 us per pipelined XADD in redis-py).
_XADD_MANY = """
local ids = {}
for i = 2, #ARGV do
  ids[i - 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'data', ARGV[i])
end
return ids
"""


_scripts: weakref.WeakKeyDictionary[aioredis.Redis, AsyncScript] = weakref.WeakKeyDictionary()


async def publish_encoded(r: aioredis.Redis, stream: str, datas: Sequence[bytes], *, maxlen: int) -> list[str]:
    """Publish already-encoded `data` fields (see `encode`) in one atomic round trip."""
    if not datas:
        return []
    script = _scripts.get(r)
    if script is None:
        script = _scripts[r] = r.register_script(_XADD_MANY)
    ids = await script(keys=[stream], args=[maxlen, *datas])
    _PUBLISHED.labels(stream).inc(len(datas))
    return [_text(i) for i in ids]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class ConsumerConfig:
    stream: str
    group: str
    consumer: str
    batch_size: int = 100
    block_ms: int = 1000  # also bounds how long a stop request waits for an idle read
    claim_idle_ms: int = 30_000  # pending this long -> considered abandoned, taken over
    claim_interval_s: float = 5.0
    max_failures: int = 5
    max_deliveries: int = 20
    dead_letter_stream: str | None = None  # default: f"{stream}:dead"
    dead_letter_maxlen: int = 100_000

    @property
    def dead_letters(self) -> str:
        return self.dead_letter_stream or f"{self.stream}{constants.DEAD_LETTER_SUFFIX}"

    @property
    def failures_key(self) -> str:
        return f"{constants.BUS_FAILURES_PREFIX}{self.stream}:{self.group}"


@dataclass
class ConsumerStats:
    handled: int = 0
    reclaimed: int = 0
    failures: int = 0
    dead_lettered: int = 0
    batches: int = 0
    last_error: str | None = field(default=None, repr=False)


class StreamConsumer:
    """One consumer of a group; `run(stop)` returns after `stop` is set and the batch is done."""

    def __init__(self, r: aioredis.Redis, config: ConsumerConfig, handler: Handler) -> None:
        self.redis = r
        self.config = config
        self.handler = handler
        self.stats = ConsumerStats()
        self._labels = (config.stream, config.group)
        self._next_claim = 0.0
        # while the handler's dependency is down, redeliveries are ours, not a crashing entry's
        self._dependency_down = False

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.config.stream, self.config.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        await self.ensure_group()
        log.info("consumer started", extra={"stream": cfg.stream, "group": cfg.group, "consumer": cfg.consumer})
        backoff = 0.0
        while not stop.is_set():
            try:
                if backoff:
                    await sleep_or_stop(stop, backoff)
                    if stop.is_set():
                        break
                handled_any = False
                if time.monotonic() >= self._next_claim:
                    handled_any = await self._reclaim(stop)
                    self._next_claim = time.monotonic() + cfg.claim_interval_s
                if stop.is_set():
                    break
                block = 0 if handled_any else cfg.block_ms
                raw_resp = await self.redis.xreadgroup(
                    cfg.group, cfg.consumer, {cfg.stream: ">"}, count=cfg.batch_size, block=block or None
                )
                resp = cast("list[tuple[bytes, list[Any]]] | None", raw_resp)  # RESP2 reply shape
                for _stream, raw in resp or []:
                    await self._process(raw)
                backoff = 0.0
            except RetryLater as exc:
                self._dependency_down = True
                backoff = min(max(backoff * 2, 0.5), 10.0)
                log.warning("handler asked to retry later", extra={"stream": cfg.stream, "error": str(exc)})
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                backoff = min(max(backoff * 2, 0.5), 10.0)
                log.warning("redis unavailable, retrying", extra={"stream": cfg.stream, "error": str(exc)})
                await self._ensure_group_quietly()
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.ensure_group()  # stream or group deleted under us
        log.info("consumer stopped", extra={"stream": cfg.stream, "group": cfg.group, "consumer": cfg.consumer})

    async def _ensure_group_quietly(self) -> None:
        with contextlib.suppress(aioredis.ConnectionError, aioredis.TimeoutError):
            await self.ensure_group()

    async def _reclaim(self, stop: asyncio.Event) -> bool:
        """Take over entries idle past claim_idle_ms; return True when any were handled."""
        cfg = self.config
        start = "0-0"
        any_handled = False
        while not stop.is_set():
            resp: list[Any] = await self.redis.xautoclaim(
                cfg.stream, cfg.group, cfg.consumer, cfg.claim_idle_ms, start_id=start, count=cfg.batch_size
            )
            start, raw = _text(resp[0]), resp[1]
            if raw:
                self.stats.reclaimed += len(raw)
                _RECLAIMED.labels(*self._labels).inc(len(raw))
                if not self._dependency_down:
                    raw = await self._drop_crashers(raw)
                await self._process(raw)
                any_handled = True
            if start == "0-0":
                break
        return any_handled

    async def _drop_crashers(self, raw: list[Any]) -> list[Any]:
        """Dead-letter reclaimed entries delivered too often without an ack."""
        ids = [_text(i) for i, _ in raw]
        pending: list[dict[str, Any]] = await self.redis.xpending_range(
            self.config.stream, self.config.group, min=ids[0], max=ids[-1], count=len(ids) * 2
        )
        deliveries = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        keep = []
        for entry_id, fields in raw:
            n = deliveries.get(_text(entry_id), 0)
            if n > self.config.max_deliveries:
                await self._dead_letter(
                    _text(entry_id), fields, f"delivered {n} times without an ack; its consumer keeps dying"
                )
            else:
                keep.append((entry_id, fields))
        return keep

    async def _process(self, raw: Sequence[Any]) -> None:
        entries: list[Entry] = []
        for entry_id, fields in raw:
            eid = _text(entry_id)
            if fields is None:  # trimmed by MAXLEN while pending: nothing left to handle
                log.error(
                    "pending entry was trimmed from the stream before handling",
                    extra={"stream": self.config.stream, "entry_id": eid},
                )
                await self.redis.xack(self.config.stream, self.config.group, eid)
                continue
            try:
                entries.append(Entry(eid, decode(fields)))
            except MalformedEntry as exc:
                await self._dead_letter(eid, fields, f"malformed: {exc}")
        if not entries:
            return
        self.stats.batches += 1
        if len(entries) == 1:  # nothing to isolate: count its failure straight away
            await self._one_by_one(entries)
            return
        try:
            await self.handler(entries)
        except RetryLater:
            raise
        except Exception as exc:
            log.warning(
                "batch failed, retrying entries one by one",
                extra={"stream": self.config.stream, "size": len(entries), "error": repr(exc)},
            )
            await self._one_by_one(entries)
            return
        self._dependency_down = False
        await self._ack([e.id for e in entries])

    async def _one_by_one(self, entries: list[Entry]) -> None:
        cfg = self.config
        for entry in entries:
            try:
                await self.handler([entry])
            except RetryLater:
                raise
            except Exception as exc:
                self.stats.failures += 1
                self.stats.last_error = repr(exc)
                _FAILED.labels(*self._labels).inc()
                failures = int(await self.redis.hincrby(cfg.failures_key, entry.id, 1))
                log.warning(
                    "entry handler failed",
                    extra={"stream": cfg.stream, "entry_id": entry.id, "failures": failures, "error": repr(exc)},
                )
                if failures >= cfg.max_failures:
                    await self._dead_letter(entry.id, {b"data": encode(entry.data)}, repr(exc), failures)
                # else: stays pending; taken over again after claim_idle_ms
            else:
                self._dependency_down = False
                await self._ack([entry.id])

    async def _ack(self, ids: list[str]) -> None:
        cfg = self.config
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(cfg.stream, cfg.group, *ids)
        pipe.hdel(cfg.failures_key, *ids)
        await pipe.execute()
        self.stats.handled += len(ids)
        _HANDLED.labels(*self._labels).inc(len(ids))

    async def _dead_letter(self, entry_id: str, fields: Mapping[bytes, bytes], error: str, failures: int = 0) -> None:
        cfg = self.config
        record: dict[Any, Any] = {
            "stream": cfg.stream,
            "group": cfg.group,
            "entry_id": entry_id,
            "error": error[:2000],
            "failures": str(failures),
            "at": str(time.time()),
            "data": fields.get(b"data", b"") if fields else b"",
        }
        pipe = self.redis.pipeline(transaction=True)  # dead-letter and ack together or not at all
        pipe.xadd(cfg.dead_letters, record, maxlen=cfg.dead_letter_maxlen, approximate=True)
        pipe.xack(cfg.stream, cfg.group, entry_id)
        pipe.hdel(cfg.failures_key, entry_id)
        await pipe.execute()
        self.stats.dead_lettered += 1
        _DEAD.labels(*self._labels).inc()
        log.error(
            "entry moved to dead-letter stream",
            extra={"stream": cfg.stream, "entry_id": entry_id, "dead_letters": cfg.dead_letters, "error": error[:500]},
        )
