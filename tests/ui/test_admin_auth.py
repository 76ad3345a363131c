"""X-Admin-Key: rotated keys, JSON 401s, keys never logged, lockout of addresses that keep guessing."""

from __future__ import annotations

import hashlib
import logging

import asyncpg
import pytest

from services.common.config import Secret
from services.common.logging import JsonFormatter
from services.ui.admin.auth import AdminKeys, FailureLimiter
from tests.ui.conftest import KEY_A, KEY_B, FakeClock, StartUi, UiServer


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


# --- over real HTTP ---------------------------------------------------------------------------


@pytest.mark.integration
async def test_missing_or_wrong_key_is_refused_with_a_json_401(ui: UiServer) -> None:
    cases = [
        (None, "/api/admin/tenants", "X-Admin-Key header required"),
        ("", "/api/admin/tenants", "invalid X-Admin-Key"),
        ("not-the-key", "/api/admin/tenants", "invalid X-Admin-Key"),
        (KEY_A[:-1], "/api/admin/devices", "invalid X-Admin-Key"),
        (KEY_A + "x", "/api/admin/devices", "invalid X-Admin-Key"),
        (KEY_A.upper(), "/api/admin/devices", "invalid X-Admin-Key"),
        (None, "/api/admin/no-such-route", "X-Admin-Key header required"),  # 401 before 404
    ]
    for key, path, detail in cases:
        response = await ui.client(key).get(path)
        assert response.status_code == 401, (key, path)
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": "unauthorized", "detail": detail}
    # ops routes stay open: probes carry no key
    assert (await ui.client(None).get("/healthz")).status_code == 200


@pytest.mark.integration
async def test_either_of_two_rotated_keys_works_and_the_audit_log_names_its_fingerprint(
    ui: UiServer, admin_conn: asyncpg.Connection
) -> None:
    for key, tenant in ((KEY_A, "acme"), (KEY_B, "globex")):
        response = await ui.client(key).post("/api/admin/tenants", json={"tenant_id": tenant, "name": tenant.title()})
        assert response.status_code == 201, response.text
    rows = await admin_conn.fetch(
        "SELECT actor, action, target_tenant_id, detail::text FROM operator_audit_log ORDER BY id"
    )
    assert [(r["actor"], r["action"], r["target_tenant_id"]) for r in rows] == [
        (f"admin-key:{fingerprint(KEY_A)}", "tenant.create", "acme"),
        (f"admin-key:{fingerprint(KEY_B)}", "tenant.create", "globex"),
    ]
    assert fingerprint(KEY_A) != fingerprint(KEY_B)
    for r in rows:
        assert KEY_A not in str(dict(r)) and KEY_B not in str(dict(r))


@pytest.mark.integration
async def test_admin_keys_never_appear_in_logs(ui: UiServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    near_misses = [KEY_A[:-1], KEY_A + "x", KEY_B.upper(), "guess-" + KEY_B]
    for key in near_misses:
        assert (await ui.client(key).get("/api/admin/tenants")).status_code == 401
    for key in (KEY_A, KEY_B):
        created = await ui.client(key).post("/api/admin/tenants", json={"tenant_id": f"t-{key[-4:]}", "name": "T"})
        assert created.status_code == 201
        assert (await ui.client(key).get("/api/admin/tenants")).status_code == 200
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records]
    refused = [line for line in lines if "admin request refused" in line]
    assert len(refused) == len(near_misses)  # the failures were logged, with their address and reason
    assert all('"reason":"invalid_key"' in line and '"client":"127.0.0.1"' in line for line in refused)
    assert any("tenant created" in line for line in lines)
    text = "\n".join(lines)
    for secret in (KEY_A, KEY_B, *near_misses):
        assert secret not in text


@pytest.mark.integration
async def test_repeated_failures_from_one_address_are_answered_429_until_the_lockout_ends(
    start_ui: StartUi,
) -> None:
    ui = await start_ui(admin_max_failures=3, admin_failure_window_s=60.0, admin_lockout_s=30.0)
    # uvicorn trusts X-Forwarded-For from 127.0.0.1, so each client below is its own address
    attacker_bad = ui.client("wrong", **{"X-Forwarded-For": "203.0.113.7"})
    attacker_good = ui.client(KEY_A, **{"X-Forwarded-For": "203.0.113.7"})
    bystander = ui.client(KEY_A, **{"X-Forwarded-For": "198.51.100.20"})

    for _ in range(3):
        assert (await attacker_bad.get("/api/admin/tenants")).status_code == 401
    locked = await attacker_good.get("/api/admin/tenants")  # even a valid key is refused now
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "30"
    assert locked.json()["error"] == "rate_limited"
    assert (await attacker_bad.get("/api/admin/tenants")).status_code == 429  # no more guesses counted
    assert (await bystander.get("/api/admin/tenants")).status_code == 200  # other addresses unaffected

    ui.clock.advance(20)
    assert (await attacker_good.get("/api/admin/tenants")).headers["retry-after"] == "10"
    ui.clock.advance(10)
    assert (await attacker_good.get("/api/admin/tenants")).status_code == 200


# --- pure logic -------------------------------------------------------------------------------


@pytest.mark.unit
def test_keys_match_exactly_and_name_the_key_by_fingerprint() -> None:
    keys = AdminKeys([Secret(KEY_A), Secret(KEY_B)])
    assert keys.match(KEY_A.encode()) == f"admin-key:{fingerprint(KEY_A)}"
    assert keys.match(KEY_B.encode()) == f"admin-key:{fingerprint(KEY_B)}"
    for wrong in (b"", KEY_A[:-1].encode(), (KEY_A + " ").encode(), KEY_B.upper().encode(), b"\xff\xfe"):
        assert keys.match(wrong) is None
    with pytest.raises(ValueError):
        AdminKeys([])


@pytest.mark.unit
def test_failures_outside_the_window_do_not_add_up() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(3, 60.0, 30.0, clock=clock)
    assert not limiter.failure("a") and not limiter.failure("a")
    clock.advance(61)
    assert not limiter.failure("a") and not limiter.failure("a")
    assert limiter.retry_after("a") is None
    assert limiter.failure("a")  # third within 60 s
    assert limiter.retry_after("a") == 30.0
    assert limiter.retry_after("b") is None
    clock.advance(30)
    assert limiter.retry_after("a") is None


@pytest.mark.unit
def test_the_limiter_keeps_bounded_state_under_many_addresses() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(2, 60.0, 30.0, clock=clock, max_clients=100)
    for i in range(5000):
        limiter.failure(f"10.0.{i // 256}.{i % 256}")
        limiter.failure(f"10.1.{i // 256}.{i % 256}")
        limiter.failure(f"10.1.{i // 256}.{i % 256}")  # locks this one out
    assert len(limiter._failures) <= 100 and len(limiter._locked_until) <= 100
    assert limiter.retry_after("10.1.19.135") is not None  # the most recent lockouts are kept
