"""Threshold rules from alert_rules: open, repeat, hysteresis, duration, selectors, live edits."""

from __future__ import annotations

import asyncio

import pytest

from tests.evaluator.conftest import Harness, eventually, observation, seed

pytestmark = pytest.mark.integration

SLOW = {"PULSE_EVALUATOR_STALE_AFTER_S": "30", "PULSE_EVALUATOR_OFFLINE_AFTER_S": "60"}


def temp(device_id: str, value: float, **kw: str) -> dict[str, object]:
    return observation("acme", device_id, metrics={"temp_c": value}, **kw)  # type: ignore[arg-type]


async def test_rule_opens_once_counts_repeats_and_resolves_past_the_clear_threshold(harness: Harness) -> None:
    await seed(harness.admin, "acme", {"d1": "site-1"})
    rule_id = await harness.add_rule("acme", "hot", threshold=30.0, clear_threshold=25.0, severity="MAJOR")
    fp = f"RULE:{rule_id}:d1"
    async with harness.running(**SLOW):
        await harness.send(temp("d1", 31))
        await harness.wait_alert_statuses(fp, ["OPEN"])
        await harness.send(temp("d1", 35), temp("d1", 28))  # 28 is under the threshold, above the clear
        await eventually(lambda: harness.alerts(fp), lambda rows: rows[0]["event_count"] == 3)
        await harness.send(temp("d1", 24))
        await harness.wait_alert_statuses(fp, ["OPEN", "RESOLVED"])
        await harness.send(temp("d1", 40))
        await harness.wait_alert_statuses(fp, ["OPEN", "RESOLVED", "OPEN"])
    rows = await harness.alerts(fp)
    assert [r["status"] for r in rows] == ["RESOLVED", "OPEN"]
    assert rows[0]["severity"] == "MAJOR" and rows[0]["rule_id"] is not None and rows[0]["alert_type"] == "THRESHOLD"
    messages = await harness.alert_messages(fp)
    assert {m["alert_id"] for m in messages[:2]} == {str(rows[0]["alert_id"])}
    assert set(messages[0]) == {
        "v", "event_id", "alert_id", "tenant_id", "device_id", "alert_type", "severity", "status",
        "fingerprint", "summary", "at",
    }  # fmt: skip
    events = await harness.admin.fetch("SELECT * FROM alert_events ORDER BY seq")
    assert [str(e["event_id"]) for e in events] == [m["event_id"] for m in messages]
    assert all(e["published_at"] is not None for e in events)


async def test_rule_opens_only_after_the_condition_held_for_its_duration(harness: Harness) -> None:
    await seed(harness.admin, "acme", {"d1": None, "d2": None})
    rule_id = await harness.add_rule("acme", "hot-for-1s", threshold=30.0, duration_s=1)
    async with harness.running(**SLOW):
        await harness.send(temp("d1", 31), temp("d2", 31))
        await asyncio.sleep(0.4)
        await harness.send(temp("d2", 20))  # d2 dips: its pending condition is cancelled
        await asyncio.sleep(0.3)
        assert await harness.alert_messages() == []
        # d1 sends nothing more: the condition is taken to hold, and opens once the duration passes
        await harness.wait_alert_statuses(f"RULE:{rule_id}:d1", ["OPEN"], 3)
        await asyncio.sleep(0.8)
        assert await harness.alert_messages(f"RULE:{rule_id}:d2") == []


async def test_rule_selector_limits_devices_by_ids_site_and_glob(harness: Harness) -> None:
    await seed(harness.admin, "acme", {"pump-1": "north", "pump-2": "south", "fan-1": "north"})
    await seed(harness.admin, "other", {"pump-1": "north"})
    by_glob = await harness.add_rule("acme", "pumps-north", site_id="north", device_glob="pump-*")
    by_ids = await harness.add_rule("acme", "fan", device_ids=["fan-1"])
    async with harness.running(**SLOW):
        await harness.send(
            temp("pump-1", 50, site_id="north"),
            temp("pump-2", 50, site_id="south"),
            temp("fan-1", 50, site_id="north"),
            observation("other", "pump-1", site_id="north", metrics={"temp_c": 50}),
        )
        await eventually(lambda: harness.alert_messages(), lambda m: len(m) == 2)
        await asyncio.sleep(0.3)
    assert sorted(m["fingerprint"] for m in await harness.alert_messages()) == sorted(
        [f"RULE:{by_glob}:pump-1", f"RULE:{by_ids}:fan-1"]
    )


async def test_rule_edits_and_disabling_take_effect_within_seconds(harness: Harness) -> None:
    await seed(harness.admin, "acme", {"d1": None})
    rule_id = await harness.add_rule("acme", "hot", threshold=50.0)
    fp = f"RULE:{rule_id}:d1"
    async with harness.running(**SLOW):
        await harness.send(temp("d1", 40))
        await asyncio.sleep(0.3)
        assert await harness.alert_messages() == []
        await harness.admin.execute("UPDATE alert_rules SET threshold = 35 WHERE rule_id = $1", rule_id)
        await asyncio.sleep(0.6)  # > the 0.2 s refresh period used in tests (2 s by default)
        await harness.send(temp("d1", 40))
        await harness.wait_alert_statuses(fp, ["OPEN"])
        await harness.admin.execute("UPDATE alert_rules SET enabled = false WHERE rule_id = $1", rule_id)
        await harness.wait_alert_statuses(fp, ["OPEN", "RESOLVED"], 3)
        await harness.send(temp("d1", 90))
        await asyncio.sleep(0.4)
        assert await harness.alert_statuses(fp) == ["OPEN", "RESOLVED"]
        await harness.add_rule("acme", "cold", metric="temp_c", comparison="<", threshold=0.0)
        await asyncio.sleep(0.6)
        await harness.send(temp("d1", -5))
        await eventually(lambda: harness.alert_messages(), lambda m: len(m) == 3)
