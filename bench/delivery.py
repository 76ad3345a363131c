"""make bench-delivery: webhook deliveries/s of one worker and alert-to-receipt latency.

Real servers (PostgreSQL, Redis) start in a temp dir; a minimal HTTP receiver
(bench.webhook_receiver) runs as its own process. Phases:
 1. baseline: a bare httpx client, same concurrency, POSTs the same number of same-size bodies
    to the receiver (what the HTTP path alone costs here).
 2. throughput: BENCH_JOBS pending webhook jobs, then one delivery_worker process delivers
    them; rate = jobs / (last completion - first attempt), from delivery_attempts/jobs.
 3. latency: dispatcher + worker running; alert events are published on pulse:alerts at
    BENCH_LAT_RATE/s for BENCH_LAT_SECONDS; per event, receipt time at the receiver minus
    publish time (same clock).
Writes bench/results/delivery.json.
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
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from bench.harness import report, stop
from services.common.bus import encode, publish_encoded
from services.common.migrations import migrate
from services.devstack import PostgresServer, RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
TENANT = "bench"
JOBS = int(os.environ.get("BENCH_JOBS", "10000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
LAT_RATE = float(os.environ.get("BENCH_LAT_RATE", "200"))
LAT_SECONDS = float(os.environ.get("BENCH_LAT_SECONDS", "10"))


def say(msg: str) -> None:
    print(f"[bench-delivery] {msg}", flush=True)


def start(
    module: str, env: dict[str, str], log: Path, *args: str, profile: Path | None = None
) -> subprocess.Popen[bytes]:
    prefix = ["-m", "cProfile", "-o", str(profile)] if profile else []
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *prefix, "-m", module, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


async def seed_alerts(admin: asyncpg.Connection, n: int, batch: str) -> list[asyncpg.Record]:
    """n OPEN alerts with one event each; returns (event_id, alert_id) rows."""
    await admin.execute(
        "INSERT INTO alerts (tenant_id, device_id, site_id, fingerprint, alert_type, severity, summary)"
        " SELECT $1, 'd' || g, 'site-1', $3 || g, 'NO_HEARTBEAT', 'MAJOR', 'bench alert'"
        " FROM generate_series(1, $2) g",
        TENANT,
        n,
        f"{batch}-",
    )
    rows: list[asyncpg.Record] = await admin.fetch(
        "INSERT INTO alert_events (tenant_id, alert_id, status, severity)"
        " SELECT tenant_id, alert_id, 'OPEN', severity FROM alerts WHERE fingerprint LIKE $1"
        " RETURNING event_id, alert_id",
        f"{batch}-%",
    )
    return rows


async def wait_delivered(admin: asyncpg.Connection, n: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    last = -1
    while True:
        done = await admin.fetchval("SELECT count(*) FROM delivery_jobs WHERE state = 'DELIVERED'")
        if done >= n:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"only {done} of {n} jobs delivered after {limit_s}s")
        if done // 5000 != last // 5000:
            say(f"  {done:,} / {n:,} delivered")
        last = done
        await asyncio.sleep(0.5)


async def baseline(url: str, n: int, body: bytes) -> float:
    sem = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

        async def one(i: int) -> None:
            async with sem:
                await client.post(url, content=body, headers={"X-Pulse-Delivery-Id": f"base-{i}"})

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - t0)


async def run(workdir: Path) -> dict[str, Any]:
    pg = PostgresServer(workdir / "pg", durable=False)
    rd = RedisServer(workdir / "redis", durable=False)
    for server in (pg, rd):
        server.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pg.ensure_database("pulse")
        await migrate(pg.url("postgres", "pulse"))
        admin = await asyncpg.connect(pg.url("postgres", "pulse"))
        r = aioredis.from_url(rd.url())
        port = free_port()
        receipts = workdir / "receipts.json"
        receiver = start("bench.webhook_receiver", dict(os.environ), workdir / "receiver.log", str(port), str(receipts))
        procs.append(receiver)
        url = f"http://127.0.0.1:{port}/hook"
        await asyncio.sleep(0.5)

        await admin.execute("INSERT INTO tenants (tenant_id, name) VALUES ($1, 'Bench')", TENANT)
        integration_id = await admin.fetchval(
            "INSERT INTO integrations (tenant_id, name, type, config, secrets)"
            " VALUES ($1, 'hook', 'webhook', $2::jsonb, $3::jsonb) RETURNING integration_id",
            TENANT,
            json.dumps({"url": url}),
            json.dumps({"hmac_secret": "bench-secret"}),
        )
        env = {
            **os.environ,
            "PULSE_DATABASE_URL": pg.url("pulse_service", "pulse"),
            "PULSE_REDIS_URL": rd.url(),
            "PULSE_HTTP_HOST": "127.0.0.1",
            "PULSE_HTTP_PORT": "0",
            "PULSE_LOG_LEVEL": "WARNING",
            "PULSE_DELIVERY_ALLOW_CIDRS": "127.0.0.0/8",
            "PULSE_DELIVERY_CONCURRENCY": str(CONCURRENCY),
            "PULSE_DELIVERY_POLL_S": "0.5",
        }

        say(f"baseline: bare httpx client, {JOBS:,} POSTs, concurrency {CONCURRENCY} ...")
        sample = b"x" * 900  # about the size of a payload
        base = await baseline(url, JOBS, sample)
        say(f"baseline: {base:,.0f} requests/s")

        say(f"seeding {JOBS:,} pending webhook jobs ...")
        await seed_alerts(admin, JOBS, "tp")
        await admin.execute(
            "INSERT INTO delivery_jobs (tenant_id, event_id, alert_id, integration_id)"
            " SELECT tenant_id, event_id, alert_id, $1 FROM alert_events",
            integration_id,
        )
        say("delivery_worker: draining ...")
        profile = ROOT / "bench" / "results" / "delivery_worker.prof" if os.environ.get("BENCH_PROFILE") else None
        worker = start("services.delivery_worker", env, workdir / "worker.log", profile=profile)
        procs.append(worker)
        await wait_delivered(admin, JOBS, 600)
        span = await admin.fetchval(
            "SELECT extract(epoch FROM max(j.completed_at) - min(a.started_at))"
            " FROM delivery_jobs j JOIN delivery_attempts a USING (job_id)"
        )
        rate = JOBS / float(span)
        attempts = await admin.fetchval("SELECT count(*) FROM delivery_attempts")
        say(f"delivery_worker: {rate:,.0f} deliveries/s ({attempts:,} attempts for {JOBS:,} jobs)")

        lat_n = int(LAT_RATE * LAT_SECONDS)
        say(f"latency: {lat_n:,} alert events at {LAT_RATE:,.0f}/s through dispatcher and worker ...")
        await admin.execute(
            "INSERT INTO integration_routes (tenant_id, integration_id) VALUES ($1, $2)", TENANT, integration_id
        )
        dispatcher = start("services.dispatcher", env, workdir / "dispatcher.log")
        procs.append(dispatcher)
        events = await seed_alerts(admin, lat_n, "lat")
        await asyncio.sleep(2)  # the dispatcher's group exists and it is reading
        sent: dict[str, float] = {}
        t0 = time.perf_counter()
        chunk = max(1, int(LAT_RATE / 100))  # publish every 10 ms
        for i in range(0, lat_n, chunk):
            batch = events[i : i + chunk]
            datas = [
                encode(
                    {
                        "event_id": str(e["event_id"]),
                        "alert_id": str(e["alert_id"]),
                        "tenant_id": TENANT,
                        "device_id": "d",
                        "alert_type": "NO_HEARTBEAT",
                        "severity": "MAJOR",
                        "status": "OPEN",
                        "fingerprint": "",
                        "summary": "bench alert",
                        "at": "",
                    }
                )
                for e in batch
            ]
            now = time.time()
            await publish_encoded(r, "pulse:alerts", datas, maxlen=10_000_000)
            for e in batch:
                sent[str(e["event_id"])] = now
            delay = t0 + (i + chunk) / LAT_RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await wait_delivered(admin, JOBS + lat_n, 120)
        await asyncio.sleep(0.5)
        for proc in (dispatcher, worker, receiver):
            stop(proc)
        procs.clear()
        records = json.loads(receipts.read_text())
        latencies = [(at - sent[event_id]) * 1000 for at, _delivery_id, event_id in records if event_id in sent]
        p50, p99 = statistics.median(latencies), pct(latencies, 0.99)
        ids = [delivery_id for _at, delivery_id, event_id in records if event_id]
        say(f"latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(latencies):,} deliveries")
        await admin.close()
        await r.aclose()
        return {
            "jobs": JOBS,
            "concurrency": CONCURRENCY,
            "webhook_deliveries_per_s": round(rate),
            "baseline_http_requests_per_s": round(base),
            "ratio_to_baseline": round(rate / base, 3),
            "latency_rate_per_s": LAT_RATE,
            "alert_to_receipt_p50_ms": round(p50, 1),
            "alert_to_receipt_p99_ms": round(p99, 1),
            "duplicate_receipts": len(ids) - len(set(ids)),
            "targets": {"webhook_deliveries_per_s": 1000, "alert_to_receipt_p99_ms": 250},
            "run_id": uuid.uuid4().hex[:8],
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop(proc)
        for server in (rd, pg):
            server.stop()


def main() -> None:
    report(
        "delivery",
        run,
        (
            "webhook_deliveries_per_s",
            "baseline_http_requests_per_s",
            "ratio_to_baseline",
            "alert_to_receipt_p50_ms",
            "alert_to_receipt_p99_ms",
            "duplicate_receipts",
        ),
    )


if __name__ == "__main__":
    main()
