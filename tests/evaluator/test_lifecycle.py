"""Alert lifecycle by users (acknowledge, resolve) and the evaluator surviving a kill."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from services.common.db import Database
from services.evaluator.alerts import AlertError, acknowledge, resolve
from tests.evaluator.conftest import Harness, eventually, observation, seed

pytestmark = pytest.mark.integration

SLOW = {"PULSE_EVALUATOR_STALE_AFTER_S": "30", "PULSE_EVALUATOR_OFFLINE_AFTER_S": "60"}


async def test_user_acknowledges_then_resolves_and_each_step_is_published(harness: Harness, db: Database) -> None:
    await seed(harness.admin, "acme", {"d1": None})
    await seed(harness.admin, "other", {})
    rule_id = await harness.add_rule("acme", "hot", threshold=30.0)
    fp = f"RULE:{rule_id}:d1"
    async with harness.running(**SLOW):
        await harness.send(observation("acme", "d1", metrics={"temp_c": 31}))
        await harness.wait_alert_statuses(fp, ["OPEN"])
        alert_id = str((await harness.alerts(fp))[0]["alert_id"])

        with pytest.raises(AlertError) as other_tenant:
            await acknowledge(db, "other", alert_id, "mallory")
        assert other_tenant.value.reason == "not_found"

        message = await acknowledge(db, "acme", alert_id, "alice")
        assert (message["status"], message["alert_id"]) == ("ACKNOWLEDGED", alert_id)
        await harness.wait_alert_statuses(fp, ["OPEN", "ACKNOWLEDGED"])
        with pytest.raises(AlertError) as twice:
            await acknowledge(db, "acme", alert_id, "alice")
        assert twice.value.reason == "invalid_transition"

        await harness.send(observation("acme", "d1", metrics={"temp_c": 33}))  # acknowledged still counts repeats
        await eventually(lambda: harness.alerts(fp), lambda rows: rows[0]["event_count"] == 2)

        await resolve(db, "acme", alert_id, "bob")
        await harness.wait_alert_statuses(fp, ["OPEN", "ACKNOWLEDGED", "RESOLVED"])
        (row,) = await harness.alerts(fp)
        assert (row["acknowledged_by"], row["resolved_by"], row["status"]) == ("alice", "bob", "RESOLVED")

        # the condition still holds: a later sample opens a new alert, not a repeat of the resolved one
        # (the evaluator learns of the user's resolve from the outbox pass that published it)
        await asyncio.sleep(0.3)
        await harness.send(observation("acme", "d1", metrics={"temp_c": 34}))
        await harness.wait_alert_statuses(fp, ["OPEN", "ACKNOWLEDGED", "RESOLVED", "OPEN"])
    with pytest.raises(AlertError):
        await resolve(db, "acme", str(uuid.uuid4()), "bob")


async def test_killed_evaluator_restarts_without_duplicates_or_missed_staleness(harness: Harness) -> None:
    await seed(harness.admin, "acme", {"quiet": None, "busy": None})
    rule_id = await harness.add_rule("acme", "hot", threshold=30.0)
    fp = f"RULE:{rule_id}:busy"
    env = {"PULSE_EVALUATOR_STALE_AFTER_S": "1.5", "PULSE_EVALUATOR_OFFLINE_AFTER_S": "30"}

    first = await harness.start(**env)
    await harness.send(observation("acme", "quiet"), observation("acme", "busy", metrics={"temp_c": 40}))
    await harness.wait_alert_statuses(fp, ["OPEN"])
    await eventually(lambda: harness.statuses(), lambda s: s == ["ONLINE", "ONLINE"])
    await first.kill()

    # while no evaluator runs: "quiet" stays silent past its threshold; "busy" keeps reporting
    await harness.send(observation("acme", "busy", metrics={"temp_c": 41}))
    await asyncio.sleep(1.0)
    await harness.send(observation("acme", "busy", metrics={"temp_c": 42}))
    await asyncio.sleep(0.7)

    second = await harness.start(**env)
    try:
        # found on start-up, not a full threshold after it
        await eventually(lambda: harness.statuses("quiet"), lambda s: s == ["ONLINE", "STALE"], 0.8)
        await harness.wait_alert_statuses("NO_HEARTBEAT:quiet", ["OPEN"], 2)
        await eventually(lambda: harness.alerts(fp), lambda rows: rows[-1]["event_count"] == 3, 5)
        assert await harness.statuses("busy") == ["ONLINE"]
    finally:
        second.stop.set()
        await asyncio.wait_for(second.task, 15)
        await second.service.close()
    assert len(await harness.alerts(fp)) == 1
    assert await harness.alert_statuses(fp) == ["OPEN"]
    assert await harness.redis.xpending("pulse:observations", "evaluator") == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }


async def test_events_committed_but_never_published_are_sent_on_start_up(harness: Harness) -> None:
    await seed(harness.admin, "acme", {"d1": None})
    rule_id = await harness.add_rule("acme", "hot", threshold=30.0)
    fp = f"RULE:{rule_id}:d1"
    async with harness.running(**SLOW):
        await harness.send(observation("acme", "d1", metrics={"temp_c": 31}))
        await harness.wait_alert_statuses(fp, ["OPEN"])
    # as if the process died between the commit and the XADD
    await harness.admin.execute("UPDATE alert_events SET published_at = NULL")
    await harness.redis.delete("pulse:alerts")
    async with harness.running(**SLOW):
        await harness.wait_alert_statuses(fp, ["OPEN"])
    assert len(await harness.alerts(fp)) == 1
    assert await harness.admin.fetchval("SELECT count(*) FROM alert_events WHERE published_at IS NULL") == 0
