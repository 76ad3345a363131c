"""The whole pipeline: a device goes silent -> ingest -> evaluator opens NO_HEARTBEAT ->
dispatcher -> delivery_worker -> the customer's webhook; it comes back -> RESOLVED delivered."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest

from services.common.config import load
from services.delivery_worker.__main__ import build as build_worker
from services.delivery_worker.settings import DeliverySettings
from services.devstack import free_port
from services.dispatcher.__main__ import build as build_dispatcher
from services.dispatcher.settings import DispatcherSettings
from services.evaluator.__main__ import build as build_evaluator
from services.evaluator.settings import EvaluatorSettings
from tests.delivery_worker.receiver import http_receiver
from tests.delivery_worker.seed import integration
from tests.ingest.conftest import Ingest, eventually

pytestmark = pytest.mark.e2e

SECRET = "whsec-e2e-0123456789"


@asynccontextmanager
async def running(service: Any) -> AsyncIterator[Any]:
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        close = getattr(service, "close", None)
        if close is not None:
            await close()


async def test_silent_device_alert_reaches_the_webhook_and_so_does_its_resolution(ingest: Ingest) -> None:
    env = {
        "PULSE_DATABASE_URL": str(ingest.service.settings.database_url),
        "PULSE_REDIS_URL": str(ingest.service.settings.redis_url),
        "PULSE_HTTP_HOST": "127.0.0.1",
        "PULSE_DB_POOL_MAX": "4",
        "PULSE_EVALUATOR_STALE_AFTER_S": "1.5",
        "PULSE_EVALUATOR_FLUSH_S": "0.2",
        "PULSE_EVALUATOR_OUTBOX_S": "0.2",
        "PULSE_DELIVERY_ALLOW_CIDRS": "127.0.0.0/8",  # the receiver is local; everything else stays blocked
        "PULSE_DELIVERY_POLL_S": "0.2",
    }
    async with http_receiver() as receiver, AsyncExitStack() as stack:
        integration_id = await integration(
            ingest.admin, "tenant-a", config={"url": receiver.url}, secrets={"hmac_secret": SECRET}
        )
        await ingest.admin.execute(
            "INSERT INTO integration_routes (tenant_id, integration_id, alert_types, transitions)"
            " VALUES ('tenant-a', $1, '{NO_HEARTBEAT}', '{OPEN,RESOLVED}')",
            integration_id,
        )
        for build, cls in (
            (build_evaluator, EvaluatorSettings),
            (build_dispatcher, DispatcherSettings),
            (build_worker, DeliverySettings),
        ):
            settings = load(cls, {**env, "PULSE_HTTP_PORT": str(free_port())})
            await stack.enter_async_context(running(await build(settings)))

        async def beat(seq: int) -> None:
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    f"{ingest.base_url}/ingest/v1/tenant/tenant-a/device/dev-1/heartbeat",
                    content=ingest.payload("tenant-a", "dev-1", seq=seq),
                )
            assert response.status_code == 202

        await beat(1)  # ONLINE; then silence
        opened = await eventually(lambda: list(receiver.received), lambda r: len(r) >= 1, timeout=20)
        await beat(2)  # back: the alert resolves
        both = await eventually(lambda: list(receiver.received), lambda r: len(r) >= 2, timeout=20)

    bodies = [json.loads(r.body) for r in both]
    assert [b["transition"] for b in bodies] == ["OPEN", "RESOLVED"]
    assert all(
        b["alert"]["alert_type"] == "NO_HEARTBEAT" and b["alert"]["fingerprint"] == "NO_HEARTBEAT:dev-1" for b in bodies
    )
    for r in (opened[0], both[1]):
        expected = "sha256=" + hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        assert r.headers["x-pulse-signature"] == expected
        assert r.headers["x-pulse-delivery-id"]
    assert both[0].headers["x-pulse-delivery-id"] != both[1].headers["x-pulse-delivery-id"]
