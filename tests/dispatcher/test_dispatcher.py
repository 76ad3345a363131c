from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.common.bus import Entry, RetryLater
from services.common.db import Database
from services.dispatcher.dispatcher import Dispatcher
from services.dispatcher.routing import AlertEvent, Route, choose_routes, decode_event
from tests.conftest import DbUrls
from tests.delivery_worker import seed
from tests.delivery_worker.conftest import fast_config, running_worker, wait_state
from tests.delivery_worker.receiver import http_receiver
from tests.dispatcher.conftest import DELIVERIES, announced, publish_event, route, running_dispatcher
from tests.ingest.conftest import eventually


async def jobs(admin: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await admin.fetch("SELECT * FROM delivery_jobs ORDER BY created_at, job_id"))


async def hook(admin: asyncpg.Connection, name: str, *, enabled: bool = True) -> uuid.UUID:
    return await seed.integration(admin, name=name, config={"url": "http://127.0.0.1:9/x"}, enabled=enabled)


@pytest.mark.integration
async def test_routes_select_integrations_by_severity_type_device_and_site(
    db: Database, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    ids = {name: await hook(admin_conn, name) for name in ("major", "ptp", "pumps", "site9", "dev1", "off", "any")}
    ids["disabled-integration"] = await hook(admin_conn, "disabled-integration", enabled=False)
    await route(admin_conn, ids["major"], min_severity="MAJOR")
    await route(admin_conn, ids["ptp"], alert_types=["PTP_UNLOCKED"])
    await route(admin_conn, ids["pumps"], device_glob="pump-*")
    await route(admin_conn, ids["site9"], site_ids=["site-9"])
    await route(admin_conn, ids["dev1"], device_ids=["dev-1", "dev-2"])
    await route(admin_conn, ids["off"], enabled=False)
    await route(admin_conn, ids["any"], min_severity="CRITICAL")
    await route(admin_conn, ids["disabled-integration"])
    other_tenant = await seed.integration(admin_conn, "tenant-b", name="b", config={"url": "http://127.0.0.1:9/x"})
    await route(admin_conn, other_tenant)

    major = await seed.alert(admin_conn, device_id="dev-1", site_id="site-1", severity="MAJOR")
    minor_pump = await seed.alert(admin_conn, device_id="pump-3", site_id="site-9", severity="MINOR")
    async with running_dispatcher(db, redis_client) as running:
        await publish_event(admin_conn, redis_client, major)
        await publish_event(admin_conn, redis_client, minor_pump)
        await running.wait_handled(2)
    by_alert: dict[uuid.UUID, set[uuid.UUID]] = {}
    for job in await jobs(admin_conn):
        by_alert.setdefault(job["alert_id"], set()).add(job["integration_id"])
        assert job["state"] == "PENDING" and job["route_id"] is not None
    assert by_alert[major] == {ids["major"], ids["dev1"]}
    assert by_alert[minor_pump] == {ids["pumps"], ids["site9"]}
    assert sorted(await announced(redis_client)) == sorted(str(j["job_id"]) for j in await jobs(admin_conn))


@pytest.mark.integration
async def test_replayed_event_creates_nothing_new(
    db: Database, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    a, b = await hook(admin_conn, "a"), await hook(admin_conn, "b")
    await route(admin_conn, a)
    await route(admin_conn, b)
    alert_id = await seed.alert(admin_conn)
    async with running_dispatcher(db, redis_client) as running:
        event_id = await publish_event(admin_conn, redis_client, alert_id)
        await running.wait_handled(1)
        first = await jobs(admin_conn)
        for _ in range(3):
            await publish_event(admin_conn, redis_client, alert_id, event_id=event_id)
        await running.wait_handled(4)
        assert running.dispatcher.jobs_created == 2
    again = await jobs(admin_conn)
    assert [j["job_id"] for j in again] == [j["job_id"] for j in first]
    assert len(again) == 2
    assert set(await announced(redis_client)) == {str(j["job_id"]) for j in first}  # re-announced, same ids


@pytest.mark.integration
async def test_transitions_choose_which_events_are_sent_including_resolved(
    db: Database, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    full, default = await hook(admin_conn, "full"), await hook(admin_conn, "open-only")
    await route(admin_conn, full, transitions=["OPEN", "RESOLVED"])
    await route(admin_conn, default)  # the default: OPEN only
    alert_id = await seed.alert(admin_conn)
    async with running_dispatcher(db, redis_client) as running:
        opened = await publish_event(admin_conn, redis_client, alert_id, "OPEN")
        acked = await publish_event(admin_conn, redis_client, alert_id, "ACKNOWLEDGED")
        resolved = await publish_event(admin_conn, redis_client, alert_id, "RESOLVED")
        await running.wait_handled(3)
    got = {(j["event_id"], j["integration_id"]) for j in await jobs(admin_conn)}
    assert got == {(opened, full), (opened, default), (resolved, full)}
    assert not any(event == acked for event, _ in got)


@pytest.mark.integration
async def test_repeat_interval_throttles_renotification_of_a_still_open_alert(
    db: Database, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    once, every_second = await hook(admin_conn, "once"), await hook(admin_conn, "every-second")
    await route(admin_conn, once)
    await route(admin_conn, every_second, repeat_interval_s=1)
    alert_id = await seed.alert(admin_conn)
    async with running_dispatcher(db, redis_client) as running:
        first = await publish_event(admin_conn, redis_client, alert_id)
        await running.wait_handled(1)
        second = await publish_event(admin_conn, redis_client, alert_id)  # at once: both throttle it
        await running.wait_handled(2)
        await asyncio.sleep(1.1)
        third = await publish_event(admin_conn, redis_client, alert_id)  # past the repeat interval
        await running.wait_handled(3)
        assert running.dispatcher.throttled == 3
    got = {(j["event_id"], j["integration_id"]) for j in await jobs(admin_conn)}
    assert got == {(first, once), (first, every_second), (third, every_second)}
    assert second not in {e for e, _ in got}


@pytest.mark.integration
async def test_one_job_per_integration_from_its_best_priority_route(
    db: Database, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    integration_id = await hook(admin_conn, "dup")
    await route(admin_conn, integration_id, priority=50, name="low")
    best = await route(admin_conn, integration_id, priority=10, name="best")
    alert_id = await seed.alert(admin_conn)
    async with running_dispatcher(db, redis_client) as running:
        await publish_event(admin_conn, redis_client, alert_id)
        await running.wait_handled(1)
    (job,) = await jobs(admin_conn)
    assert job["route_id"] == best


@pytest.mark.integration
async def test_alert_event_reaches_the_webhook_through_dispatcher_and_worker(
    db: Database, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    async with http_receiver() as receiver:
        integration_id = await seed.integration(admin_conn, config={"url": receiver.url})
        await route(admin_conn, integration_id, transitions=["OPEN", "RESOLVED"])
        alert_id = await seed.alert(admin_conn)
        config = fast_config(poll_s=30.0, wake_stream=DELIVERIES)
        async with running_dispatcher(db, redis_client), running_worker(db, config, redis=redis_client):
            await asyncio.sleep(0.2)
            await publish_event(admin_conn, redis_client, alert_id, "OPEN")
            await eventually(lambda: len(receiver.received), lambda n: n == 1, 5)
            await publish_event(admin_conn, redis_client, alert_id, "RESOLVED")
            await eventually(lambda: len(receiver.received), lambda n: n == 2, 5)
        transitions = [json.loads(r.body)["transition"] for r in receiver.received]
        assert transitions == ["OPEN", "RESOLVED"]
        assert json.loads(receiver.received[1].body)["alert"]["status"] == "RESOLVED"
    for job in await jobs(admin_conn):
        await wait_state(admin_conn, job["job_id"], "DELIVERED")


def _event(**kw: object) -> AlertEvent:
    data: dict[str, object] = {
        "v": 1,
        "event_id": "e",
        "alert_id": "a",
        "tenant_id": "t",
        "device_id": "dev-1",
        "alert_type": "NO_HEARTBEAT",
        "severity": "MAJOR",
        "status": "OPEN",
    }
    data.update(kw)
    return decode_event(data)


@pytest.mark.unit
def test_route_filters_match_like_the_selectors_say() -> None:
    ev = _event()
    assert Route("r", "i").matches(ev, "site-1")
    assert not Route("r", "i", min_severity="CRITICAL").matches(ev, None)
    assert Route("r", "i", min_severity="MAJOR").matches(ev, None)
    assert not Route("r", "i", alert_types=["X"]).matches(ev, None)
    assert Route("r", "i", device_glob="dev-*").matches(ev, None)
    assert not Route("r", "i", device_glob="pump-*").matches(ev, None)
    assert not Route("r", "i", site_ids=["s2"]).matches(ev, "s1")
    assert not Route("r", "i", site_ids=["s2"]).matches(ev, None)
    assert not Route("r", "i").matches(_event(status="RESOLVED"), None)
    assert Route("r", "i", transitions=["RESOLVED"]).matches(_event(status="RESOLVED"), None)
    chosen = choose_routes([Route("b", "i", priority=5), Route("a", "i", priority=5), Route("c", "j")], ev, None)
    assert [(r.route_id, r.integration_id) for r in chosen] == [("a", "i"), ("c", "j")]


@pytest.mark.unit
def test_malformed_alert_events_are_refused() -> None:
    for bad in ({"severity": "HUGE"}, {"status": "CLOSED"}, {"event_id": 5}):
        with pytest.raises(ValueError, match="invalid alert event"):
            _event(**bad)


@pytest.mark.integration
async def test_database_outage_asks_the_bus_to_retry_later_instead_of_failing_the_event(
    db_urls: DbUrls, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    alert_id = await seed.alert(admin_conn)
    event_id = await seed.event(admin_conn, "tenant-a", alert_id)
    down = await Database.connect(db_urls.service, max_size=1)
    await down.close()  # every use now fails like a lost server
    dispatcher = Dispatcher(down, redis_client, deliveries_stream=DELIVERIES, maxlen=1000)
    data = {
        "v": 1,
        "event_id": str(event_id),
        "alert_id": str(alert_id),
        "tenant_id": "tenant-a",
        "alert_type": "NO_HEARTBEAT",
        "severity": "MAJOR",
        "status": "OPEN",
    }
    with pytest.raises(RetryLater):
        await dispatcher.handle([Entry("1-0", data)])
