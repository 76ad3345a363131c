from __future__ import annotations

import json
import uuid

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.common.db import Database
from services.delivery_worker.channels import build_channels
from services.delivery_worker.testsend import IntegrationNotFound, SendTest, SendTestLimited
from tests.delivery_worker import seed
from tests.delivery_worker.conftest import LOOPBACK
from tests.delivery_worker.receiver import Reply, http_receiver

pytestmark = pytest.mark.integration


async def test_send_test_delivers_a_sample_alert_and_reports_the_outcome(
    db: Database, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    channels = build_channels(LOOPBACK, timeout_s=2)
    tester = SendTest(db, redis_client, channels)
    try:
        async with http_receiver() as receiver:
            integration_id = await seed.integration(
                admin_conn, config={"url": receiver.url}, secrets={"hmac_secret": "k"}
            )
            ok = await tester.send("tenant-a", str(integration_id))
            assert ok.ok and ok.status_code == 200 and ok.duration_ms >= 0
            body = json.loads(receiver.received[0].body)
            assert body["test"] is True and body["alert"]["alert_type"] == "TEST"
            assert receiver.received[0].headers["x-pulse-delivery-id"] == ok.delivery_id
            receiver.default = Reply(400)
            bad = await tester.send("tenant-a", str(integration_id))
            assert (bad.outcome, bad.status_code, bad.error) == ("failed", 400, "HTTP 400")
        assert await admin_conn.fetchval("SELECT count(*) FROM delivery_jobs") == 0
    finally:
        for channel in channels.values():
            await channel.close()


async def test_send_test_is_limited_to_five_a_minute_per_integration(
    db: Database, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    channels = build_channels(LOOPBACK, timeout_s=2)
    tester = SendTest(db, redis_client, channels)
    try:
        async with http_receiver() as receiver:
            first = await seed.integration(admin_conn, config={"url": receiver.url})
            second = await seed.integration(admin_conn, config={"url": receiver.url})
            for _ in range(5):
                assert (await tester.send("tenant-a", str(first))).ok
            with pytest.raises(SendTestLimited) as limited:
                await tester.send("tenant-a", str(first))
            assert 1 <= limited.value.retry_after_s <= 60
            assert (await tester.send("tenant-a", str(second))).ok  # its own budget
            assert len(receiver.received) == 6
    finally:
        for channel in channels.values():
            await channel.close()


async def test_send_test_sees_only_the_callers_integrations(
    db: Database, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    tester = SendTest(db, redis_client, {})
    theirs = await seed.integration(admin_conn, "tenant-b", config={"url": "http://127.0.0.1:9/"})
    await seed.tenant(admin_conn, "tenant-a")
    for tenant_id, integration_id in [("tenant-a", str(theirs)), ("tenant-a", str(uuid.uuid4())), ("tenant-a", "x")]:
        with pytest.raises(IntegrationNotFound):
            await tester.send(tenant_id, integration_id)
