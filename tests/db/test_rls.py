"""Tenant isolation through the real server: row level security, roles and grants of 0002_schema.sql.

Tenant tables are discovered from the catalog (every table with a tenant_id column), so a table
added later is covered by these tests as soon as it exists; `seed_tenant` must then be taught to fill it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from services.common import constants
from services.common.db import Conn, Database

pytestmark = pytest.mark.integration

A = "tenant-a"
B = "tenant-b"
ROLES = (constants.DB_ROLE_APP, constants.DB_ROLE_OPERATOR, constants.DB_ROLE_WORKER)
# tables whose rows may have tenant_id NULL (global / unknown tenant), and whether customers see those
NULL_TENANT_VISIBLE_TO_CUSTOMER = {"settings": True, "quarantine_events": False, "quarantine_counters": False}


async def tenant_tables(conn: asyncpg.Connection) -> list[str]:
    """Every ordinary or partitioned table of the public schema with a tenant_id column."""
    rows = await conn.fetch(
        """SELECT c.relname FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
            ORDER BY c.relname"""
    )
    return [r["relname"] for r in rows]


async def seed_tenant(conn: asyncpg.Connection, t: str) -> None:
    """One row or more for tenant `t` in every tenant table (as the superuser: RLS does not apply)."""
    await conn.execute("INSERT INTO tenants (tenant_id, name) VALUES ($1, $2)", t, f"Tenant {t}")
    await conn.execute(
        "INSERT INTO devices (tenant_id, device_id, site_id, status, token_hash, activated_at)"
        " VALUES ($1, 'dev-1', 'site-1', 'active', $2, now()), ($1, 'dev-2', 'site-2', 'provisioned', NULL, NULL)",
        t,
        f"hash-{t}",
    )
    await conn.execute(
        "INSERT INTO device_token_history (tenant_id, device_id, token_hash, reason)"
        " VALUES ($1, 'dev-1', $2, 'provisioned')",
        t,
        f"hash-{t}",
    )
    await conn.execute(
        "INSERT INTO device_state (tenant_id, device_id, status, last_seen_at, metrics)"
        " VALUES ($1, 'dev-1', 'ONLINE', now(), $2)",
        t,
        json.dumps({"temp_c": 21.5}),
    )
    rule_id = await conn.fetchval(
        "INSERT INTO alert_rules (tenant_id, name, metric, comparison, threshold, clear_threshold, severity)"
        " VALUES ($1, 'hot', 'temp_c', '>', 30, 28, 'MAJOR') RETURNING rule_id",
        t,
    )
    alert_id = await conn.fetchval(
        "INSERT INTO alerts (tenant_id, device_id, site_id, rule_id, fingerprint, alert_type, severity, summary)"
        " VALUES ($1, 'dev-1', 'site-1', $2, 'dev-1:hot', 'THRESHOLD', 'MAJOR', 'too hot') RETURNING alert_id",
        t,
        rule_id,
    )
    event_id = await conn.fetchval(
        "INSERT INTO alert_events (tenant_id, alert_id, status, severity) VALUES ($1, $2, 'OPEN', 'MAJOR')"
        " RETURNING event_id",
        t,
        alert_id,
    )
    integration_id = await conn.fetchval(
        "INSERT INTO integrations (tenant_id, name, type, config, secrets) VALUES ($1, 'hook', 'webhook', $2, $3)"
        " RETURNING integration_id",
        t,
        json.dumps({"url": "https://example.com/hook"}),
        json.dumps({"hmac_secret": f"secret-of-{t}"}),
    )
    route_id = await conn.fetchval(
        "INSERT INTO integration_routes (tenant_id, integration_id, min_severity) VALUES ($1, $2, 'MINOR')"
        " RETURNING route_id",
        t,
        integration_id,
    )
    job_id = await conn.fetchval(
        "INSERT INTO delivery_jobs (tenant_id, event_id, alert_id, integration_id, route_id, attempts)"
        " VALUES ($1, $2, $3, $4, $5, 1) RETURNING job_id",
        t,
        event_id,
        alert_id,
        integration_id,
        route_id,
    )
    await conn.execute(
        "INSERT INTO delivery_attempts (tenant_id, job_id, attempt_no, duration_ms, outcome, status_code, error)"
        " VALUES ($1, $2, 1, 12, 'retry', 503, 'unavailable')",
        t,
        job_id,
    )
    await conn.execute(
        "INSERT INTO quarantine_events (tenant_id, device_id, source, reason, topic)"
        " VALUES ($1, 'dev-9', 'mqtt', 'bad_token', $2)",
        t,
        f"tenant/{t}/device/dev-9/telemetry",
    )
    await conn.execute(
        "INSERT INTO quarantine_counters (tenant_id, minute, reason, count)"
        " VALUES ($1, '2025-01-01T00:00:00Z', 'bad_token', 3)",
        t,
    )
    await conn.execute("INSERT INTO settings (tenant_id, key, value) VALUES ($1, 'stale_after_s', '120')", t)
    await conn.execute(
        "INSERT INTO telemetry (tenant_id, device_id, site_id, kind, ts, received_at, obs_id, seq, metrics)"
        " VALUES ($1, 'dev-1', 'site-1', 'telemetry', '2025-01-01T00:00:00Z', '2025-01-01T00:00:01Z', $2, 1, $3)",
        t,
        f"obs-{t}",
        json.dumps({"temp_c": 21.5}),
    )


async def seed_global(conn: asyncpg.Connection) -> None:
    """Rows with tenant_id NULL: a global setting and rejects from an unknown tenant."""
    await conn.execute("INSERT INTO settings (tenant_id, key, value) VALUES (NULL, 'stale_after_s', '300')")
    await conn.execute(
        "INSERT INTO quarantine_events (tenant_id, source, reason, payload_excerpt)"
        " VALUES (NULL, 'http', 'unknown_tenant', '{}')"
    )
    await conn.execute(
        "INSERT INTO quarantine_counters (tenant_id, minute, reason, count)"
        " VALUES (NULL, '2025-01-01T00:00:00Z', 'unknown_tenant', 1)"
    )


@pytest.fixture
async def seeded(admin_conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    await seed_tenant(admin_conn, A)
    await seed_tenant(admin_conn, B)
    await seed_global(admin_conn)
    yield admin_conn


@pytest.fixture
async def tables(seeded: asyncpg.Connection) -> list[str]:
    found = await tenant_tables(seeded)
    assert len(found) >= 13
    for t in found:
        owners = {r["tenant_id"] for r in await seeded.fetch(f"SELECT DISTINCT tenant_id FROM {t}")}
        assert {A, B} <= owners, f"seed_tenant() puts no rows for both tenants in {t}: teach it the new table"
    return found


async def tenant_counts(conn: asyncpg.Connection | Conn, table: str) -> dict[str | None, int]:
    rows = await conn.fetch(f"SELECT tenant_id, count(*) AS n FROM {table} GROUP BY tenant_id")
    return {r["tenant_id"]: r["n"] for r in rows}


def insert_copy_sql(table: str, columns: list[str], src: str, dst: str) -> str:
    """INSERT a copy of one of `src`'s rows of `table` (as the caller sees them) re-labelled to tenant `dst`."""
    names = ", ".join(columns)
    values = ", ".join(f"'{dst}'" if c == "tenant_id" else c for c in columns)
    return f"INSERT INTO {table} ({names}) SELECT {values} FROM {table} WHERE tenant_id = '{src}' LIMIT 1"


async def insertable_columns(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        """SELECT column_name FROM information_schema.columns
            WHERE table_schema = 'public' AND table_name = $1 AND is_identity = 'NO' AND is_generated = 'NEVER'
            ORDER BY ordinal_position""",
        table,
    )
    return [r["column_name"] for r in rows]


class _Rollback(Exception):
    pass


async def blind(conn: Conn, statement: str, *args: object) -> str:
    """Run `statement` in a savepoint that is rolled back; return its status ("UPDATE 2")."""
    status = ""
    try:
        async with conn.transaction():
            status = await conn.execute(statement, *args)
            raise _Rollback
    except _Rollback:
        pass
    return status


async def snapshot(conn: asyncpg.Connection, table: str, tenant_id: str) -> list[str]:
    rows = await conn.fetch(f"SELECT to_jsonb(x)::text AS j FROM {table} x WHERE tenant_id = $1 ORDER BY 1", tenant_id)
    return [r["j"] for r in rows]


# --- the customer role ----------------------------------------------------------------------


async def test_each_tenant_reads_only_its_own_rows_in_every_tenant_table(
    db: Database, seeded: asyncpg.Connection, tables: list[str]
) -> None:
    for me, other in ((A, B), (B, A)):
        for table in tables:
            expected = await seeded.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", me)
            if NULL_TENANT_VISIBLE_TO_CUSTOMER.get(table):
                expected += await seeded.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id IS NULL")
            async with db.tenant(me) as conn:
                seen = await tenant_counts(conn, table)
                assert other not in seen, f"{me} reads {other}'s rows in {table}"
                by_other = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", other)
            assert by_other == 0, table
            assert set(seen) <= {me, None}, (table, seen)
            assert (None in seen) == bool(NULL_TENANT_VISIBLE_TO_CUSTOMER.get(table)), (table, seen)
            assert seen.get(me, 0) > 0, table
            assert sum(seen.values()) == expected, table


async def test_tenant_cannot_insert_rows_for_another_tenant(
    db: Database, seeded: asyncpg.Connection, tables: list[str]
) -> None:
    before = {t: await snapshot(seeded, t, B) for t in tables}
    for table in tables:
        columns = await insertable_columns(seeded, table)
        granted = await seeded.fetchval("SELECT has_table_privilege($1, $2, 'INSERT')", constants.DB_ROLE_APP, table)
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError) as err:
            async with db.tenant(A) as conn:
                await conn.execute(insert_copy_sql(table, columns, A, B))
        # where the grant allows INSERT, the row level security policy is what refuses it
        expected = "row-level security" if granted else "permission denied"
        assert expected in str(err.value), (table, str(err.value))
    assert {t: await snapshot(seeded, t, B) for t in tables} == before


async def test_tenant_cannot_update_or_delete_another_tenants_rows(
    db: Database, seeded: asyncpg.Connection, tables: list[str]
) -> None:
    before = {t: await snapshot(seeded, t, B) for t in tables}
    checked_update = checked_move = checked_delete = 0
    for table in tables:
        updatable = await seeded.fetch(
            """SELECT column_name FROM information_schema.columns
                WHERE table_schema = 'public' AND table_name = $1
                  AND has_column_privilege($2, format('%I', table_name), column_name, 'UPDATE')
                ORDER BY ordinal_position""",
            table,
            constants.DB_ROLE_APP,
        )
        columns = [r["column_name"] for r in updatable]
        if not columns:
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                async with db.tenant(A) as conn:
                    await conn.execute(f"UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = $1", B)
            continue
        col = columns[-1]
        async with db.tenant(A) as conn:
            own = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", A)
            assert own > 0, table
            # a statement that reads the rows it updates: only the tenant's own rows qualify
            assert await conn.execute(f"UPDATE {table} SET {col} = {col} WHERE tenant_id = $1", B) == "UPDATE 0"
            assert await conn.execute(f"UPDATE {table} SET {col} = {col} WHERE tenant_id = $1", A) == f"UPDATE {own}"
            # a blind one (no column read, so only the UPDATE policy applies) as well; rolled back
            value = await conn.fetchval(f"SELECT {col} FROM {table} WHERE tenant_id = $1 LIMIT 1", A)
            assert await blind(conn, f"UPDATE {table} SET {col} = $1", value) == f"UPDATE {own}", table
        checked_update += 1
        if "tenant_id" in columns:  # moving an own row to the other tenant breaks WITH CHECK
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match="row-level security"):
                async with db.tenant(A) as conn:
                    await conn.execute(f"UPDATE {table} SET tenant_id = $1 WHERE tenant_id = $2", B, A)
            checked_move += 1
        if await seeded.fetchval("SELECT has_table_privilege($1, $2, 'DELETE')", constants.DB_ROLE_APP, table):
            async with db.tenant(A) as conn:
                assert await conn.execute(f"DELETE FROM {table} WHERE tenant_id = $1", B) == "DELETE 0"
                assert await blind(conn, f"DELETE FROM {table}") == f"DELETE {own}", table
            checked_delete += 1
    assert checked_update >= 6 and checked_move >= 5 and checked_delete >= 5
    assert {t: await snapshot(seeded, t, B) for t in tables} == before


async def test_customer_writes_within_its_own_tenant(db: Database, seeded: asyncpg.Connection) -> None:
    async with db.tenant(A) as conn:
        await conn.execute("INSERT INTO devices (tenant_id, device_id, kind) VALUES ($1, 'dev-new', 'energy')", A)
        alert_id = await conn.fetchval("SELECT alert_id FROM alerts")
        acked = await conn.execute(
            "UPDATE alerts SET status = 'ACKNOWLEDGED', acknowledged_by = 'carol', acknowledged_at = now()"
            " WHERE alert_id = $1",
            alert_id,
        )
        assert acked == "UPDATE 1"
        await conn.execute(
            "INSERT INTO alert_events (tenant_id, alert_id, status, severity) VALUES ($1, $2, 'ACKNOWLEDGED', 'MAJOR')",
            A,
            alert_id,
        )
    kind = await seeded.fetchval("SELECT kind FROM devices WHERE tenant_id = $1 AND device_id = 'dev-new'", A)
    assert kind == "energy"
    assert await seeded.fetchval("SELECT status FROM alerts WHERE alert_id = $1", alert_id) == "ACKNOWLEDGED"
    # customers acknowledge and resolve alerts, but do not rewrite what the evaluator recorded
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        async with db.tenant(A) as conn:
            await conn.execute("UPDATE alerts SET severity = 'INFO'")


async def test_customer_reads_global_settings_but_writes_only_its_own(db: Database, seeded: asyncpg.Connection) -> None:
    async with db.tenant(A) as conn:
        rows = await conn.fetch("SELECT tenant_id, value FROM settings WHERE key = 'stale_after_s' ORDER BY tenant_id")
        assert [(r["tenant_id"], r["value"]) for r in rows] == [(A, 120), (None, 300)]
        assert await conn.execute("UPDATE settings SET value = '1' WHERE tenant_id IS NULL") == "UPDATE 0"
        assert await conn.execute("DELETE FROM settings WHERE tenant_id IS NULL") == "DELETE 0"
        await conn.execute("INSERT INTO settings (tenant_id, key, value) VALUES ($1, 'offline_after_s', '600')", A)
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match="row-level security"):
        async with db.tenant(A) as conn:
            await conn.execute("INSERT INTO settings (tenant_id, key, value) VALUES (NULL, 'offline_after_s', '1')")
    assert await seeded.fetchval("SELECT value FROM settings WHERE tenant_id IS NULL") == "300"
    assert await seeded.fetchval("SELECT count(*) FROM settings WHERE tenant_id = $1", A) == 2


async def test_customer_role_without_tenant_setting_reads_nothing(
    db_urls, seeded: asyncpg.Connection, tables: list[str]
) -> None:
    conn = await asyncpg.connect(db_urls.service)
    try:
        # never set in this session: current_setting(..., true) is NULL
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {constants.DB_ROLE_APP}")
            assert await conn.fetchval("SELECT current_setting($1, true)", constants.TENANT_SETTING) is None
            for table in tables:
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        # set by an earlier transaction: afterwards the setting is '' rather than NULL
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {constants.DB_ROLE_APP}")
            await conn.execute("SELECT set_config($1, $2, true)", constants.TENANT_SETTING, A)
            assert await conn.fetchval("SELECT count(*) FROM devices") == 2
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {constants.DB_ROLE_APP}")
            assert await conn.fetchval("SELECT current_setting($1, true)", constants.TENANT_SETTING) == ""
            for table in tables:
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match="row-level security"):
                await conn.execute("INSERT INTO devices (tenant_id, device_id) VALUES ($1, 'x')", A)
        # the login role itself holds no rights at all
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await conn.fetchval("SELECT count(*) FROM devices")
    finally:
        await conn.close()


# --- roles, workers and operators -----------------------------------------------------------


async def test_roles_are_not_privileged(admin_conn: asyncpg.Connection) -> None:
    rows = await admin_conn.fetch(
        "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = ANY($1)",
        [*ROLES, constants.DB_ROLE_ADMIN, constants.DB_ROLE_OWNER, constants.DB_ROLE_SERVICE],
    )
    assert len(rows) == 6
    for r in rows:
        assert not (r["rolsuper"] or r["rolbypassrls"] or r["rolcreaterole"] or r["rolcreatedb"]), dict(r)
    # nothing is granted to PUBLIC on any table
    public = await admin_conn.fetchval(
        """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                  aclexplode(c.relacl) acl
            WHERE n.nspname = 'public' AND acl.grantee = 0"""
    )
    assert public == 0


async def test_worker_reads_every_tenant(db: Database, seeded: asyncpg.Connection, tables: list[str]) -> None:
    for table in tables:
        if not await seeded.fetchval("SELECT has_table_privilege($1, $2, 'SELECT')", constants.DB_ROLE_WORKER, table):
            assert table == "quarantine_events", f"pulse_worker cannot read {table}"
            continue
        async with db.worker() as conn:
            assert await conn.fetchval("SELECT current_user") == constants.DB_ROLE_WORKER
            seen = await tenant_counts(conn, table)
        assert seen == await tenant_counts(seeded, table), table


async def test_worker_writes_what_the_pipeline_needs_for_any_tenant(db: Database, seeded: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    async with db.worker() as conn:
        for t in (A, B):
            await conn.execute(
                "UPDATE device_state SET status = 'STALE', status_changed_at = $2 WHERE tenant_id = $1", t, now
            )
            await conn.execute(
                "INSERT INTO quarantine_events (tenant_id, source, reason) VALUES ($1, 'http', 'rate_limited')", t
            )
        await conn.execute(
            """INSERT INTO quarantine_counters AS q (tenant_id, minute, reason, count)
               VALUES (NULL, '2025-01-01T00:00:00Z', 'unknown_tenant', 4)
               ON CONFLICT (tenant_id, minute, reason) DO UPDATE SET count = q.count + EXCLUDED.count"""
        )
    assert await seeded.fetchval("SELECT count(*) FROM device_state WHERE status = 'STALE'") == 2
    assert await seeded.fetchval("SELECT count FROM quarantine_counters WHERE tenant_id IS NULL") == 5
    # children point at parents of the same tenant only, whoever writes them
    with pytest.raises(asyncpg.exceptions.ForeignKeyViolationError):
        async with db.worker() as conn:
            b_alert = await conn.fetchval("SELECT alert_id FROM alerts WHERE tenant_id = $1", B)
            await conn.execute(
                "INSERT INTO alert_events (tenant_id, alert_id, status, severity) VALUES ($1, $2, 'OPEN', 'INFO')",
                A,
                b_alert,
            )
    # workers do not manage customer configuration
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        async with db.worker() as conn:
            await conn.execute("DELETE FROM integrations")


@pytest.mark.parametrize("role", [*ROLES, constants.DB_ROLE_ADMIN])
async def test_roles_cannot_truncate_or_create_tables(db_urls, seeded: asyncpg.Connection, role: str) -> None:
    conn = await asyncpg.connect(db_urls.service)
    try:
        for statement in ("TRUNCATE devices", "TRUNCATE tenants CASCADE", "CREATE TABLE sneaky (x int)"):
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL ROLE {role}")
                    await conn.execute(statement)
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute(f"SET LOCAL ROLE {role}")
                await conn.execute("ALTER TABLE devices DISABLE ROW LEVEL SECURITY")
    finally:
        await conn.close()
    assert await seeded.fetchval("SELECT count(*) FROM devices") == 4
    assert await seeded.fetchval("SELECT to_regclass('sneaky')") is None


async def test_operator_reads_across_tenants_and_each_use_is_audited(
    db: Database, seeded: asyncpg.Connection, tables: list[str]
) -> None:
    async with db.operator("op-alice", "list-devices", detail={"page": 1}) as conn:
        assert await conn.fetchval("SELECT current_user") == constants.DB_ROLE_OPERATOR
        for table in tables:
            assert await tenant_counts(conn, table) == await tenant_counts(seeded, table), table
    async with db.operator("op-bob", "view-tenant", target_tenant_id=B) as conn:
        assert await conn.fetchval("SELECT count(*) FROM alerts WHERE tenant_id = $1", B) == 1
    rows = await seeded.fetch("SELECT actor, action, target_tenant_id, detail, at FROM operator_audit_log ORDER BY id")
    assert [(r["actor"], r["action"], r["target_tenant_id"]) for r in rows] == [
        ("op-alice", "list-devices", None),
        ("op-bob", "view-tenant", B),
    ]
    assert json.loads(rows[0]["detail"]) == {"page": 1}
    assert all(r["at"] is not None for r in rows)


async def test_operator_cannot_write_tenant_tables_or_read_secrets(
    db: Database, seeded: asyncpg.Connection, tables: list[str]
) -> None:
    before = {t: await tenant_counts(seeded, t) for t in tables}
    for table in tables:
        columns = await insertable_columns(seeded, table)
        for statement in (
            insert_copy_sql(table, columns, A, A),
            f"UPDATE {table} SET tenant_id = tenant_id",
            f"DELETE FROM {table}",
        ):
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match="permission denied"):
                async with db.operator("op-eve", "tamper") as conn:
                    await conn.execute(statement)
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match="permission denied"):
        async with db.operator("op-eve", "peek") as conn:
            await conn.fetch("SELECT secrets FROM integrations")
    # the audit log is append-only, even for operators
    async with db.operator("op-eve", "audit") as conn:
        assert await conn.fetchval("SELECT count(*) FROM operator_audit_log") == 1
    for statement in ("UPDATE operator_audit_log SET actor = 'nobody'", "DELETE FROM operator_audit_log"):
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            async with db.operator("op-eve", "cover-up") as conn:
                await conn.execute(statement)
    assert {t: await tenant_counts(seeded, t) for t in tables} == before
    # failed operator transactions roll their audit row back with them; the successful one stays
    assert await seeded.fetchval("SELECT count(*) FROM operator_audit_log") == 1


async def test_admin_role_provisions_across_tenants_but_only_that(db: Database, seeded: asyncpg.Connection) -> None:
    tables = await tenant_tables(seeded)
    async with db.admin("admin-key:test", "provision", target_tenant_id=B) as conn:
        assert await conn.fetchval("SELECT current_user") == constants.DB_ROLE_ADMIN
        for table in ("tenants", "devices", "device_token_history", "settings"):
            assert await tenant_counts(conn, table) == await tenant_counts(seeded, table), table
        await conn.execute("INSERT INTO tenants (tenant_id, name) VALUES ('tenant-c', 'C')")
        await conn.execute("INSERT INTO devices (tenant_id, device_id, site_id) VALUES ($1, 'dev-9', 's')", B)
        await conn.execute("UPDATE devices SET status = 'revoked', revoked_at = now() WHERE tenant_id = $1", A)
        await conn.execute("UPDATE device_token_history SET retired_at = now(), reason = 'revoked'")
        await conn.execute("UPDATE settings SET value = '60' WHERE tenant_id IS NULL")
    assert await seeded.fetchval("SELECT count(*) FROM devices WHERE status = 'revoked'") == 2
    rows = await seeded.fetch("SELECT actor, action, target_tenant_id FROM operator_audit_log")
    assert [tuple(r.values()) for r in rows] == [("admin-key:test", "provision", B)]
    # nothing else: no other tenant table, no deletes of tenants, devices or token history, no audit reads
    denied = [
        f"SELECT count(*) FROM {t}"
        for t in tables
        if t not in {"tenants", "devices", "device_token_history", "settings"}
    ]
    denied += [
        "DELETE FROM tenants",
        "DELETE FROM devices",
        "DELETE FROM device_token_history",
        "SELECT count(*) FROM operator_audit_log",
        "UPDATE operator_audit_log SET actor = 'nobody'",
    ]
    for statement in denied:
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match="permission denied"):
            async with db.admin("admin-key:test", "tamper") as conn:
                await conn.execute(statement)
    assert await seeded.fetchval("SELECT count(*) FROM operator_audit_log") == 1


async def test_customers_and_workers_cannot_touch_the_audit_log(db: Database, seeded: asyncpg.Connection) -> None:
    for session in (lambda: db.tenant(A), db.worker):
        for statement in (
            "SELECT count(*) FROM operator_audit_log",
            "INSERT INTO operator_audit_log (actor, action) VALUES ('me', 'forged')",
        ):
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                async with session() as conn:
                    await conn.execute(statement)
    assert await seeded.fetchval("SELECT count(*) FROM operator_audit_log") == 0


# --- schema guarantees ----------------------------------------------------------------------


async def test_one_unresolved_alert_per_tenant_and_fingerprint(db: Database, admin_conn: asyncpg.Connection) -> None:
    await admin_conn.execute("INSERT INTO tenants (tenant_id, name) VALUES ($1, 'A'), ($2, 'B')", A, B)
    insert = (
        "INSERT INTO alerts (tenant_id, device_id, fingerprint, alert_type, severity, status, resolved_at,"
        " acknowledged_at) VALUES ($1, 'dev-1', 'dev-1:offline', 'NO_HEARTBEAT', 'CRITICAL', $2, $3,"
        " CASE WHEN $2 = 'ACKNOWLEDGED' THEN now() END) RETURNING alert_id"
    )
    async with db.worker() as conn:
        first = await conn.fetchval(insert, A, "OPEN", None)
    for status in ("OPEN", "ACKNOWLEDGED"):
        with pytest.raises(asyncpg.exceptions.UniqueViolationError, match="alerts_open_fingerprint_key"):
            async with db.worker() as conn:
                await conn.fetchval(insert, A, status, None)
    now = datetime.now(UTC)
    async with db.worker() as conn:
        await conn.fetchval(insert, B, "OPEN", None)  # another tenant's fingerprints are its own
        await conn.fetchval(insert, A, "RESOLVED", now)  # any number of resolved ones
        await conn.execute("UPDATE alerts SET status = 'RESOLVED', resolved_at = $2 WHERE alert_id = $1", first, now)
        second = await conn.fetchval(insert, A, "OPEN", None)
    rows = await admin_conn.fetch(
        "SELECT alert_id, status FROM alerts WHERE tenant_id = $1 ORDER BY status, alert_id = $2 DESC", A, first
    )
    assert [r["status"] for r in rows] == ["OPEN", "RESOLVED", "RESOLVED"]
    assert rows[0]["alert_id"] == second and rows[1]["alert_id"] == first


async def test_rls_is_enabled_and_forced_on_every_tenant_table(admin_conn: asyncpg.Connection) -> None:
    rows = await admin_conn.fetch(
        """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                  array(SELECT unnest(p.polroles)::regrole::text FROM pg_policy p WHERE p.polrelid = c.oid) AS roles
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"""
    )
    assert len(rows) >= 13
    for r in rows:
        assert r["relrowsecurity"] and r["relforcerowsecurity"], f"{r['relname']}: RLS not enabled and forced"
        assert set(ROLES) <= set(r["roles"]), f"{r['relname']}: policies only for {r['roles']}"
    # the audit log is deliberately not tenant-owned
    assert "operator_audit_log" not in {r["relname"] for r in rows}
