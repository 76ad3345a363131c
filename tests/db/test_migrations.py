"""The migration runner against a real server, each test on a database of its own."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services.common import constants
from services.common.migrations import DEFAULT_DIR, MigrationError, discover, migrate
from services.devstack import PostgresServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def fresh_db(pg_server: PostgresServer) -> AsyncIterator[str]:
    """The superuser URL of a new, empty database, dropped afterwards."""
    name = f"pulse_mig_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield pg_server.url(database=name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    """A copy of db/migrations that a test may change."""
    target = tmp_path / "migrations"
    shutil.copytree(DEFAULT_DIR, target)
    return target


async def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def recorded(url: str) -> list[tuple[int, str, str, object]]:
    rows = await fetch(url, "SELECT version, name, checksum, applied_at FROM pulse_schema_migrations ORDER BY version")
    return [(r["version"], r["name"], r["checksum"], r["applied_at"]) for r in rows]


async def table_exists(url: str, name: str) -> bool:
    return (await fetch(url, "SELECT to_regclass($1) IS NOT NULL AS e", name))[0]["e"]


async def test_first_run_applies_every_file_and_records_its_checksum(fresh_db: str) -> None:
    files = sorted(DEFAULT_DIR.glob("*.sql"))
    assert [p.name for p in files][:2] == ["0001_roles.sql", "0002_schema.sql"]

    applied = await migrate(fresh_db)

    assert [m.path.name for m in applied] == [p.name for p in files]
    rows = await recorded(fresh_db)
    assert [(v, n, c) for v, n, c, _ in rows] == [
        (int(p.name[:4]), p.stem[5:], hashlib.sha256(p.read_bytes()).hexdigest()) for p in files
    ]
    # the schema is owned by pulse_owner, not by the superuser that ran the migrations
    owners = await fetch(
        fresh_db,
        "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"
        " AND tablename <> 'pulse_schema_migrations'",
    )
    assert {r["tablename"] for r in owners} >= {"tenants", "devices", "alerts", "delivery_jobs", "operator_audit_log"}
    assert {r["tableowner"] for r in owners} == {constants.DB_ROLE_OWNER}


async def test_second_run_is_a_no_op(fresh_db: str) -> None:
    assert await migrate(fresh_db)
    await fetch(fresh_db, "INSERT INTO tenants (tenant_id, name) VALUES ('tenant-a', 'A') RETURNING tenant_id")
    before = await recorded(fresh_db)

    assert await migrate(fresh_db) == []

    assert await recorded(fresh_db) == before
    tenants = await fetch(fresh_db, "SELECT tenant_id, name FROM tenants")
    assert [(r["tenant_id"], r["name"]) for r in tenants] == [("tenant-a", "A")]


async def test_new_file_is_applied_alone(fresh_db: str, migrations_dir: Path) -> None:
    first = await migrate(fresh_db, migrations_dir)
    (migrations_dir / "0999_extra.sql").write_text("CREATE TABLE extra (x int);\n")

    applied = await migrate(fresh_db, migrations_dir)

    assert [m.path.name for m in applied] == ["0999_extra.sql"]
    assert [v for v, *_ in await recorded(fresh_db)] == [*(m.version for m in first), 999]
    owner = await fetch(fresh_db, "SELECT tableowner FROM pg_tables WHERE tablename = 'extra'")
    assert owner[0]["tableowner"] == constants.DB_ROLE_OWNER


async def test_changed_applied_file_is_refused(fresh_db: str, migrations_dir: Path) -> None:
    await migrate(fresh_db, migrations_dir)
    before = await recorded(fresh_db)
    schema = migrations_dir / "0002_schema.sql"
    schema.write_text(schema.read_text() + "\nCREATE TABLE sneaky (x int);\n")
    (migrations_dir / "0999_later.sql").write_text("CREATE TABLE later (x int);\n")

    with pytest.raises(MigrationError, match=r"0002_schema\.sql was changed after it was applied"):
        await migrate(fresh_db, migrations_dir)

    # nothing ran: neither the edit nor the pending file after it
    assert await recorded(fresh_db) == before
    assert not await table_exists(fresh_db, "sneaky")
    assert not await table_exists(fresh_db, "later")


async def test_applied_file_missing_from_disk_is_refused(fresh_db: str, migrations_dir: Path) -> None:
    await migrate(fresh_db, migrations_dir)
    before = await recorded(fresh_db)
    (migrations_dir / "0002_schema.sql").unlink()

    with pytest.raises(MigrationError, match=r"0002_schema\.sql was applied but is missing"):
        await migrate(fresh_db, migrations_dir)

    assert await recorded(fresh_db) == before


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("2_short.sql", r"2_short\.sql: migration files must be named NNNN_name\.sql"),
        ("0003-dash.sql", r"0003-dash\.sql: migration files must be named"),
        ("0003_Upper.sql", r"0003_Upper\.sql: migration files must be named"),
        ("0002_again.sql", r"0002_\w+\.sql: version 2 is used twice"),
    ],
    ids=["short-number", "dash", "upper-case", "duplicate-version"],
)
async def test_badly_named_file_is_refused(fresh_db: str, migrations_dir: Path, name: str, message: str) -> None:
    (migrations_dir / name).write_text("SELECT 1;\n")

    with pytest.raises(MigrationError, match=message):
        discover(migrations_dir)
    with pytest.raises(MigrationError, match=message):
        await migrate(fresh_db, migrations_dir)

    # refused before touching the database
    assert not await table_exists(fresh_db, "pulse_schema_migrations")


async def test_failing_file_is_rolled_back_and_not_recorded(fresh_db: str, migrations_dir: Path) -> None:
    await migrate(fresh_db, migrations_dir)
    broken = migrations_dir / "0999_broken.sql"
    broken.write_text("CREATE TABLE half_done (x int);\nSELECT 1 / 0;\n")

    with pytest.raises(MigrationError, match=r"0999_broken\.sql failed: division by zero"):
        await migrate(fresh_db, migrations_dir)

    assert 999 not in [v for v, *_ in await recorded(fresh_db)]
    assert not await table_exists(fresh_db, "half_done")

    broken.write_text("CREATE TABLE half_done (x int);\n")
    assert [m.path.name for m in await migrate(fresh_db, migrations_dir)] == ["0999_broken.sql"]
    assert await table_exists(fresh_db, "half_done")
