from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.common.bus import publish
from services.common.db import Database
from services.common.ssrf import AddressPolicy
from services.delivery_worker.channels.webhook import parse_retry_after, sign
from services.delivery_worker.worker import Backoff
from services.devstack import RedisServer, free_port
from tests.conftest import DbUrls
from tests.delivery_worker import seed
from tests.delivery_worker.conftest import attempts, fast_config, running_worker, wait_state
from tests.delivery_worker.receiver import Reply, http_receiver
from tests.ingest.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-hmac-key"

pytestmark = pytest.mark.integration


async def webhook(admin: asyncpg.Connection, url: str) -> object:
    return await seed.integration(admin, config={"url": url}, secrets={"hmac_secret": SECRET})


async def test_webhook_is_signed_and_carries_the_stable_delivery_id(
    db: Database, admin_conn: asyncpg.Connection
) -> None:
    async with http_receiver() as receiver:
        integration_id = await webhook(admin_conn, receiver.url)
        job = await seed.job(admin_conn, integration_id, device_id="dev/7", site_id="site-3")
        async with running_worker(db):
            done = await wait_state(admin_conn, job["job_id"], "DELIVERED")
        assert len(receiver.received) == 1
        req = receiver.received[0]
        assert req.headers["x-pulse-delivery-id"] == str(job["delivery_id"])
        expected = "sha256=" + hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(req.headers["x-pulse-signature"], expected)
        assert req.headers["content-type"] == "application/json"
        assert req.headers["x-pulse-event"] == "OPEN"
        body = json.loads(req.body)
        assert body["delivery_id"] == str(job["delivery_id"])
        assert body["event_id"] == str(job["event_id"])
        assert body["transition"] == "OPEN"
        assert body["tenant"] == {"tenant_id": "tenant-a", "name": "tenant-a Inc"}
        assert body["alert"]["alert_id"] == str(job["alert_id"])
        assert body["alert"]["alert_type"] == "NO_HEARTBEAT" and body["alert"]["severity"] == "MAJOR"
        assert body["device"] == {"device_id": "dev/7", "site_id": "site-3"}
        assert body["links"]["alert"] == f"https://pulse.example/alerts/{job['alert_id']}"
        assert body["links"]["device"] == "https://pulse.example/devices/dev%2F7"
        assert done["attempts"] == 1 and done["completed_at"] is not None and done["leased_by"] is None
        (attempt,) = await attempts(admin_conn, job["job_id"])
        assert (attempt["outcome"], attempt["status_code"], attempt["attempt_no"]) == ("success", 200, 1)
        assert attempt["duration_ms"] >= 0


async def test_receiver_down_then_up_is_retried_with_growing_gaps_and_delivered_once(
    db: Database, admin_conn: asyncpg.Connection
) -> None:
    port = free_port()
    integration_id = await webhook(admin_conn, f"http://127.0.0.1:{port}/hook")
    job = await seed.job(admin_conn, integration_id)
    config = fast_config(max_attempts=10, backoff=Backoff(base_s=0.2, cap_s=10.0, jitter=0.2))
    async with running_worker(db, config):
        await eventually(lambda: attempts(admin_conn, job["job_id"]), lambda a: len(a) >= 3, 10)
        async with http_receiver(port) as receiver:
            done = await wait_state(admin_conn, job["job_id"], "DELIVERED", 15)
            await asyncio.sleep(0.3)
            assert len(receiver.received) == 1
    tried = await attempts(admin_conn, job["job_id"])
    assert [a["outcome"] for a in tried] == ["retry"] * (len(tried) - 1) + ["success"]
    assert all(a["error"].startswith("network:") for a in tried[:-1])
    gaps = [(b["started_at"] - a["started_at"]).total_seconds() for a, b in itertools.pairwise(tried)]
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert done["attempts"] == len(tried)


async def test_client_error_fails_at_once(db: Database, admin_conn: asyncpg.Connection) -> None:
    async with http_receiver() as receiver:
        receiver.default = Reply(400)
        job = await seed.job(admin_conn, await webhook(admin_conn, receiver.url))
        async with running_worker(db):
            failed = await wait_state(admin_conn, job["job_id"], "FAILED")
            await asyncio.sleep(0.3)
        assert len(receiver.received) == 1
    assert failed["last_error"] == "HTTP 400" and failed["attempts"] == 1
    (attempt,) = await attempts(admin_conn, job["job_id"])
    assert (attempt["outcome"], attempt["status_code"]) == ("failed", 400)


async def test_retry_after_is_honoured(db: Database, admin_conn: asyncpg.Connection) -> None:
    async with http_receiver() as receiver:
        receiver.script = [Reply(429, {"Retry-After": "2"})]
        job = await seed.job(admin_conn, await webhook(admin_conn, receiver.url))
        async with running_worker(db, fast_config(backoff=Backoff(base_s=0.05, cap_s=10.0))):
            await wait_state(admin_conn, job["job_id"], "DELIVERED", 10)
        assert len(receiver.received) == 2
        gap = receiver.received[1].at - receiver.received[0].at
        assert gap >= 1.9, gap
    first, _second = await attempts(admin_conn, job["job_id"])
    assert (first["outcome"], first["status_code"]) == ("retry", 429)


async def test_server_errors_are_retried_until_attempts_run_out(db: Database, admin_conn: asyncpg.Connection) -> None:
    async with http_receiver() as receiver:
        receiver.default = Reply(503)
        job = await seed.job(admin_conn, await webhook(admin_conn, receiver.url))
        async with running_worker(db, fast_config(max_attempts=3, backoff=Backoff(0.05, 1.0))):
            failed = await wait_state(admin_conn, job["job_id"], "FAILED")
        assert len(receiver.received) == 3
        assert {r.headers["x-pulse-delivery-id"] for r in receiver.received} == {str(job["delivery_id"])}
    assert failed["last_error"] == "gave up after 3 attempts: HTTP 503"
    assert [a["outcome"] for a in await attempts(admin_conn, job["job_id"])] == ["retry", "retry", "retry"]


async def test_loopback_destination_is_refused_without_allow_list(db: Database, admin_conn: asyncpg.Connection) -> None:
    async with http_receiver() as receiver:
        job = await seed.job(admin_conn, await webhook(admin_conn, receiver.url))
        async with running_worker(db, policy=AddressPolicy()):
            failed = await wait_state(admin_conn, job["job_id"], "FAILED")
        assert receiver.received == []
    assert "refused: loopback" in failed["last_error"]


async def test_announced_job_is_delivered_without_waiting_for_the_poll(
    db: Database, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    async with http_receiver() as receiver:
        integration_id = await webhook(admin_conn, receiver.url)
        async with running_worker(
            db, fast_config(poll_s=30.0, wake_stream="pulse:deliveries"), redis=redis_client
        ) as worker:
            await asyncio.sleep(0.3)  # the worker has polled once and is now waiting
            job = await seed.job(admin_conn, integration_id)
            await publish(redis_client, "pulse:deliveries", {"job_id": str(job["job_id"])}, maxlen=1000)
            await wait_state(admin_conn, job["job_id"], "DELIVERED", 5)
            assert worker.delivered == 1


async def test_disabled_integration_fails_its_jobs(db: Database, admin_conn: asyncpg.Connection) -> None:
    integration_id = await seed.integration(admin_conn, config={"url": "http://127.0.0.1:9/x"}, enabled=False)
    job = await seed.job(admin_conn, integration_id)
    async with running_worker(db):
        failed = await wait_state(admin_conn, job["job_id"], "FAILED")
    assert failed["last_error"] == "integration disabled"


async def test_killed_worker_leaves_jobs_to_be_delivered_after_the_lease_with_the_same_delivery_id(
    db: Database, admin_conn: asyncpg.Connection, db_urls: DbUrls, redis_server: RedisServer
) -> None:
    async with http_receiver() as receiver:
        receiver.default = Reply(200, delay_s=0.4)
        integration_id = await webhook(admin_conn, receiver.url)
        jobs = [await seed.job(admin_conn, integration_id, device_id=f"dev-{i}") for i in range(12)]
        env = {
            **os.environ,
            "PULSE_DATABASE_URL": db_urls.service,
            "PULSE_REDIS_URL": redis_server.url(),
            "PULSE_HTTP_HOST": "127.0.0.1",
            "PULSE_HTTP_PORT": str(free_port()),
            "PULSE_DELIVERY_ALLOW_CIDRS": "127.0.0.0/8",
            "PULSE_DELIVERY_CONCURRENCY": "4",
            "PULSE_DELIVERY_LEASE_S": "1.5",
            "PULSE_DELIVERY_TIMEOUT_S": "1",
            "PULSE_DELIVERY_POLL_S": "0.1",
            "PULSE_DELIVERY_WORKER_ID": "doomed",
            "PULSE_DB_POOL_MAX": "3",
        }
        proc = subprocess.Popen([sys.executable, "-m", "services.delivery_worker"], cwd=ROOT, env=env)
        try:
            await eventually(lambda: len(receiver.received), lambda n: n >= 6, 20)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        leased = await admin_conn.fetchval(
            "SELECT count(*) FROM delivery_jobs WHERE state = 'IN_PROGRESS' AND leased_by = 'doomed'"
        )
        assert leased >= 1  # killed mid-delivery: these wait for their lease to expire
        receiver.default = Reply(200)
        async with running_worker(db, fast_config(lease_s=5.0)):
            for job in jobs:
                await wait_state(admin_conn, job["job_id"], "DELIVERED", 15)
        ids = [r.headers["x-pulse-delivery-id"] for r in receiver.received]
    expected = {str(j["delivery_id"]) for j in jobs}
    assert set(ids) == expected  # every job delivered; any repeat carries a known delivery id
    taken_over = await admin_conn.fetchval(
        "SELECT count(*) FROM delivery_jobs WHERE attempts >= 2 AND state = 'DELIVERED'"
    )
    assert taken_over >= leased


@pytest.mark.unit
def test_backoff_doubles_from_30_s_caps_at_2_h_and_honours_retry_after() -> None:
    plain = Backoff(jitter=0)
    assert [plain.delay(n) for n in range(1, 6)] == [30, 60, 120, 240, 480]
    assert plain.delay(20) == 7200
    assert plain.delay(1, retry_after_s=90) == 90
    assert plain.delay(3, retry_after_s=5) == 120  # never sooner than the backoff
    assert plain.delay(1, retry_after_s=86_400) == 7200  # within the cap
    jittered = Backoff()
    delays = {jittered.delay(2) for _ in range(50)}
    assert all(48 <= d <= 72 for d in delays) and len(delays) > 1


@pytest.mark.unit
def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.unit
def test_signature_is_hmac_sha256_of_the_body() -> None:
    assert sign("k", b"{}") == "sha256=" + hmac.new(b"k", b"{}", hashlib.sha256).hexdigest()
