from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from services.common.db import Database
from services.delivery_worker.channels.snmp import engine_id_for, trap_varbinds
from services.devstack import free_port
from tests.delivery_worker import seed
from tests.delivery_worker.conftest import running_worker, wait_state
from tests.ingest.conftest import eventually

ENGINE_ID = "8001869f05" + "0102030405060708090a0b0c"
PREFIX = ".1.3.6.1.4.1.99999"

pytestmark = pytest.mark.skipif(shutil.which("snmptrapd") is None, reason="snmptrapd not installed (apt snmptrapd)")


@dataclass(frozen=True)
class TrapReceiver:
    port: int
    log: Path

    def traps(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if "1.3.6.1.6.3.1.1.4.1.0" in line]


@pytest.fixture(scope="module")
def snmptrapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrapReceiver]:
    d = tmp_path_factory.mktemp("snmptrapd")
    conf = d / "snmptrapd.conf"
    conf.write_text(
        "authCommunity log pulse-community\n"
        f"createUser -e 0x{ENGINE_ID} pulse-priv SHA auth-pass-123 AES priv-pass-123\n"
        f"createUser -e 0x{ENGINE_ID} pulse-auth SHA auth-pass-456\n"
        "authUser log pulse-priv priv\n"
        "authUser log pulse-auth auth\n"
    )
    port = free_port()
    log = d / "traps.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["snmptrapd", "-f", "-Lo", "-m", "", "-On", "-C", "-c", str(conf), f"udp:127.0.0.1:{port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SNMP_PERSISTENT_DIR": str(d)},
            cwd=d,
        )
    try:
        for _ in range(100):
            if "NET-SNMP version" in log.read_text(errors="replace"):
                break
            if proc.poll() is not None:
                raise RuntimeError(log.read_text())
            time.sleep(0.05)
        yield TrapReceiver(port, log)
    finally:
        proc.terminate()
        proc.wait(5)


async def trap_for(receiver: TrapReceiver, delivery_id: str) -> str:
    traps: list[str] = await eventually(receiver.traps, lambda ts: any(delivery_id in t for t in ts), 5)
    return next(t for t in traps if delivery_id in t)


async def deliver(
    db: Database, admin: asyncpg.Connection, receiver: TrapReceiver, config: dict, secrets: dict
) -> tuple[asyncpg.Record, str]:  # type: ignore[type-arg]
    integration_id = await seed.integration(
        admin, type="snmp", config={"host": "127.0.0.1", "port": receiver.port, **config}, secrets=secrets
    )
    job = await seed.job(admin, integration_id, device_id="olt-4", site_id="co-2", severity="CRITICAL")
    async with running_worker(db):
        await wait_state(admin, job["job_id"], "DELIVERED")
    return job, await trap_for(receiver, str(job["delivery_id"]))


@pytest.mark.integration
async def test_v2c_trap_carries_the_alert_fields_under_the_enterprise_prefix(
    db: Database, admin_conn: asyncpg.Connection, snmptrapd: TrapReceiver
) -> None:
    job, trap = await deliver(db, admin_conn, snmptrapd, {"version": "v2c"}, {"community": "pulse-community"})
    assert f"OID: {PREFIX}.0.1" in trap  # pulseAlertOpen
    assert f'{PREFIX}.1.1.1 = STRING: "{job["alert_id"]}"' in trap
    assert f'{PREFIX}.1.1.2 = STRING: "tenant-a"' in trap
    assert f'{PREFIX}.1.1.3 = STRING: "olt-4"' in trap
    assert f'{PREFIX}.1.1.4 = STRING: "co-2"' in trap
    assert f'{PREFIX}.1.1.5 = STRING: "NO_HEARTBEAT"' in trap
    assert f"{PREFIX}.1.1.6 = INTEGER: 2" in trap  # the event's severity, MAJOR
    assert f'{PREFIX}.1.1.8 = STRING: "OPEN"' in trap
    assert f'{PREFIX}.1.1.11 = STRING: "{job["delivery_id"]}"' in trap


@pytest.mark.integration
async def test_v3_auth_priv_trap_is_decrypted_by_the_receiver_with_a_custom_prefix(
    db: Database, admin_conn: asyncpg.Connection, snmptrapd: TrapReceiver
) -> None:
    config = {"version": "v3", "username": "pulse-priv", "engine_id": ENGINE_ID, "oid_prefix": "1.3.6.1.4.1.424242.7"}
    secrets = {"auth_password": "auth-pass-123", "priv_password": "priv-pass-123"}
    _job, trap = await deliver(db, admin_conn, snmptrapd, config, secrets)
    assert "OID: .1.3.6.1.4.1.424242.7.0.1" in trap
    assert '.1.3.6.1.4.1.424242.7.1.1.3 = STRING: "olt-4"' in trap


@pytest.mark.integration
async def test_v3_auth_no_priv_trap_is_accepted(
    db: Database, admin_conn: asyncpg.Connection, snmptrapd: TrapReceiver
) -> None:
    config = {"version": "v3", "username": "pulse-auth", "engine_id": ENGINE_ID, "security_level": "authNoPriv"}
    _job, trap = await deliver(db, admin_conn, snmptrapd, config, {"auth_password": "auth-pass-456"})
    assert f"OID: {PREFIX}.0.1" in trap


@pytest.mark.integration
async def test_wrong_v3_password_trap_is_dropped_by_the_receiver(
    db: Database, admin_conn: asyncpg.Connection, snmptrapd: TrapReceiver
) -> None:
    integration_id = await seed.integration(
        admin_conn,
        type="snmp",
        config={
            "host": "127.0.0.1",
            "port": snmptrapd.port,
            "version": "v3",
            "username": "pulse-priv",
            "engine_id": ENGINE_ID,
        },
        secrets={"auth_password": "not-the-password", "priv_password": "priv-pass-123"},
    )
    job = await seed.job(admin_conn, integration_id)
    async with running_worker(db):
        await wait_state(admin_conn, job["job_id"], "DELIVERED")  # UDP: sent is all a trap can know
    await asyncio.sleep(0.5)
    assert not any(str(job["delivery_id"]) in t for t in snmptrapd.traps())


@pytest.mark.unit
def test_engine_id_is_stable_per_integration_and_varbinds_follow_the_mib() -> None:
    assert engine_id_for("i-1") == engine_id_for("i-1") != engine_id_for("i-2")
    assert engine_id_for("i-1").startswith("8001869f05") and len(engine_id_for("i-1")) == 34
    trap, varbinds = trap_varbinds("1.3.6.1.4.1.99999", {"transition": "RESOLVED", "alert": {"severity": "INFO"}})
    assert trap == "1.3.6.1.4.1.99999.0.3"
    assert [oid for oid, _ in varbinds] == [f"1.3.6.1.4.1.99999.1.1.{n}" for n in range(1, 14)]
    assert int(varbinds[5][1]) == 5
