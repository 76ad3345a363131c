"""Device state through real Redis and PostgreSQL: ONLINE, STALE, OFFLINE, back ONLINE."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest

from tests.evaluator.conftest import Harness, eventually, observation, seed

pytestmark = pytest.mark.integration


async def test_silent_device_goes_stale_then_offline_and_back_online_on_next_message(harness: Harness) -> None:
    await seed(harness.admin, "acme", {"d1": "site-1"})
    async with harness.running():
        await harness.send(observation("acme", "d1", kind="heartbeat"))
        await eventually(lambda: harness.statuses("d1"), lambda s: s == ["ONLINE"])
        row = await eventually(
            lambda: harness.admin.fetchrow("SELECT * FROM device_state WHERE device_id = 'd1'"),
            lambda r: r is not None and r["status"] == "ONLINE",
        )
        assert row["last_heartbeat_at"] is not None
        await eventually(lambda: harness.statuses("d1"), lambda s: s == ["ONLINE", "STALE"], 3)
        await eventually(lambda: harness.statuses("d1"), lambda s: s == ["ONLINE", "STALE", "OFFLINE"], 3)
        await harness.send(observation("acme", "d1"))
        await eventually(lambda: harness.statuses("d1"), lambda s: s == ["ONLINE", "STALE", "OFFLINE", "ONLINE"])
        row = await eventually(
            lambda: harness.admin.fetchrow("SELECT * FROM device_state WHERE device_id = 'd1'"),
            lambda r: r["status"] == "ONLINE",
        )
        assert row["last_telemetry_at"] is not None
    messages = await harness.stream("pulse:device-status")
    assert [(m["status"], m["previous"]) for m in messages] == [
        ("ONLINE", "OFFLINE"),
        ("STALE", "ONLINE"),
        ("OFFLINE", "STALE"),
        ("ONLINE", "OFFLINE"),
    ]
    assert all(m["v"] == 1 and m["tenant_id"] == "acme" and m["at"].endswith("Z") for m in messages)


async def test_stale_detection_follows_the_threshold_to_within_a_fraction_of_a_second(harness: Harness) -> None:
    await seed(harness.admin, "acme", {"d1": None})
    async with harness.running() as service:
        await harness.send(observation("acme", "d1"))
        await eventually(lambda: harness.statuses("d1"), lambda s: s == ["ONLINE"])
        device = service.evaluator.tracker.devices[("acme", "d1")]
        await eventually(lambda: harness.statuses("d1"), lambda s: "STALE" in s, 3)
        stale = next(m for m in await harness.stream("pulse:device-status") if m["status"] == "STALE")
    delay = datetime.fromisoformat(stale["at"]).timestamp() - (device.last_seen + 1.0)
    assert 0 <= delay < 0.5


async def test_tenant_setting_and_device_override_change_the_stale_threshold(harness: Harness) -> None:
    await seed(harness.admin, "slow", {"s1": None, "s2": None})
    await seed(harness.admin, "fast", {"f1": None})
    await harness.admin.execute(
        "INSERT INTO settings (tenant_id, key, value) VALUES ('slow', 'evaluator.stale_after_s', $1)", json.dumps(30)
    )
    await harness.admin.execute(
        "INSERT INTO device_state (tenant_id, device_id, stale_after_s) VALUES ('slow', 's2', 1)"
    )
    async with harness.running():
        await harness.send(observation("slow", "s1"), observation("slow", "s2"), observation("fast", "f1"))
        await eventually(lambda: harness.statuses("f1"), lambda s: s == ["ONLINE", "STALE"], 3)
        await eventually(lambda: harness.statuses("s2"), lambda s: s == ["ONLINE", "STALE"], 3)
        assert await harness.statuses("s1") == ["ONLINE"]


async def test_device_state_is_written_in_a_few_multi_row_statements(harness: Harness) -> None:
    devices = {f"d{i}": "site-1" for i in range(50)}
    await seed(harness.admin, "acme", devices)
    async with harness.running(
        PULSE_EVALUATOR_FLUSH_S="0.5", PULSE_EVALUATOR_STALE_AFTER_S="30", PULSE_EVALUATOR_OFFLINE_AFTER_S="60"
    ) as service:
        await harness.send(*[observation("acme", f"d{i % 50}") for i in range(500)])
        rows = await eventually(
            lambda: harness.admin.fetch("SELECT * FROM device_state WHERE last_seen_at IS NOT NULL"),
            lambda rows: len(rows) == 50,
        )
        assert all(r["status"] == "ONLINE" for r in rows)
        assert service.evaluator.evaluated == 500
        # transitions go in with their batch (one statement per committed batch), last_seen by the flush
        assert service.evaluator.state_writes <= 6


async def test_observations_for_unknown_devices_do_not_break_state_writes(harness: Harness) -> None:
    await seed(harness.admin, "acme", {"known": None})
    async with harness.running():
        await harness.send(observation("acme", "ghost"), observation("acme", "known"))
        await eventually(lambda: harness.statuses(), lambda s: len(s) == 2)
        await eventually(
            lambda: harness.admin.fetch("SELECT device_id FROM device_state"),
            lambda rows: [r["device_id"] for r in rows] == ["known"],
        )
        await asyncio.sleep(0.3)
        pending = await harness.redis.xpending("pulse:observations", "evaluator")
        assert pending["pending"] == 0
