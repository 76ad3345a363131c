"""The admin API over real HTTP, PostgreSQL and Redis: tenants and device provisioning."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from services.common.constants import CHANNEL_DEVICE_CREDENTIALS
from services.common.credentials import hash_secret, new_device_token
from services.common.logging import JsonFormatter
from tests.ui.conftest import KEY_A, KEY_B, StartUi, UiServer, next_message

pytestmark = pytest.mark.integration

ACTOR_A = "admin-key:" + hashlib.sha256(KEY_A.encode()).hexdigest()[:8]


async def make_tenant(api: httpx.AsyncClient, tenant_id: str = "acme", **extra: Any) -> dict[str, Any]:
    response = await api.post("/api/admin/tenants", json={"tenant_id": tenant_id, "name": f"{tenant_id} Inc."} | extra)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def register(
    api: httpx.AsyncClient, tenant_id: str = "acme", device_id: str = "dev-1", site_id: str = "site-1", **extra: Any
) -> dict[str, Any]:
    payload = {"tenant_id": tenant_id, "device_id": device_id, "site_id": site_id} | extra
    response = await api.post("/api/admin/devices", json=payload)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def activate(conn: asyncpg.Connection, tenant_id: str, device_id: str) -> str:
    """What ingest does on POST /api/device/activate: issue a token, record it, clear the code."""
    token = new_device_token()
    await conn.execute(
        """UPDATE devices SET status = 'active', token_hash = $3, activated_at = now(),
                              activation_code_hash = NULL, activation_expires_at = NULL
            WHERE tenant_id = $1 AND device_id = $2""",
        tenant_id,
        device_id,
        hash_secret(token),
    )
    await conn.execute(
        "INSERT INTO device_token_history (tenant_id, device_id, token_hash, reason) VALUES ($1, $2, $3, 'activated')",
        tenant_id,
        device_id,
        hash_secret(token),
    )
    return token


async def tables_containing(conn: asyncpg.Connection, needle: str) -> list[str]:
    """Every table with a row whose text holds `needle` (case-insensitive)."""
    tables = [r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    return [
        t
        for t in tables
        if await conn.fetchval(f"SELECT count(*) FROM {t} x WHERE to_jsonb(x)::text ILIKE $1", f"%{needle}%")
    ]


def parse_ts(value: str) -> datetime:
    assert value.endswith("Z")
    return datetime.fromisoformat(value)


# --- tenants ----------------------------------------------------------------------------------


async def test_tenant_create_get_and_duplicates(api: httpx.AsyncClient) -> None:
    created = await make_tenant(api, "acme", metadata={"plan": "gold"})
    assert created["tenant_id"] == "acme" and created["name"] == "acme Inc."
    assert created["status"] == "active" and created["metadata"] == {"plan": "gold"}
    assert parse_ts(created["created_at"]) <= datetime.now(UTC)

    got = await api.get("/api/admin/tenants/acme")
    assert got.status_code == 200 and got.json() == created

    dup = await api.post("/api/admin/tenants", json={"tenant_id": "acme", "name": "Again"})
    assert dup.status_code == 409 and dup.json()["error"] == "tenant_exists"
    missing = await api.get("/api/admin/tenants/nobody")
    assert missing.status_code == 404 and missing.json()["error"] == "tenant_not_found"


@pytest.mark.parametrize(
    ("body", "error", "mentions"),
    [
        (b'{"tenant_id": "a/b", "name": "x"}', "invalid_request", "$.tenant_id"),
        (b'{"tenant_id": "ok"}', "invalid_request", "name"),
        (b'{"tenant_id": "ok", "name": ""}', "invalid_request", "$.name"),
        (b'{"tenant_id": "ok", "name": "x", "metadata": [1]}', "invalid_request", "$.metadata"),
        (b'{"tenant_id": "ok", "name": "x", "plan": "gold"}', "invalid_request", "plan"),
        (b'{"tenant_id": nope}', "invalid_json", "malformed"),
        (b'{"tenant_id": "ok", ', "invalid_json", "truncated"),
        (b"", "invalid_json", ""),
    ],
)
async def test_invalid_tenant_bodies_are_refused_with_400_naming_the_problem(
    api: httpx.AsyncClient, body: bytes, error: str, mentions: str
) -> None:
    response = await api.post("/api/admin/tenants", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert mentions in response.json()["detail"]


async def test_oversized_body_is_refused_with_413(api: httpx.AsyncClient) -> None:
    big = {"tenant_id": "big", "name": "Big", "metadata": {"blob": "x" * 70_000}}
    response = await api.post("/api/admin/tenants", json=big)
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


async def test_tenant_list_pages_and_filters(api: httpx.AsyncClient) -> None:
    for t in ("t-c", "t-a", "t-b", "t-d"):
        await make_tenant(api, t)
    assert (await api.post("/api/admin/tenants/t-d/disable")).status_code == 200

    first = (await api.get("/api/admin/tenants", params={"limit": 2})).json()
    assert [t["tenant_id"] for t in first["items"]] == ["t-a", "t-b"]
    assert (first["total"], first["limit"], first["offset"]) == (4, 2, 0)
    rest = (await api.get("/api/admin/tenants", params={"limit": 2, "offset": 2})).json()
    assert [t["tenant_id"] for t in rest["items"]] == ["t-c", "t-d"]
    disabled = (await api.get("/api/admin/tenants", params={"status": "disabled"})).json()
    assert [t["tenant_id"] for t in disabled["items"]] == ["t-d"] and disabled["total"] == 1
    assert (await api.get("/api/admin/tenants")).json()["limit"] == 50

    for params in ({"limit": 0}, {"limit": 501}, {"limit": "ten"}, {"offset": -1}, {"status": "gone"}):
        response = await api.get("/api/admin/tenants", params=params)
        assert response.status_code == 400 and response.json()["error"] == "invalid_query", params


async def test_tenant_update_and_disable(api: httpx.AsyncClient, admin_conn: asyncpg.Connection) -> None:
    await make_tenant(api, "acme")
    renamed = await api.patch("/api/admin/tenants/acme", json={"name": "ACME Corp", "metadata": {"tier": 2}})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "ACME Corp" and renamed.json()["metadata"] == {"tier": 2}
    assert (await api.patch("/api/admin/tenants/acme", json={})).json()["name"] == "ACME Corp"  # nothing to change
    bad = await api.patch("/api/admin/tenants/acme", json={"status": "deleted"})
    assert bad.status_code == 400
    assert (await api.patch("/api/admin/tenants/acme", json={"tenant_id": "other"})).status_code == 400
    assert (await api.patch("/api/admin/tenants/nobody", json={"name": "x"})).status_code == 404

    disabled = await api.post("/api/admin/tenants/acme/disable")
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    assert (await api.post("/api/admin/tenants/acme/disable")).json()["status"] == "disabled"  # idempotent
    assert (await api.post("/api/admin/tenants/nobody/disable")).status_code == 404
    enabled = await api.patch("/api/admin/tenants/acme", json={"status": "active"})
    assert enabled.json()["status"] == "active"
    assert await admin_conn.fetchval("SELECT status FROM tenants WHERE tenant_id = 'acme'") == "active"
    actions = [r["action"] for r in await admin_conn.fetch("SELECT action FROM operator_audit_log ORDER BY id")]
    assert actions.count("tenant.update") == 3 and actions.count("tenant.disable") == 2


async def test_disabling_a_tenant_tells_ingest_about_each_active_device(
    api: httpx.AsyncClient, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    await make_tenant(api, "acme")
    for d in ("dev-1", "dev-2", "dev-3"):
        await register(api, device_id=d)
    await activate(admin_conn, "acme", "dev-1")
    await activate(admin_conn, "acme", "dev-3")
    async with redis_client.pubsub() as pubsub:
        await pubsub.subscribe(CHANNEL_DEVICE_CREDENTIALS)
        assert (await api.post("/api/admin/tenants/acme/disable")).status_code == 200
        got = [await next_message(pubsub), await next_message(pubsub)]
    assert sorted(got, key=lambda m: m["device_id"]) == [
        {"tenant_id": "acme", "device_id": "dev-1", "action": "tenant_disable"},
        {"tenant_id": "acme", "device_id": "dev-3", "action": "tenant_disable"},
    ]


# --- device registration and activation codes -------------------------------------------------


async def test_register_returns_a_one_time_code_stored_only_as_a_hash(
    api: httpx.AsyncClient, admin_conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await make_tenant(api, "acme")
    before = datetime.now(UTC)
    response = await api.post(
        "/api/admin/devices",
        json={
            "tenant_id": "acme",
            "device_id": "pump-7",
            "site_id": "plant-north",
            "kind": "energy",
            "fw_version": "1.4.2",
            "metadata": {"model": "X200"},
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    code = body["activation_code"]
    assert {k: body[k] for k in ("tenant_id", "device_id", "site_id", "kind", "status", "fw_version", "metadata")} == {
        "tenant_id": "acme",
        "device_id": "pump-7",
        "site_id": "plant-north",
        "kind": "energy",
        "status": "provisioned",
        "fw_version": "1.4.2",
        "metadata": {"model": "X200"},
    }
    assert body["has_token"] is False and body["activation_pending"] is True
    expires = parse_ts(body["activation_expires_at"])
    assert body["expires_at"] == body["activation_expires_at"]
    assert before + timedelta(seconds=3590) < expires < datetime.now(UTC) + timedelta(seconds=3610)
    assert not any("hash" in k for k in body)

    row = await admin_conn.fetchrow("SELECT * FROM devices WHERE tenant_id = 'acme' AND device_id = 'pump-7'")
    assert row["activation_code_hash"] == hash_secret(code) and row["token_hash"] is None
    assert row["activation_expires_at"] == expires
    for form in (code, code.replace("-", ""), code.lower()):
        assert await tables_containing(admin_conn, form) == []
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "device registered" in text and code not in text and code.replace("-", "") not in text


async def test_register_honours_a_requested_code_lifetime_and_the_configured_default(
    start_ui: StartUi, admin_conn: asyncpg.Connection
) -> None:
    ui = await start_ui(activation_ttl_s=600)
    api = ui.client()
    await make_tenant(api, "acme")
    now = datetime.now(UTC)
    default = parse_ts((await register(api, device_id="d-1"))["activation_expires_at"])
    short = parse_ts((await register(api, device_id="d-2", activation_ttl_s=120))["activation_expires_at"])
    assert timedelta(seconds=590) < default - now < timedelta(seconds=610)
    assert timedelta(seconds=110) < short - now < timedelta(seconds=130)
    too_short = await api.post(
        "/api/admin/devices", json={"tenant_id": "acme", "device_id": "d-3", "site_id": "s", "activation_ttl_s": 5}
    )
    assert too_short.status_code == 400 and "activation_ttl_s" in too_short.json()["detail"]


async def test_register_refuses_duplicates_unknown_or_disabled_tenants_and_bad_fields(
    api: httpx.AsyncClient, admin_conn: asyncpg.Connection
) -> None:
    await make_tenant(api, "acme")
    await make_tenant(api, "gone")
    await api.post("/api/admin/tenants/gone/disable")
    await register(api)

    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"tenant_id": "acme", "device_id": "dev-1", "site_id": "s"}, 409, "device_exists"),
        ({"tenant_id": "nobody", "device_id": "dev-1", "site_id": "s"}, 404, "tenant_not_found"),
        ({"tenant_id": "gone", "device_id": "dev-1", "site_id": "s"}, 409, "tenant_disabled"),
        ({"tenant_id": "acme", "device_id": "dev-2"}, 400, "invalid_request"),  # site_id is required
        ({"tenant_id": "acme", "device_id": "a/b", "site_id": "s"}, 400, "invalid_request"),
        ({"tenant_id": "acme", "device_id": "x+#", "site_id": "s"}, 400, "invalid_request"),
        ({"tenant_id": "acme", "device_id": "d" * 129, "site_id": "s"}, 400, "invalid_request"),
        ({"tenant_id": "acme", "device_id": "dev-2", "site_id": "s", "kind": "toaster"}, 400, "invalid_request"),
        ({"tenant_id": "acme", "device_id": "dev-2", "site_id": "s", "token": "mine"}, 400, "invalid_request"),
    ]
    for payload, status, error in cases:
        response = await api.post("/api/admin/devices", json=payload)
        assert (response.status_code, response.json()["error"]) == (status, error), payload
    # the same device id is free in another tenant
    await make_tenant(api, "globex")
    await register(api, tenant_id="globex")
    assert await admin_conn.fetchval("SELECT count(*) FROM devices") == 2
    # refused requests change nothing, and their audit rows roll back with them
    assert await admin_conn.fetchval("SELECT count(*) FROM operator_audit_log WHERE action = 'device.register'") == 2


async def test_a_fresh_activation_code_voids_the_previous_one(
    api: httpx.AsyncClient, admin_conn: asyncpg.Connection
) -> None:
    await make_tenant(api, "acme")
    first = (await register(api))["activation_code"]
    response = await api.post("/api/admin/devices/acme/dev-1/activate-code", json={"activation_ttl_s": 900})
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    second = response.json()["activation_code"]
    assert second != first and response.json()["status"] == "provisioned"
    stored = await admin_conn.fetchrow("SELECT activation_code_hash, activation_expires_at FROM devices")
    assert stored["activation_code_hash"] == hash_secret(second)
    assert (
        await admin_conn.fetchval("SELECT count(*) FROM devices WHERE activation_code_hash = $1", hash_secret(first))
        == 0
    )
    assert timedelta(seconds=880) < stored["activation_expires_at"] - datetime.now(UTC) < timedelta(seconds=920)
    # an empty body is fine: the default lifetime
    assert (await api.post("/api/admin/devices/acme/dev-1/activate-code")).status_code == 200

    assert (await api.post("/api/admin/devices/acme/nope/activate-code")).status_code == 404
    assert (await api.post("/api/admin/devices/nobody/dev-1/activate-code")).status_code == 404
    await api.post("/api/admin/devices/acme/dev-1/revoke")
    refused = await api.post("/api/admin/devices/acme/dev-1/activate-code")
    assert refused.status_code == 409 and refused.json()["error"] == "device_revoked"


# --- listing ----------------------------------------------------------------------------------


async def test_device_list_filters_pages_and_never_shows_hashes(
    api: httpx.AsyncClient, admin_conn: asyncpg.Connection
) -> None:
    await make_tenant(api, "acme")
    await make_tenant(api, "globex")
    for i in range(7):
        await register(api, "acme", f"a-{i}", "north" if i < 4 else "south", kind="ptp" if i == 6 else "iot")
    for i in range(3):
        await register(api, "globex", f"g-{i}", "north")
    token = await activate(admin_conn, "acme", "a-1")
    await api.post("/api/admin/devices/acme/a-2/revoke")

    async def ids(**params: Any) -> tuple[list[str], int]:
        response = await api.get("/api/admin/devices", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        return [f"{d['tenant_id']}/{d['device_id']}" for d in body["items"]], body["total"]

    assert (await ids())[1] == 10
    assert await ids(tenant_id="globex") == (["globex/g-0", "globex/g-1", "globex/g-2"], 3)
    assert await ids(tenant_id="acme", site_id="south") == (["acme/a-4", "acme/a-5", "acme/a-6"], 3)
    assert await ids(site_id="north", limit=2, offset=5) == (["globex/g-1", "globex/g-2"], 7)
    assert await ids(status="active") == (["acme/a-1"], 1)
    assert await ids(status="revoked") == (["acme/a-2"], 1)
    assert await ids(kind="ptp") == (["acme/a-6"], 1)
    assert await ids(tenant_id="nobody") == ([], 0)
    page = (await api.get("/api/admin/devices", params={"limit": 3, "offset": 9})).json()
    assert (len(page["items"]), page["total"], page["limit"], page["offset"]) == (1, 10, 3, 9)

    full = (await api.get("/api/admin/devices", params={"limit": 500})).text
    hashes = await admin_conn.fetch("SELECT token_hash, activation_code_hash FROM devices")
    for r in hashes:
        for h in r.values():
            assert h is None or h not in full
    assert "hash" not in full and token not in full

    for params in ({"status": "online"}, {"kind": "car"}, {"limit": 1000}, {"offset": "x"}):
        response = await api.get("/api/admin/devices", params=params)
        assert response.status_code == 400 and response.json()["error"] == "invalid_query", params


async def test_get_one_device_with_its_token_history(api: httpx.AsyncClient, admin_conn: asyncpg.Connection) -> None:
    await make_tenant(api, "acme")
    await register(api)
    await activate(admin_conn, "acme", "dev-1")
    await api.post("/api/admin/devices/acme/dev-1/rotate-token")
    response = await api.get("/api/admin/devices/acme/dev-1")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "active" and body["has_token"] is True and body["activation_pending"] is False
    assert [(t["reason"], t["retired_at"] is None) for t in body["token_history"]] == [
        ("rotated", True),  # the current token, issued by the rotation
        ("rotated", False),  # the activation token, retired by it
    ]
    assert "hash" not in response.text
    assert (await api.get("/api/admin/devices/acme/dev-2")).status_code == 404
    assert (await api.get("/api/admin/devices/acme/dev-1/extra")).json()["error"] == "not_found"
    assert (await api.delete("/api/admin/devices/acme/dev-1")).json()["error"] == "method_not_allowed"


# --- revoke and rotate ------------------------------------------------------------------------


async def test_revoke_retires_the_token_and_tells_ingest(
    api: httpx.AsyncClient, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    await make_tenant(api, "acme")
    await register(api)
    token = await activate(admin_conn, "acme", "dev-1")
    await api.post("/api/admin/devices/acme/dev-1/activate-code")  # a pending code dies with the device too
    async with redis_client.pubsub() as pubsub:
        await pubsub.subscribe(CHANNEL_DEVICE_CREDENTIALS)
        response = await api.post("/api/admin/devices/acme/dev-1/revoke", json={"reason": "stolen"})
        message = await next_message(pubsub)
    assert message == {"tenant_id": "acme", "device_id": "dev-1", "action": "revoke"}
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "revoked" and parse_ts(body["revoked_at"]) <= datetime.now(UTC)
    assert body["activation_pending"] is False
    device = await admin_conn.fetchrow("SELECT * FROM devices")
    assert device["status"] == "revoked" and device["revoked_at"] is not None
    assert device["activation_code_hash"] is None
    history = await admin_conn.fetch("SELECT token_hash, retired_at, reason FROM device_token_history")
    assert [(h["token_hash"], h["reason"]) for h in history] == [(hash_secret(token), "revoked")]
    assert history[0]["retired_at"] is not None
    audit = await admin_conn.fetchrow("SELECT actor, detail FROM operator_audit_log WHERE action = 'device.revoke'")
    assert audit["actor"] == ACTOR_A and json.loads(audit["detail"]) == {"device_id": "dev-1", "reason": "stolen"}

    again = await api.post("/api/admin/devices/acme/dev-1/revoke")  # idempotent; keeps the first time
    assert again.status_code == 200 and again.json()["revoked_at"] == body["revoked_at"]
    assert (await api.post("/api/admin/devices/acme/nope/revoke")).status_code == 404


async def test_rotate_token_issues_a_new_token_once_and_retires_the_old_one(
    api: httpx.AsyncClient, admin_conn: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    await make_tenant(api, "acme")
    await register(api)
    old = await activate(admin_conn, "acme", "dev-1")
    async with redis_client.pubsub() as pubsub:
        await pubsub.subscribe(CHANNEL_DEVICE_CREDENTIALS)
        response = await api.post("/api/admin/devices/acme/dev-1/rotate-token")
        message = await next_message(pubsub)
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    assert message == {"tenant_id": "acme", "device_id": "dev-1", "action": "rotate"}
    new = response.json()["device_token"]
    assert new.startswith("pdt_") and new != old and response.json()["status"] == "active"

    assert await admin_conn.fetchval("SELECT token_hash FROM devices") == hash_secret(new)
    history = await admin_conn.fetch(
        "SELECT token_hash, retired_at IS NOT NULL AS retired, reason FROM device_token_history ORDER BY id"
    )
    assert [tuple(h.values()) for h in history] == [
        (hash_secret(old), True, "rotated"),
        (hash_secret(new), False, "rotated"),
    ]
    # the token is shown once: never stored, logged in the audit trail, or shown again
    assert await tables_containing(admin_conn, new) == []
    assert new not in (await api.get("/api/admin/devices/acme/dev-1")).text


async def test_rotate_token_is_refused_for_devices_that_are_not_active(
    api: httpx.AsyncClient, admin_conn: asyncpg.Connection
) -> None:
    await make_tenant(api, "acme")
    await register(api, device_id="fresh")
    await register(api, device_id="gone")
    await activate(admin_conn, "acme", "gone")
    await api.post("/api/admin/devices/acme/gone/revoke")
    for device in ("fresh", "gone"):
        response = await api.post(f"/api/admin/devices/acme/{device}/rotate-token")
        assert response.status_code == 409 and response.json()["error"] == "device_not_active"
    assert (await api.post("/api/admin/devices/acme/nope/rotate-token")).status_code == 404
    await register(api, device_id="live")
    await activate(admin_conn, "acme", "live")
    await api.post("/api/admin/tenants/acme/disable")
    response = await api.post("/api/admin/devices/acme/live/rotate-token")
    assert response.status_code == 409 and response.json()["error"] == "tenant_disabled"
    assert await admin_conn.fetchval("SELECT count(*) FROM device_token_history WHERE reason = 'rotated'") == 0


async def test_revocation_holds_in_postgres_when_redis_is_down(
    start_ui: StartUi, admin_conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    from services.devstack import free_port

    ui = await start_ui(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    api = ui.client()
    await make_tenant(api, "acme")
    await register(api)
    await activate(admin_conn, "acme", "dev-1")
    response = await api.post("/api/admin/devices/acme/dev-1/revoke")
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    assert await admin_conn.fetchval("SELECT status FROM devices") == "revoked"
    assert any("credential change not published" in r.getMessage() for r in caplog.records)


async def test_every_admin_action_is_audited_without_secrets(ui: UiServer, admin_conn: asyncpg.Connection) -> None:
    api_a, api_b = ui.client(KEY_A), ui.client(KEY_B)
    await make_tenant(api_a, "acme")
    code = (await register(api_a))["activation_code"]
    await activate(admin_conn, "acme", "dev-1")
    token = (await api_b.post("/api/admin/devices/acme/dev-1/rotate-token")).json()["device_token"]
    await api_b.get("/api/admin/devices", params={"tenant_id": "acme"})
    await api_a.post("/api/admin/devices/acme/dev-1/revoke")
    rows = await admin_conn.fetch(
        "SELECT actor, action, target_tenant_id, detail::text AS d FROM operator_audit_log ORDER BY id"
    )
    assert [(r["action"], r["target_tenant_id"]) for r in rows] == [
        ("tenant.create", "acme"),
        ("device.register", "acme"),
        ("device.rotate_token", "acme"),
        ("device.list", "acme"),
        ("device.revoke", "acme"),
    ]
    assert [r["actor"] == ACTOR_A for r in rows] == [True, True, False, False, True]
    text = str([dict(r) for r in rows])
    for secret in (KEY_A, KEY_B, code, token, hash_secret(code), hash_secret(token)):
        assert secret not in text
