"""POST /api/device/activate: good, used, expired and wrong codes; the token then works."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.common.credentials import hash_secret, new_activation_code
from tests.ingest.conftest import Ingest

pytestmark = pytest.mark.integration


async def provision(ingest: Ingest, device_id: str, *, expires_in: timedelta = timedelta(minutes=60)) -> str:
    code = new_activation_code()
    await ingest.admin.execute(
        "INSERT INTO devices (tenant_id, device_id, site_id, activation_code_hash, activation_expires_at)"
        " VALUES ('tenant-a', $1, 'site-1', $2, $3)",
        device_id,
        hash_secret(code),
        datetime.now(UTC) + expires_in,
    )
    return code


async def activate(ingest: Ingest, client: httpx.AsyncClient, device_id: str, code: str) -> httpx.Response:
    return await client.post(
        f"{ingest.base_url}/api/device/activate",
        json={"tenant_id": "tenant-a", "device_id": device_id, "activation_code": code},
    )


async def test_activation_returns_a_token_once_and_the_code_is_then_used(ingest: Ingest) -> None:
    code = await provision(ingest, "new-1")
    async with httpx.AsyncClient() as client:
        first = await activate(ingest, client, "new-1", code.lower())  # codes are read aloud: case-insensitive
        assert first.status_code == 200
        token = first.json()["device_token"]
        assert first.json()["status"] == "active"

        again = await activate(ingest, client, "new-1", code)
        assert again.status_code == 400 and again.json()["error"] == "ACTIVATION_CODE_INVALID"

        ingest.fleet.tokens[("tenant-a", "new-1")] = token
        sent = await client.post(
            f"{ingest.base_url}/ingest/v1/tenant/tenant-a/device/new-1/telemetry",
            content=ingest.payload("tenant-a", "new-1"),
        )
        assert sent.status_code == 202
    row = await ingest.admin.fetchrow("SELECT * FROM devices WHERE device_id = 'new-1'")
    assert row["status"] == "active" and row["token_hash"] == hash_secret(token)
    assert row["activation_code_hash"] is None and row["activated_at"] is not None
    history = await ingest.admin.fetch("SELECT * FROM device_token_history WHERE device_id = 'new-1'")
    assert [(h["token_hash"], h["reason"], h["retired_at"]) for h in history] == [
        (hash_secret(token), "activated", None)
    ]
    # nothing stored in plain text
    dump = str([dict(r) for r in await ingest.admin.fetch("SELECT * FROM devices")])
    assert token not in dump and code not in dump


async def test_expired_and_wrong_codes_are_refused(ingest: Ingest) -> None:
    expired = await provision(ingest, "late-1", expires_in=timedelta(seconds=-1))
    await provision(ingest, "new-2")
    async with httpx.AsyncClient() as client:
        late = await activate(ingest, client, "late-1", expired)
        wrong = await activate(ingest, client, "new-2", "AAAA-BBBB-CCCC")
        unknown = await activate(ingest, client, "nobody", expired)
        malformed = await client.post(f"{ingest.base_url}/api/device/activate", json={"tenant_id": "tenant-a"})
    assert late.status_code == 400 and late.json()["error"] == "ACTIVATION_CODE_EXPIRED"
    assert wrong.status_code == 400 and wrong.json()["error"] == "ACTIVATION_CODE_INVALID"
    assert unknown.status_code == 400 and unknown.json()["error"] == "ACTIVATION_CODE_INVALID"
    assert malformed.status_code == 400 and malformed.json()["error"] == "INVALID_REQUEST"
    row = await ingest.admin.fetchrow("SELECT status, token_hash FROM devices WHERE device_id = 'new-2'")
    assert (row["status"], row["token_hash"]) == ("provisioned", None)


async def test_guessing_codes_is_rate_limited_per_device(ingest: Ingest) -> None:
    code = await provision(ingest, "new-3")
    async with httpx.AsyncClient() as client:
        statuses = [(await activate(ingest, client, "new-3", f"WRNG-CODE-{n:04d}")).status_code for n in range(7)]
        blocked = await activate(ingest, client, "new-3", code)
    assert statuses[:5] == [400] * 5 and statuses[5:] == [429, 429]
    assert blocked.status_code == 429  # even the right code waits out the penalty
