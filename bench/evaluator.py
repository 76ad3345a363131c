"""make bench-evaluator: evaluator throughput, memory and staleness detection delay.

Real servers (PostgreSQL, Redis) start in a temp dir; 100,000 devices (100 tenants x 1,000)
and 1,000 rules (10 per tenant, over 3 metrics, a quarter with a device glob) are seeded.
 1. baseline: a bare consumer-group reader (XREADGROUP + XACK, no-op handler) drains the
    whole stream, then BENCH_OBSERVATIONS more observations (3 metrics each, every device
    several times).
 0. cold start: one observation per device (each a transition: OFFLINE -> ONLINE), drained by
    a fresh evaluator; reported apart (cold_start_observations_per_s). The evaluator stops.
 2. evaluator: restarted (it loads the 100,000 device states), it drains the backlog (its
    own group); observations/s from first read to last ack, then RSS.
 3. staleness: BENCH_STALE_DEVICES devices of a tenant whose stale threshold is 2 s report
    once each; delay = STALE message time - (last message + 2 s); p50 and p99.
Writes bench/results/evaluator.json (BENCH_PROFILE=1: also a cProfile of phase 2, evaluator.prof).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
import psutil
import redis.asyncio as aioredis

from bench.harness import report, stop
from services.common.bus import ConsumerConfig, Entry, StreamConsumer, encode, publish_encoded
from services.common.migrations import migrate
from services.devstack import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parents[1]
STREAM = "pulse:observations"
TENANTS = int(os.environ.get("BENCH_TENANTS", "100"))
PER_TENANT = int(os.environ.get("BENCH_DEVICES_PER_TENANT", "1000"))
RULES_PER_TENANT = int(os.environ.get("BENCH_RULES_PER_TENANT", "10"))
OBSERVATIONS = int(os.environ.get("BENCH_OBSERVATIONS", "300000"))
STALE_DEVICES = int(os.environ.get("BENCH_STALE_DEVICES", "2000"))
STALE_S = 2.0


def say(msg: str) -> None:
    print(f"[bench-evaluator] {msg}", flush=True)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def observation(tenant: str, device: str, n: int, at: float) -> dict[str, Any]:
    stamp = iso(at)
    return {
        "id": uuid.uuid4().hex,
        "tenant_id": tenant,
        "device_id": device,
        "site_id": f"site-{n % 4}",
        "source": "mqtt",
        "kind": "telemetry",
        "ts": stamp,
        "received_at": stamp,
        # a temperature spike in one observation of ~1,000 opens (and the next one resolves) alerts
        "metrics": {
            "temp_c": 90.0 if n % 997 == 0 else 20.0 + n % 15,
            "humidity": 40.0 + n % 30,
            "pressure": 1000.0 + n % 20,
        },
        "states": {},
        "tags": {},
    }


async def seed(admin: asyncpg.Connection) -> None:
    tenants = [f"t{i}" for i in range(TENANTS)] + ["stale"]
    await admin.executemany("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)", [(t,) for t in tenants])
    rows: list[tuple[str, str, str | None, str]] = [
        (f"t{t}", f"d{d}", f"site-{d % 4}", "active") for t in range(TENANTS) for d in range(PER_TENANT)
    ]
    rows += [("stale", f"s{d}", None, "active") for d in range(STALE_DEVICES)]
    await admin.copy_records_to_table("devices", records=rows, columns=["tenant_id", "device_id", "site_id", "status"])
    metrics = ["temp_c", "humidity", "pressure"]
    rules = []
    for t in range(TENANTS):
        for k in range(RULES_PER_TENANT):
            glob = f"d{k}*" if k % 4 == 0 else None
            metric = metrics[k % 3]
            threshold = {"temp_c": 50.0, "humidity": 90.0, "pressure": 1050.0}[metric] + k
            rules.append((f"t{t}", f"rule-{k}", metric, ">", threshold, glob))
    await admin.executemany(
        "INSERT INTO alert_rules (tenant_id, name, metric, comparison, threshold, device_glob)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        rules,
    )
    await admin.execute(
        "INSERT INTO settings (tenant_id, key, value) VALUES ('stale', 'evaluator.stale_after_s', $1)",
        json.dumps(STALE_S),
    )


async def fill(r: aioredis.Redis, count: int) -> None:
    now = time.time()
    devices = TENANTS * PER_TENANT
    chunk: list[bytes] = []
    for n in range(count):
        d = n % devices
        chunk.append(encode(observation(f"t{d // PER_TENANT}", f"d{d % PER_TENANT}", n, now)))
        if len(chunk) == 5000:
            await publish_encoded(r, STREAM, chunk, maxlen=10_000_000)
            chunk = []
    await publish_encoded(r, STREAM, chunk, maxlen=10_000_000)


async def baseline(r: aioredis.Redis, total: int) -> float:
    seen = 0
    done = asyncio.Event()

    async def handler(entries: list[Entry]) -> None:
        nonlocal seen
        seen += len(entries)
        if seen >= total:
            done.set()

    consumer = StreamConsumer(r, ConsumerConfig(STREAM, "bench-baseline", "b1", batch_size=1000), handler)
    t0 = time.perf_counter()
    task = asyncio.create_task(consumer.run(done))
    await task
    return total / (time.perf_counter() - t0)


def parse_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, seq = text.split("-")
    return int(ms), int(seq)


async def last_id(r: aioredis.Redis) -> tuple[int, int]:
    return parse_id((await r.xinfo_stream(STREAM))["last-generated-id"])


async def drain(r: aioredis.Redis, proc: subprocess.Popen[bytes], after: tuple[int, int], log: Path) -> float:
    """Seconds from the evaluator group's first read past `after` until it acked the last entry."""
    last = await last_id(r)
    t0 = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"evaluator exited: see {log}")
        for g in await r.xinfo_groups(STREAM):
            if g["name"] in (b"evaluator", "evaluator"):
                delivered = parse_id(g["last-delivered-id"])
                if t0 is None and delivered > after:
                    t0 = time.perf_counter()
                if t0 is not None and delivered >= last and int(g["pending"]) == 0:
                    return time.perf_counter() - t0
        await asyncio.sleep(0.02)
    raise SystemExit("the evaluator did not drain the backlog within 600 s")


def start_evaluator(env: dict[str, str], log_path: Path, profile: Path | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "services.evaluator"]
    if profile is not None:
        cmd[1:1] = ["-m", "cProfile", "-o", str(profile)]
    with log_path.open("ab") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=log)


async def run(workdir: Path) -> dict[str, Any]:
    pg = PostgresServer(workdir / "pg", durable=False)
    rd = RedisServer(workdir / "redis", durable=False)
    for server in (pg, rd):
        server.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        pg.ensure_database("pulse")
        await migrate(pg.url("postgres", "pulse"))
        admin = await asyncpg.connect(pg.url("postgres", "pulse"))
        say(f"seeding {TENANTS * PER_TENANT:,} devices and {TENANTS * RULES_PER_TENANT:,} rules ...")
        await seed(admin)
        r = aioredis.from_url(rd.url())
        devices = TENANTS * PER_TENANT
        env = {
            **os.environ,
            "PULSE_DATABASE_URL": pg.url("pulse_service", "pulse"),
            "PULSE_REDIS_URL": rd.url(),
            "PULSE_HTTP_HOST": "127.0.0.1",
            "PULSE_HTTP_PORT": "0",
            "PULSE_EVALUATOR_STALE_AFTER_S": "600",
            "PULSE_EVALUATOR_OFFLINE_AFTER_S": "1200",
            "PULSE_EVALUATOR_CATCHUP_S": "0",
            "PULSE_LOG_LEVEL": "WARNING",
        }
        log = workdir / "evaluator.log"

        say(f"cold start: one observation for each of {devices:,} devices (every one a transition) ...")
        await fill(r, devices)
        proc = start_evaluator(env, log)
        cold = devices / await drain(r, proc, (0, 0), log)
        say(f"cold start: {cold:,.0f} observations/s")
        stop(proc, 60)
        proc = None
        warm_last = await last_id(r)

        say(f"queueing {OBSERVATIONS:,} observations ...")
        await fill(r, OBSERVATIONS)
        say("baseline: bare consumer group reader ...")
        base = await baseline(r, devices + OBSERVATIONS)
        say(f"baseline: {base:,.0f} entries/s")

        say("evaluator: restarts (loads the 100,000 device states), drains the backlog ...")
        profile = ROOT / "bench" / "results" / "evaluator.prof" if os.environ.get("BENCH_PROFILE") else None
        proc = start_evaluator(env, log, profile)
        rate = OBSERVATIONS / await drain(r, proc, warm_last, log)
        say(f"evaluator: {rate:,.0f} observations/s")
        await asyncio.sleep(3)  # a flush of last_seen for every device has run
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        say(f"evaluator RSS with {TENANTS * PER_TENANT:,} devices: {rss:.0f} MB")

        say(f"staleness: {STALE_DEVICES} devices with a {STALE_S:g} s threshold ...")
        sent: dict[str, float] = {}
        for i in range(STALE_DEVICES):
            at = time.time()
            await publish_encoded(r, STREAM, [encode(observation("stale", f"s{i}", i, at))], maxlen=10_000_000)
            sent[f"s{i}"] = at
            if i % 100 == 99:
                await asyncio.sleep(0.05)
        await asyncio.sleep(STALE_S + 2)
        delays = []
        entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", await r.xrange("pulse:device-status"))
        for _entry_id, fields in entries:
            m = json.loads(fields[b"data"])
            if m["tenant_id"] == "stale" and m["status"] == "STALE":
                delays.append(datetime.fromisoformat(m["at"]).timestamp() - (sent[m["device_id"]] + STALE_S))
        if len(delays) < STALE_DEVICES:
            raise SystemExit(f"only {len(delays)} of {STALE_DEVICES} devices were detected STALE")
        q = statistics.quantiles(delays, n=100)
        p50, p99 = statistics.median(delays), q[98]
        say(f"staleness delay: p50 {p50:.3f} s, p99 {p99:.3f} s")
        await admin.close()
        await r.aclose()
        return {
            "devices": TENANTS * PER_TENANT,
            "rules": TENANTS * RULES_PER_TENANT,
            "observations": OBSERVATIONS,
            "observations_per_s": round(rate),
            "cold_start_observations_per_s": round(cold),
            "baseline_entries_per_s": round(base),
            "ratio_to_baseline": round(rate / base, 3),
            "rss_mb_100k_devices": round(rss, 1),
            "stale_detect_p50_s": round(p50, 3),
            "stale_detect_p99_s": round(p99, 3),
            "targets": {"observations_per_s": 30000, "rss_mb_100k_devices": 300, "stale_detect_p99_s": 1.5},
        }
    finally:
        if proc is not None and proc.poll() is None:
            stop(proc, 60)
        for server in (rd, pg):
            server.stop()


def main() -> None:
    report(
        "evaluator",
        run,
        (
            "observations_per_s",
            "cold_start_observations_per_s",
            "baseline_entries_per_s",
            "ratio_to_baseline",
            "rss_mb_100k_devices",
            "stale_detect_p50_s",
            "stale_detect_p99_s",
        ),
    )


if __name__ == "__main__":
    main()
