"""QoS 1 intake loses nothing: bounded in-flight work under a flood, and across an ingest restart."""

from __future__ import annotations

import pytest

from tests.conftest import DbUrls
from tests.ingest.conftest import Fleet, eventually, ingest_env, mqtt_client, running_ingest

pytestmark = pytest.mark.integration


async def test_a_flood_through_a_small_inflight_window_arrives_complete(
    db_urls: DbUrls, redis_server, mqtt_server, admin_conn, redis_client, fleet: Fleet
) -> None:
    env = ingest_env(
        db_urls,
        redis_server,
        mqtt_server,
        PULSE_INGEST_MQTT_RECEIVE_MAX="10",
        PULSE_INGEST_RATE_PER_S="100000",
        PULSE_INGEST_BURST="100000",
    )
    total = 3000
    async with running_ingest(env, admin_conn, redis_client, fleet) as ingest:
        async with mqtt_client(ingest.mqtt_url) as client:
            for seq in range(total):
                await client.publish(
                    "tenant/tenant-a/device/dev-1/telemetry", ingest.payload("tenant-a", "dev-1", seq=seq), qos=1
                )
        observations = await ingest.wait_observations(total, timeout=30)
    assert sorted(o["seq"] for o in observations) == list(range(total))


async def test_messages_sent_while_ingest_is_down_arrive_after_restart(
    db_urls: DbUrls, redis_server, mqtt_server, admin_conn, redis_client, fleet: Fleet
) -> None:
    env = ingest_env(db_urls, redis_server, mqtt_server, PULSE_INGEST_MQTT_SESSION_EXPIRY_S="300")
    async with running_ingest(env, admin_conn, redis_client, fleet) as ingest:
        async with mqtt_client(ingest.mqtt_url) as client:
            for seq in range(20):
                await client.publish(
                    "tenant/tenant-a/device/dev-1/telemetry", ingest.payload("tenant-a", "dev-1", seq=seq), qos=1
                )
        await ingest.wait_observations(20)
    # ingest is stopped; its persistent session keeps its subscription at the broker
    async with mqtt_client(env["PULSE_MQTT_URL"]) as client:
        for seq in range(20, 50):
            await client.publish(
                "tenant/tenant-a/device/dev-1/telemetry", ingest.payload("tenant-a", "dev-1", seq=seq), qos=1
            )
    async with running_ingest(env, admin_conn, redis_client, fleet) as ingest:
        observations = await ingest.wait_observations(50)
    assert sorted(o["seq"] for o in observations) == list(range(50))


async def test_accepted_messages_reach_the_telemetry_store_once(
    db_urls: DbUrls, redis_server, mqtt_server, admin_conn, redis_client, fleet: Fleet
) -> None:
    env = ingest_env(db_urls, redis_server, mqtt_server, PULSE_INGEST_TELEMETRY_WRITER="true")
    async with running_ingest(env, admin_conn, redis_client, fleet) as ingest:
        async with mqtt_client(ingest.mqtt_url) as client:
            for seq in range(30):
                body = ingest.payload("tenant-a", "dev-1", seq=seq, ts=f"2026-11-23T10:00:{seq:02d}Z")
                await client.publish("tenant/tenant-a/device/dev-1/telemetry", body, qos=1)
                if seq == 0:  # the same message twice (a QoS 1 redelivery)
                    await client.publish("tenant/tenant-a/device/dev-1/telemetry", body, qos=1)
        await ingest.wait_observations(31)
        store = ingest.service.store
        assert store is not None
        readings = await eventually(
            lambda: store.recent("tenant-a", "dev-1", limit=100), lambda rows: len(rows) >= 30, timeout=15
        )
        assert len(readings) == 30  # the duplicate is stored once
        assert await store.latest("tenant-a", "dev-1") == {"temp_c": 21.5, "humidity": 40.0, "door_open": 0.0}


async def test_replicas_in_a_shared_subscription_split_the_load(
    db_urls: DbUrls, redis_server, mqtt_server, admin_conn, redis_client, fleet: Fleet
) -> None:
    env_a = ingest_env(db_urls, redis_server, mqtt_server, PULSE_INGEST_MQTT_SHARED_GROUP="ingest")
    env_b = ingest_env(db_urls, redis_server, mqtt_server, PULSE_INGEST_MQTT_SHARED_GROUP="ingest")
    async with (
        running_ingest(env_a, admin_conn, redis_client, fleet) as a,
        running_ingest(env_b, admin_conn, redis_client, fleet) as b,
    ):
        async with mqtt_client(a.mqtt_url) as client:
            for seq in range(200):
                device = "dev-1" if seq % 2 else "dev-2"
                body = a.payload("tenant-a", device, seq=seq)
                await client.publish(f"tenant/tenant-a/device/{device}/telemetry", body, qos=1)
        observations = await a.wait_observations(200)
        assert a.service.mqtt.received > 0 and b.service.mqtt.received > 0  # both replicas took a share
        assert a.service.mqtt.received + b.service.mqtt.received == 200  # and no message went to both
    assert sorted(o["seq"] for o in observations) == list(range(200))
