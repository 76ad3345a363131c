"""The PostgreSQL telemetry store against the real server: writes, reads, partitions, tenancy."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from services.common.db import Database
from services.common.observations import Observation, observation_id
from services.common.telemetry import InvalidObservation, StoreUnavailable, TelemetryStore, open_store
from services.common.telemetry.postgres import PostgresTelemetryStore, is_unavailable
from services.devstack import free_port

pytestmark = pytest.mark.integration

A = "tenant-a"
B = "tenant-b"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def obs(
    tenant_id: str = A,
    device_id: str = "dev-1",
    *,
    ts: datetime = T0,
    kind: str = "telemetry",
    metrics: dict[str, float] | None = None,
    seq: int | None = None,
    site_id: str | None = "site-1",
) -> Observation:
    return Observation(
        id=observation_id(tenant_id, device_id, kind, seq, iso(ts)),
        tenant_id=tenant_id,
        device_id=device_id,
        site_id=site_id,
        source="mqtt",
        kind=kind,
        ts=iso(ts),
        received_at=iso(ts + timedelta(milliseconds=250)),
        metrics={"temp_c": 20.0} if metrics is None else metrics,
        seq=seq,
    )


@pytest.fixture
async def store(db: Database) -> PostgresTelemetryStore:
    s = await open_store("postgres", database=db)
    assert isinstance(s, PostgresTelemetryStore) and isinstance(s, TelemetryStore)
    return s


async def count(admin: asyncpg.Connection, where: str = "true", *args: object) -> int:
    return int(await admin.fetchval(f"SELECT count(*) FROM telemetry WHERE {where}", *args))


async def test_written_readings_come_back_oldest_first_and_filtered(
    store: PostgresTelemetryStore, admin_conn: asyncpg.Connection
) -> None:
    batch = [obs(ts=T0 + timedelta(seconds=i), seq=i, metrics={"temp_c": 20.0 + i}) for i in range(10)]
    batch.append(obs(ts=T0 + timedelta(seconds=3, milliseconds=500), kind="heartbeat", metrics={"battery": 88.0}))
    batch.append(obs(device_id="dev-2", ts=T0, metrics={"temp_c": 99.0}))
    await store.write(batch)
    assert await count(admin_conn) == 12

    everything = await store.recent(A, "dev-1")
    assert [r.ts for r in everything] == sorted(r.ts for r in everything)
    assert len(everything) == 11 and {r.device_id for r in everything} == {"dev-1"}
    first = everything[0]
    assert (first.obs_id, first.site_id, first.kind, first.ts, first.metrics, first.seq) == (
        batch[0].id,
        "site-1",
        "telemetry",
        T0,
        {"temp_c": 20.0},
        0,
    )
    last_three = await store.recent(A, "dev-1", kind="telemetry", limit=3)
    assert [r.seq for r in last_three] == [7, 8, 9]
    since = await store.recent(A, "dev-1", since=T0 + timedelta(seconds=3))
    assert [r.kind for r in since] == ["telemetry", "heartbeat", *["telemetry"] * 6]
    assert await store.recent(A, "dev-1", kind="event") == []
    assert await store.recent(A, "nobody") == []
    with pytest.raises(InvalidObservation):
        await store.recent(A, "dev-1", kind="bogus")


async def test_latest_is_the_newest_value_of_each_metric(store: PostgresTelemetryStore) -> None:
    await store.write(
        [
            obs(ts=T0, metrics={"temp_c": 20.0, "humidity": 40.0}),
            obs(ts=T0 + timedelta(seconds=2), metrics={"temp_c": 22.5}),
            obs(ts=T0 + timedelta(seconds=1), kind="heartbeat", metrics={"battery": 90.0, "temp_c": 21.0}),
            obs(device_id="dev-2", ts=T0 + timedelta(seconds=9), metrics={"temp_c": -5.0}),
        ]
    )
    assert await store.latest(A, "dev-1") == {"temp_c": 22.5, "humidity": 40.0, "battery": 90.0}
    assert await store.latest(A, "unknown") == {}


async def test_writing_the_same_observations_again_stores_nothing_twice(
    store: PostgresTelemetryStore, admin_conn: asyncpg.Connection
) -> None:
    batch = [obs(ts=T0 + timedelta(seconds=i), seq=i) for i in range(50)]
    await store.write(batch)
    await store.write(batch)  # a redelivered batch
    await store.write([*batch[10:20], obs(ts=T0 + timedelta(seconds=99), seq=99), batch[0], batch[0]])
    assert await count(admin_conn) == 51
    assert await admin_conn.fetchval("SELECT count(DISTINCT obs_id) FROM telemetry") == 51


async def test_days_get_partitions_and_far_off_days_the_default_partition(
    store: PostgresTelemetryStore, admin_conn: asyncpg.Connection
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    near = [now - timedelta(days=1), now, now + timedelta(days=1)]
    far_past, far_future = datetime(2001, 2, 3, 4, 5, tzinfo=UTC), datetime(2099, 12, 31, 23, 59, tzinfo=UTC)
    await store.write([obs(ts=ts, seq=i) for i, ts in enumerate([*near, far_past, far_future])])

    rows = await admin_conn.fetch("SELECT tableoid::regclass::text AS part, ts FROM telemetry ORDER BY ts")
    where = {r["ts"]: r["part"] for r in rows}
    for ts in near:
        assert where[ts] == f"telemetry_p{ts:%Y%m%d}"
    assert where[far_past] == where[far_future] == "telemetry_default"

    # a day created later takes its rows out of the default partition
    assert await store.ensure_partitions(date(2001, 2, 3), 1) == 1
    assert await store.ensure_partitions(date(2001, 2, 3), 1) == 0
    moved = await admin_conn.fetchval("SELECT tableoid::regclass::text FROM telemetry WHERE ts = $1", far_past)
    assert moved == "telemetry_p20010203"
    assert await admin_conn.fetchval("SELECT count(*) FROM telemetry_default") == 1
    assert [r.ts for r in await store.recent(A, "dev-1", since=datetime(2000, 1, 1, tzinfo=UTC), limit=10)] == [
        far_past,
        *near,
        far_future,
    ]
    # the new partition is as locked down as the others
    flags = await admin_conn.fetchrow(
        "SELECT relrowsecurity, relforcerowsecurity, relowner::regrole::text AS owner FROM pg_class"
        " WHERE relname = 'telemetry_p20010203'"
    )
    assert tuple(flags) == (True, True, "pulse_owner")


async def test_only_workers_may_create_partitions_and_only_within_bounds(db: Database) -> None:
    for session in (lambda: db.tenant(A), lambda: db.operator("op", "sneak")):
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            async with session() as conn:
                await conn.fetchval("SELECT pulse_ensure_telemetry_partitions(current_date, 1)")
    for first, days in ((date(2025, 1, 1), 0), (date(2025, 1, 1), 367), (date(1800, 1, 1), 1)):
        with pytest.raises(asyncpg.exceptions.InvalidParameterValueError):
            async with db.worker() as conn:
                await conn.fetchval("SELECT pulse_ensure_telemetry_partitions($1, $2)", first, days)
    # workers may write readings but never rewrite or delete them
    for statement in ("UPDATE telemetry SET seq = 1", "DELETE FROM telemetry"):
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            async with db.worker() as conn:
                await conn.execute(statement)


async def test_a_tenant_reads_only_its_own_telemetry(
    store: PostgresTelemetryStore, db: Database, admin_conn: asyncpg.Connection
) -> None:
    # the same device and site names in both tenants
    await store.write(
        [obs(A, ts=T0, metrics={"temp_c": 1.0}), obs(B, ts=T0 + timedelta(seconds=1), metrics={"x": 2.0})]
    )
    assert [r.metrics for r in await store.recent(A, "dev-1")] == [{"temp_c": 1.0}]
    assert [r.metrics for r in await store.recent(B, "dev-1")] == [{"x": 2.0}]
    assert await store.latest(A, "dev-1") == {"temp_c": 1.0}
    async with db.tenant(A) as conn:
        assert await conn.fetchval("SELECT count(*) FROM telemetry") == 1
        assert await conn.fetchval("SELECT count(*) FROM telemetry WHERE tenant_id = $1", B) == 0
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await conn.execute("INSERT INTO telemetry SELECT * FROM telemetry")
    assert await count(admin_conn) == 2


async def test_a_batch_with_an_invalid_observation_writes_nothing(
    store: PostgresTelemetryStore, admin_conn: asyncpg.Connection
) -> None:
    good = obs()
    for bad in (
        obs(kind="bogus"),
        Observation(**{**good.to_message(), "id": "x", "ts": "not a time"}),
        Observation(**{**good.to_message(), "id": "y", "tenant_id": "bad tenant"}),
        Observation(**{**good.to_message(), "id": "z", "seq": "seven"}),  # refused by COPY's encoder
    ):
        with pytest.raises(ValueError) as err:
            await store.write([good, bad])
        assert not isinstance(err.value, StoreUnavailable)
    assert await count(admin_conn) == 0
    await store.write([obs(metrics={"ok": 1.0, "nan": float("nan"), "inf": float("-inf")})])
    assert await store.latest(A, "dev-1") == {"ok": 1.0}


def test_failures_of_server_or_connection_are_unavailable_failures_of_data_are_not() -> None:
    for exc in (
        ConnectionRefusedError(),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
        asyncpg.InterfaceError("connection is closed"),
    ):
        assert is_unavailable(exc), exc
    for exc in (
        asyncpg.exceptions.CheckViolationError("violates check constraint"),
        asyncpg.exceptions.InvalidTextRepresentationError("invalid input syntax"),
        asyncpg.exceptions.InsufficientPrivilegeError("permission denied"),
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
        ValueError("bad"),
    ):
        assert not is_unavailable(exc), exc


async def test_a_server_that_is_not_there_is_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="postgres"):
        await open_store("postgres", database_url=f"postgresql://pulse_service@127.0.0.1:{free_port()}/pulse")
