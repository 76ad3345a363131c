"""make bench-ingest: ingest throughput and latency against a bare-subscriber baseline, same run.

Real servers (PostgreSQL, Redis, Mosquitto) start in a temp dir. Phases:
 1. backlog throughput: N QoS 1 messages (3 metrics each) are queued at the broker for a
    persistent session, then the subscriber drains them onto pulse:observations; rate is taken
    from the first and last XADD times (stream entry ids). Baseline first, then ingest.
 2. latency: a paced publisher (BENCH_LAT_RATE msg/s); per message, stream entry time minus
    publish time (ms; the broker is local, so publish ~ broker receipt).
 3. HTTP batch: /ingest/v1/batch, 500 messages per request, 4 concurrent clients.
 4. soak: paced MQTT load for BENCH_SOAK_S seconds, RSS of the ingest process sampled.
Writes bench/results/ingest.json. The telemetry writer is off: this measures intake only.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import redis.asyncio as aioredis

from bench.harness import report, stop
from services.common.credentials import hash_secret, new_device_token
from services.common.migrations import migrate
from services.devstack import MosquittoServer, PostgresServer, RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
STREAM = "pulse:observations"
TENANT = "bench"
N = int(os.environ.get("BENCH_MESSAGES", "100000"))
DEVICES = int(os.environ.get("BENCH_DEVICES", "100"))
LAT_RATE = float(os.environ.get("BENCH_LAT_RATE", "5000"))
LAT_SECONDS = float(os.environ.get("BENCH_LAT_SECONDS", "10"))
HTTP_MESSAGES = int(os.environ.get("BENCH_HTTP_MESSAGES", "100000"))
SOAK_S = float(os.environ.get("BENCH_SOAK_S", "300"))
SOAK_RATE = float(os.environ.get("BENCH_SOAK_RATE", "5000"))
RECEIVE_MAX = os.environ.get("BENCH_RECEIVE_MAX", "1000")


def say(msg: str) -> None:
    print(f"[bench-ingest] {msg}", flush=True)


def messages(tokens: list[str], count: int, start_seq: int = 0) -> list[list[str]]:
    out = []
    for n in range(count):
        d = n % len(tokens)
        body = {
            "site_id": "site-1",
            "seq": start_seq + n,
            "provision_token": tokens[d],
            "metrics": {"temp_c": 20 + n % 10, "humidity": 40.5, "battery_v": 3.7},
        }
        out.append([f"tenant/{TENANT}/device/d{d}/telemetry", json.dumps(body)])
    return out


def publish(mqtt: MosquittoServer, msgs: list[list[str]], rate: float, workdir: Path) -> list[float]:
    src, times = workdir / "messages.jsonl", workdir / "sent.json"
    src.write_text("\n".join(json.dumps(m) for m in msgs))
    subprocess.run(
        [sys.executable, "-m", "bench.mqtt_publisher", "127.0.0.1", str(mqtt.port), str(src), str(rate), str(times)],
        cwd=ROOT,
        check=True,
    )
    return list(json.loads(times.read_text()))


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


async def wait_len(r: aioredis.Redis, n: int, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    last = -1
    while True:
        length = await r.xlen(STREAM)
        if length >= n:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: only {length} of {n} entries after {limit_s}s")
        if length != last:
            last = length
        await asyncio.sleep(0.2)


async def stream_rate(r: aioredis.Redis) -> float:
    first: Any = await r.xrange(STREAM, count=1)
    last: Any = await r.xrevrange(STREAM, count=1)
    n = await r.xlen(STREAM)
    t0 = int(first[0][0].split(b"-")[0])
    t1 = int(last[0][0].split(b"-")[0])
    return (n - 1) / max((t1 - t0) / 1000, 1e-3)


async def seq_times(r: aioredis.Redis) -> dict[int, int]:
    out: dict[int, int] = {}
    cursor = "-"
    while True:
        batch: Any = await r.xrange(STREAM, min=cursor, count=10_000)
        for entry_id, fields in batch:
            out[json.loads(fields[b"data"])["seq"]] = int(entry_id.split(b"-")[0])
        if len(batch) < 10_000:
            return out
        cursor = "(" + batch[-1][0].decode()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


async def wait_subscribed(proc: subprocess.Popen[bytes], url: str | None, seconds: float = 2.0) -> None:
    if url is not None:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            raise SystemExit("ingest did not become ready")
    await asyncio.sleep(seconds)


async def run(workdir: Path) -> dict[str, Any]:
    pg = PostgresServer(workdir / "pg", durable=False)
    rd = RedisServer(workdir / "redis", durable=False)
    mq = MosquittoServer(workdir / "mqtt", max_queued=max(N, 100_000) + 10)
    for server in (pg, rd, mq):
        server.start()
    try:
        pg.ensure_database("pulse")
        await migrate(pg.url("postgres", "pulse"))
        admin = await asyncpg.connect(pg.url("postgres", "pulse"))
        tokens = [new_device_token() for _ in range(DEVICES)]
        await admin.execute("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)", TENANT)
        await admin.executemany(
            "INSERT INTO devices (tenant_id, device_id, site_id, status, token_hash)"
            " VALUES ($1, $2, 'site-1', 'active', $3)",
            [(TENANT, f"d{i}", hash_secret(t)) for i, t in enumerate(tokens)],
        )
        for key in ("ingest.rate_per_s", "ingest.burst"):  # measure intake, not the rate limiter
            await admin.execute("INSERT INTO settings (tenant_id, key, value) VALUES (NULL, $1, '1e9')", key)
        await admin.close()
        r = aioredis.from_url(rd.url())
        backlog = messages(tokens, N)

        # 1a. baseline
        base_cmd = [
            sys.executable,
            "-m",
            "bench.baseline_subscriber",
            mq.url(),
            rd.url(),
            STREAM,
            "bench-baseline",
            RECEIVE_MAX,
        ]
        proc = start(base_cmd, {}, workdir / "baseline.log")
        await wait_subscribed(proc, None)
        stop(proc)  # its persistent session now collects the backlog
        say(f"queueing {N} messages for the baseline subscriber ...")
        publish(mq, backlog, 0, workdir)
        proc = start(base_cmd, {}, workdir / "baseline.log")
        await wait_len(r, N, 300, "baseline")
        baseline = await stream_rate(r)
        stop(proc)
        say(f"baseline: {baseline:,.0f} msg/s")
        await r.delete(STREAM)

        # 1b. ingest
        port = free_port()
        env = {
            "PULSE_DATABASE_URL": pg.url("pulse_service", "pulse"),
            "PULSE_REDIS_URL": rd.url(),
            "PULSE_MQTT_URL": mq.url(),
            "PULSE_HTTP_HOST": "127.0.0.1",
            "PULSE_HTTP_PORT": str(port),
            "PULSE_INGEST_MQTT_CLIENT_ID": "bench-ingest",
            "PULSE_INGEST_MQTT_RECEIVE_MAX": RECEIVE_MAX,
            "PULSE_INGEST_TELEMETRY_WRITER": "false",
            "PULSE_LOG_LEVEL": "WARNING",
        }
        ingest_cmd = [sys.executable, "-m", "services.ingest"]
        if os.environ.get("BENCH_PROFILE"):  # cProfile around the measured process
            profile = ROOT / "bench" / "results" / "ingest.prof"
            ingest_cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "services.ingest"]
        url = f"http://127.0.0.1:{port}"
        proc = start(ingest_cmd, env, workdir / "ingest.log")
        await wait_subscribed(proc, url)
        stop(proc)
        say(f"queueing {N} messages for ingest ...")
        publish(mq, backlog, 0, workdir)
        proc = start(ingest_cmd, env, workdir / "ingest.log")
        rss_start: float | None = None
        t_start = time.monotonic()
        while rss_start is None:
            await asyncio.sleep(0.05)
            if await r.exists(STREAM) or time.monotonic() - t_start > 30:
                rss_start = psutil.Process(proc.pid).memory_info().rss / 2**20
        await wait_len(r, N, 300, "ingest")
        ingest_rate = await stream_rate(r)
        say(f"ingest:   {ingest_rate:,.0f} msg/s ({ingest_rate / baseline:.2f} of baseline)")
        await r.delete(STREAM)

        # 2. latency at a paced rate
        paced = messages(tokens, int(LAT_RATE * LAT_SECONDS), start_seq=N)
        say(f"latency: {len(paced)} messages at {LAT_RATE:,.0f} msg/s ...")
        sent = publish(mq, paced, LAT_RATE, workdir)
        await wait_len(r, len(paced), 120, "latency run")
        arrived = await seq_times(r)
        lat = [arrived[N + i] - sent[i] for i in range(len(paced))]
        p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
        say(f"latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms (publish -> XADD)")
        await r.delete(STREAM)

        # 3. HTTP batch
        http_rate = await http_batch(url, tokens)
        say(f"http batch: {http_rate:,.0f} readings/s (messages of 3 metrics)")
        await r.delete(STREAM)

        # 4. soak
        rss = [psutil.Process(proc.pid).memory_info().rss / 2**20]
        if SOAK_S > 0:
            say(f"soak: {SOAK_S:.0f} s at {SOAK_RATE:,.0f} msg/s, sampling RSS ...")
            chunk_s = 30.0
            seq = N + len(paced)
            elapsed = 0.0
            while elapsed < SOAK_S:
                count = int(SOAK_RATE * min(chunk_s, SOAK_S - elapsed))
                publish(mq, messages(tokens, count, start_seq=seq), SOAK_RATE, workdir)
                seq += count
                elapsed += chunk_s
                await r.xtrim(STREAM, maxlen=1000)
                rss.append(psutil.Process(proc.pid).memory_info().rss / 2**20)
                say(f"  soak {min(elapsed, SOAK_S):.0f}/{SOAK_S:.0f} s, rss {rss[-1]:.1f} MB")
        stop(proc)
        await r.aclose()
        return {
            "mqtt_msgs_per_s": round(ingest_rate),
            "baseline_msgs_per_s": round(baseline),
            "ratio_to_baseline": round(ingest_rate / baseline, 3),
            "mqtt_p50_ms": round(p50, 2),
            "mqtt_p99_ms": round(p99, 2),
            "latency_rate_msgs_per_s": LAT_RATE,
            "http_readings_per_s": round(http_rate),
            "rss_mb_start": round(rss_start or 0.0, 1),
            "rss_mb_end": round(rss[-1], 1),
            "rss_mb_samples": [round(x, 1) for x in rss],
            "soak_s": SOAK_S,
            "messages": N,
            "devices": DEVICES,
            "metrics_per_message": 3,
            "cpu_count": os.cpu_count(),
        }
    finally:
        for server in (mq, rd, pg):
            server.stop()


async def http_batch(url: str, tokens: list[str]) -> float:
    per_request, concurrency = 500, 4
    bodies = []
    for start_n in range(0, HTTP_MESSAGES, per_request):
        batch = []
        for n in range(start_n, min(start_n + per_request, HTTP_MESSAGES)):
            d = n % len(tokens)
            batch.append(
                {
                    "tenant_id": TENANT,
                    "device_id": f"d{d}",
                    "msg_type": "telemetry",
                    "site_id": "site-1",
                    "provision_token": tokens[d],
                    "seq": 10_000_000 + n,
                    "metrics": {"temp_c": 21.0, "humidity": 40.5, "battery_v": 3.7},
                }
            )
        bodies.append(json.dumps({"messages": batch}).encode())
    accepted = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while not queue.empty():
            body = queue.get_nowait()
            response = await client.post(
                f"{url}/ingest/v1/batch", content=body, headers={"content-type": "application/json"}
            )
            accepted += response.json()["accepted"]

    async with httpx.AsyncClient(timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    if accepted != HTTP_MESSAGES:
        raise SystemExit(f"http batch: {accepted} of {HTTP_MESSAGES} accepted")
    return accepted / elapsed


def main() -> None:
    report(
        "ingest",
        run,
        (
            "mqtt_msgs_per_s",
            "baseline_msgs_per_s",
            "ratio_to_baseline",
            "mqtt_p50_ms",
            "mqtt_p99_ms",
            "http_readings_per_s",
            "rss_mb_start",
            "rss_mb_end",
        ),
    )


if __name__ == "__main__":
    main()
