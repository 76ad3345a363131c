from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiomqtt
import asyncpg
import pytest

from services.common.db import Database
from services.common.ssrf import AddressPolicy
from services.delivery_worker.channels.mqtt import InvalidTopic, render_topic, validate_topic_template
from services.devstack import MosquittoServer
from tests.delivery_worker import seed
from tests.delivery_worker.conftest import running_worker, wait_state


async def mqtt_integration(admin: asyncpg.Connection, broker: MosquittoServer, **config: Any) -> uuid.UUID:
    return await seed.integration(admin, type="mqtt", config={"host": "127.0.0.1", "port": broker.port, **config})


async def next_message(client: aiomqtt.Client, timeout: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            return message
    raise AssertionError("no message")


@pytest.mark.integration
async def test_alert_is_published_to_the_rendered_topic_with_its_qos_and_retain_flag(
    db: Database, admin_conn: asyncpg.Connection, mqtt_server: MosquittoServer
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    integration_id = await mqtt_integration(
        admin_conn, mqtt_server, topic="alerts/{tenant_id}/{site_id}/{device_id}/{severity}", qos=2, retain=True
    )
    job = await seed.job(admin_conn, integration_id, device_id="pump/7", site_id="site-3")
    topic = "alerts/tenant-a/site-3/pump_7/MAJOR"
    async with aiomqtt.Client("127.0.0.1", mqtt_server.port, identifier=f"sub-{tenant}") as live:
        await live.subscribe("alerts/tenant-a/#", qos=2)
        async with running_worker(db):
            await wait_state(admin_conn, job["job_id"], "DELIVERED")
        message = await next_message(live)
    assert message.topic.value == topic
    assert message.qos == 2
    body = json.loads(message.payload)  # type: ignore[arg-type]
    assert body["delivery_id"] == str(job["delivery_id"]) and body["device"]["device_id"] == "pump/7"
    # a late subscriber gets it as the retained message of the topic
    async with aiomqtt.Client("127.0.0.1", mqtt_server.port, identifier=f"late-{tenant}") as late:
        await late.subscribe(topic, qos=1)
        retained = await next_message(late)
        assert retained.retain and json.loads(retained.payload)["delivery_id"] == str(job["delivery_id"])  # type: ignore[arg-type]
        await late.publish(topic, b"", retain=True)  # clear it for other tests


@pytest.mark.integration
async def test_qos_defaults_to_1_without_retain(
    db: Database, admin_conn: asyncpg.Connection, mqtt_server: MosquittoServer
) -> None:
    integration_id = await mqtt_integration(admin_conn, mqtt_server, topic="alerts/plain/{alert_type}")
    job = await seed.job(admin_conn, integration_id)
    async with aiomqtt.Client("127.0.0.1", mqtt_server.port, identifier=f"sub-{uuid.uuid4().hex[:6]}") as live:
        await live.subscribe("alerts/plain/#", qos=2)
        async with running_worker(db):
            await wait_state(admin_conn, job["job_id"], "DELIVERED")
        message = await next_message(live)
    assert message.topic.value == "alerts/plain/NO_HEARTBEAT"
    assert message.qos == 1 and not message.retain


@pytest.mark.integration
async def test_bad_topic_or_loopback_broker_fails_the_job_at_once(
    db: Database, admin_conn: asyncpg.Connection, mqtt_server: MosquittoServer
) -> None:
    wildcard = await seed.job(admin_conn, await mqtt_integration(admin_conn, mqtt_server, topic="alerts/#"))
    outside = await seed.job(admin_conn, await mqtt_integration(admin_conn, mqtt_server, topic="devices/{device_id}"))
    async with running_worker(db):
        assert "wildcards" in (await wait_state(admin_conn, wildcard["job_id"], "FAILED"))["last_error"]
        assert "alerts/" in (await wait_state(admin_conn, outside["job_id"], "FAILED"))["last_error"]
    blocked = await seed.job(admin_conn, await mqtt_integration(admin_conn, mqtt_server, topic="alerts/x"))
    async with running_worker(db, policy=AddressPolicy()):
        failed = await wait_state(admin_conn, blocked["job_id"], "FAILED")
    assert "refused: loopback" in failed["last_error"] and failed["attempts"] == 1


@pytest.mark.unit
def test_topic_templates_start_with_alerts_and_use_only_known_fields() -> None:
    for bad in (
        "devices/{device_id}",
        "alerts/+/x",
        "alerts/#",
        "alerts/{secrets}",
        "alerts/{tenant_id.__class__}",
        "alerts/{tenant_id!r}",
        "alerts/{0}",
        "alerts/{",
    ):
        with pytest.raises(InvalidTopic):
            validate_topic_template(bad)
    payload = {
        "tenant": {"tenant_id": "t1"},
        "device": {"device_id": "a/+/#", "site_id": None},
        "alert": {"severity": "INFO", "alert_type": "X", "alert_id": "id"},
    }
    assert render_topic("alerts/{tenant_id}/{site_id}/{device_id}/{alert_id}", payload) == "alerts/t1/none/a____/id"
