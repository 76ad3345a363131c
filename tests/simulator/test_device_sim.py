"""The device simulator against a real ui (admin API) and ingest: what it says it sent is what arrived."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from services.common.config import Secret
from services.common.db import Database
from services.common.http import serve
from services.devstack import MosquittoServer, RedisServer, free_port
from services.ingest.payload import decode_payload
from services.ingest.reasons import Rejected
from services.ui.app import create_app
from services.ui.settings import UiSettings
from simulator.devices import FleetConfig, Scenario, SimulatorError, Summary, TransportKind, run_fleet
from simulator.devices.cli import build_parser, config_from_args, main
from simulator.devices.device import MALFORMED_VARIANTS, Credentials, SimDevice, ThresholdRamp
from simulator.devices.scenarios import assign
from tests.conftest import DbUrls
from tests.ingest.conftest import Fleet, Ingest, eventually, ingest_env, running_ingest

ADMIN_KEY = "sim-test-admin-key-5c1e9a7d20b4"


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- pure logic --------------------------------------------------------------------------------


def _devices(n: int) -> list[SimDevice]:
    rng = random.Random(1)
    return [SimDevice(Credentials("t", f"d{i}", "s", "tok"), rng) for i in range(1, n + 1)]


@pytest.mark.unit
def test_each_scenario_gets_its_own_device_when_there_are_enough() -> None:
    devices = _devices(5)
    roles = {r.scenario: r.device.creds.device_id for r in assign(set(Scenario), devices)}
    assert roles == {
        Scenario.SILENT: "d5",
        Scenario.BURST: "d1",
        Scenario.THRESHOLD: "d2",
        Scenario.BAD_TOKEN: "d3",
        Scenario.MALFORMED: "d4",
    }


@pytest.mark.unit
def test_with_few_devices_the_silent_and_burst_devices_share_with_no_other_scenario() -> None:
    roles = {r.scenario: r.device.creds.device_id for r in assign(set(Scenario), _devices(3))}
    assert roles[Scenario.SILENT] == "d3" and roles[Scenario.BURST] == "d1"
    assert {roles[s] for s in (Scenario.THRESHOLD, Scenario.BAD_TOKEN, Scenario.MALFORMED)} == {"d2"}
    one = {r.scenario: r.device.creds.device_id for r in assign(set(Scenario), _devices(1))}
    assert set(one.values()) == {"d1"}


@pytest.mark.unit
def test_threshold_ramp_crosses_at_the_chosen_time_and_holds_above() -> None:
    ramp = ThresholdRamp("temp_c", 80.0, after_s=10.0)
    assert ramp.value(20.0, 9.9) < 80.0 < ramp.value(20.0, 10.1)
    assert ramp.value(20.0, 1000.0) == pytest.approx(86.0)  # overshoot by 10% of the span, then flat
    falling = ThresholdRamp("battery_v", 3.4, after_s=10.0)
    assert falling.crossed(4.1, falling.value(4.1, 10.5)) and not falling.crossed(4.1, falling.value(4.1, 9.5))


@pytest.mark.unit
def test_malformed_payloads_are_what_ingest_refuses_them_for() -> None:
    device = _devices(1)[0]
    for name, reason in MALFORMED_VARIANTS:
        msg = device.malformed(0.0, "malformed")
        assert msg.expect == reason, name
        if reason == "MISSING_SITE_ID":
            assert decode_payload(msg.body()).site_id is None
            continue
        with pytest.raises(Rejected) as refused:
            decode_payload(msg.body())
        assert refused.value.reason.value == reason, name


@pytest.mark.unit
def test_cli_takes_endpoints_and_admin_key_from_the_environment() -> None:
    env = {
        "PULSE_ADMIN_KEYS": "first-key,second-key",
        "PULSE_MQTT_URL": "mqtt://broker:1883",
        "PULSE_SIM_ADMIN_URL": "http://ui:8080/",
    }
    config = config_from_args(build_parser(env).parse_args(["--scenario", "silent", "--scenario", "burst"]))
    assert config.admin_key == "first-key" and config.mqtt_url == "mqtt://broker:1883"
    assert config.admin_url == "http://ui:8080"
    assert config.scenarios == {Scenario.SILENT, Scenario.BURST}
    env["PULSE_SIM_ADMIN_KEY"] = "sim-key"
    args = build_parser(env).parse_args(["--transport", "http-batch", "--tenants", "4", "--devices", "12"])
    config = config_from_args(args)
    assert config.admin_key == "sim-key" and config.transport is TransportKind.HTTP_BATCH
    assert config.tenant_ids() == ["sim-1", "sim-2", "sim-3", "sim-4"] and config.device_ids()[-1] == "dev-012"


@pytest.mark.unit
def test_bad_options_are_refused_before_anything_is_sent(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rate", "0", "--tenant-prefix", "bad/prefix"]) == 2
    err = capsys.readouterr().err
    assert "--rate must be above 0" in err and "--tenant-prefix" in err


@pytest.mark.unit
def test_an_unreachable_admin_api_is_named_with_what_to_start() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "simulator.devices", "--admin-url", url, "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert f"admin API (ui service) unreachable at {url}" in done.stderr
    assert "pulse dev" in done.stderr and "--admin-url" in done.stderr


# --- against the real platform -------------------------------------------------------------------


@dataclass
class Platform:
    ingest: Ingest
    admin_url: str
    redis: aioredis.Redis
    admin: asyncpg.Connection

    def config(self, transport: TransportKind, **overrides: Any) -> FleetConfig:
        values: dict[str, Any] = {
            "transport": transport,
            "admin_url": self.admin_url,
            "ingest_url": self.ingest.base_url,
            "mqtt_url": self.ingest.mqtt_url,
            "admin_key": ADMIN_KEY,
            "progress_every_s": 1.0,
            "seed": 7,
        }
        return FleetConfig(**(values | overrides))

    async def observations(self) -> list[dict[str, Any]]:
        return await self.ingest.observations()

    async def rejections(self) -> Counter[str]:
        rows = await self.ingest.quarantined()
        return Counter(r["reason"] for r in rows)


@asynccontextmanager
async def running_ui(db: Database, redis_server: RedisServer) -> AsyncIterator[str]:
    settings = UiSettings(admin_keys=[Secret(ADMIN_KEY)])
    redis = aioredis.from_url(redis_server.url())
    stop = asyncio.Event()
    port = free_port()
    task = asyncio.create_task(serve(create_app(settings, db, redis), "127.0.0.1", port, stop))
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as probe:

            async def up() -> bool:
                try:
                    return (await probe.get(f"{url}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, bool, 10)
        yield url
    finally:
        stop.set()
        await task
        await redis.aclose()


@pytest.fixture
async def platform(
    db_urls: DbUrls,
    redis_server: RedisServer,
    mqtt_server: MosquittoServer,
    admin_conn: asyncpg.Connection,
    redis_client: aioredis.Redis,
    db: Database,
) -> AsyncIterator[Platform]:
    # a low rate limit, so that a burst is over it however slowly a loaded machine sends it;
    # the fleet's steady traffic (at most 8 msg/s per device in these tests) stays under it
    env = ingest_env(db_urls, redis_server, mqtt_server, PULSE_INGEST_RATE_PER_S="10", PULSE_INGEST_BURST="20")
    async with (
        running_ingest(env, admin_conn, redis_client, Fleet()) as ingest,
        running_ui(db, redis_server) as admin_url,
    ):
        yield Platform(ingest, admin_url, redis_client, admin_conn)


def _record(summary: Summary, scenario: Scenario, tenant_id: str) -> dict[str, Any]:
    return next(r for r in summary.scenarios if r["scenario"] == scenario.value and r["tenant_id"] == tenant_id)


@pytest.mark.integration
@pytest.mark.parametrize("transport", list(TransportKind), ids=[t.value for t in TransportKind])
async def test_a_provisioned_fleet_with_every_scenario_arrives_as_the_summary_says(
    platform: Platform, transport: TransportKind
) -> None:
    config = platform.config(
        transport,
        tenants=2,
        devices=3,
        rate=5.0,
        heartbeat_every_s=1.0,
        duration_s=3.0,
        scenarios=frozenset(Scenario),
        silent_after_s=1.5,
        threshold_after_s=1.0,
        fault_every_s=0.5,
        burst_at_s=1.0,
        burst_count=150,
    )
    lines: list[str] = []
    summary = await run_fleet(config, asyncio.Event(), say=lines.append)
    print("\n".join(lines), summary.render(), sep="\n")  # shown when the test fails
    totals = summary.totals
    assert summary.stopped_by == "duration" and summary.errors == 0, summary.render()
    assert summary.provisioning["devices_activated"] == 6 and summary.provisioning["tenants_created"] == 2
    assert any("sent" in line and "target" in line for line in lines)  # progress lines

    # everything sent is accounted for: accepted into the stream or refused into quarantine
    def accounted(counts: tuple[list[dict[str, Any]], Counter[str]]) -> bool:
        return len(counts[0]) + sum(counts[1].values()) >= totals.delivered

    async def fetch() -> tuple[list[dict[str, Any]], Counter[str]]:
        return await platform.observations(), await platform.rejections()

    observations, rejections = await eventually(fetch, accounted, 15)
    assert totals.delivered == totals.sent
    assert len(observations) + sum(rejections.values()) == totals.sent
    if summary.stats.outcome_known:
        assert len(observations) == totals.accepted
        assert rejections == totals.rejected
        for tag, tally in summary.by_scenario.items():
            if tag in ("bad-token", "malformed"):  # built to be refused, for exactly these reasons
                assert tally.rejected == tally.expected and tally.accepted == 0, tag

    # bad tokens and broken payloads: quarantined with the reasons the simulator promised
    expected = summary.by_scenario["malformed"].expected + summary.by_scenario["bad-token"].expected
    assert expected["TOKEN_INVALID"] >= 8 and expected["MALFORMED_JSON"] >= 4
    for reason, n in expected.items():
        assert rejections[reason] == n, reason
    # the burst went over the rate limit: refused in part
    burst = summary.by_scenario["burst"]
    assert burst.sent == 2 * 150 and rejections["RATE_LIMITED"] > 0

    by_device = Counter(f"{o['tenant_id']}/{o['device_id']}" for o in observations)
    assert set(by_device) == {f"sim-{t}/dev-00{d}" for t in (1, 2) for d in (1, 2, 3)}
    for tenant_id in summary.tenants:
        # the silent device's last reading comes before its silence point; the others go on after it
        silent = _record(summary, Scenario.SILENT, tenant_id)
        silent_at = _ts(silent["silent_at"])
        own = [o for o in observations if o["tenant_id"] == tenant_id and o["device_id"] == silent["device_id"]]
        assert own and max(_ts(o["ts"]) for o in own) < silent_at + timedelta(seconds=0.25)  # send lag
        assert max(o["seq"] for o in own) == silent["last_seq"] == summary.stats.devices[f"{tenant_id}/dev-003"].sent
        assert any(_ts(o["ts"]) > silent_at for o in observations if o["tenant_id"] == tenant_id)
        # steady pacing: 5/s for 1.5 s plus heartbeats at 0 and 1 s
        assert len(own) in (9, 10)
        # the threshold device's temperature went over 80 around the ramp time, and ingest took it
        crossing = _record(summary, Scenario.THRESHOLD, tenant_id)
        assert crossing["crossed_at_s"] == pytest.approx(1.1, abs=0.3)
        hot = [
            o
            for o in observations
            if o["tenant_id"] == tenant_id
            and o["device_id"] == crossing["device_id"]
            and o["metrics"].get("temp_c", 0) > 80
        ]
        assert hot and crossing["crossed_value"] > 80


@pytest.mark.integration
async def test_a_second_run_reuses_tenants_and_devices_with_fresh_tokens(platform: Platform) -> None:
    config = platform.config(TransportKind.HTTP, tenants=1, devices=3, rate=4.0, duration_s=0.6)
    first = await run_fleet(config, asyncio.Event())
    second = await run_fleet(config, asyncio.Event())
    assert first.provisioning["devices_registered"] == 3
    assert second.provisioning["tenants_existing"] == 1 and second.provisioning["devices_existing"] == 3
    assert second.provisioning["devices_activated"] == 3
    for run in (first, second):
        assert run.totals.sent > 0 and run.totals.accepted == run.totals.sent, run.render()


@pytest.mark.integration
async def test_a_wrong_admin_key_is_reported_as_such(platform: Platform) -> None:
    config = platform.config(TransportKind.HTTP, admin_key="not-the-key", duration_s=1.0)
    with pytest.raises(SimulatorError, match="refused the admin key"):
        await run_fleet(config, asyncio.Event())


@pytest.mark.integration
async def test_the_command_runs_until_sigterm_and_prints_its_summary_as_json(platform: Platform) -> None:
    args = [
        *("--tenants", "1", "--devices", "3", "--rate", "2", "--duration", "0", "--json"),
        *("--admin-url", platform.admin_url, "--ingest-url", platform.ingest.base_url),
        *("--mqtt-url", platform.ingest.mqtt_url, "--progress-every", "0.5"),
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator.devices",
        *args,
        env={**os.environ, "PULSE_SIM_ADMIN_KEY": ADMIN_KEY},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None and proc.stdout is not None
    progress: list[str] = []
    while not any("sent" in line and "target" in line for line in progress):
        line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        assert line, "the simulator exited early: " + "".join(progress)
        progress.append(line)
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, "".join(progress) + err.decode()
    summary = json.loads(out)
    assert summary["stopped_by"] == "stop"
    assert summary["totals"]["sent"] >= 3 and summary["totals"]["errors"] == {}
    assert sorted(summary["per_device"]) == ["sim-1/dev-001", "sim-1/dev-002", "sim-1/dev-003"]
    observations = await platform.ingest.wait_observations(summary["totals"]["sent"])
    assert {o["device_id"] for o in observations} == {"dev-001", "dev-002", "dev-003"}


@pytest.mark.integration
async def test_an_unreachable_broker_is_named_after_the_fleet_is_provisioned(platform: Platform) -> None:
    config = platform.config(TransportKind.MQTT, mqtt_url=f"mqtt://127.0.0.1:{free_port()}", duration_s=1.0)
    with pytest.raises(SimulatorError, match=r"MQTT broker unreachable at mqtt://127\.0\.0\.1:\d+"):
        await run_fleet(config, asyncio.Event())
