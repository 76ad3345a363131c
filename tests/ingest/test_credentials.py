"""Revoked and rotated credentials take effect within seconds, without a database read per message."""

from __future__ import annotations

import json

import httpx
import pytest

from services.common import constants
from services.common.credentials import hash_secret, new_device_token
from tests.conftest import DbUrls
from tests.ingest.conftest import Ingest, eventually, ingest_env, running_ingest

pytestmark = pytest.mark.integration


async def send(ingest: Ingest, client: httpx.AsyncClient, device: str, token: str, seq: int = 1) -> httpx.Response:
    return await client.post(
        f"{ingest.base_url}/ingest/v1/tenant/tenant-a/device/{device}/telemetry",
        content=ingest.payload("tenant-a", device, seq=seq),
        headers={"X-Provision-Token": token},
    )


async def revoke_in_db(ingest: Ingest, device: str) -> None:
    await ingest.admin.execute(
        "UPDATE devices SET status = 'revoked', revoked_at = now() WHERE tenant_id = 'tenant-a' AND device_id = $1",
        device,
    )


async def notify(ingest: Ingest, device: str, action: str) -> None:
    """What the admin API publishes after it changed a device's credentials."""
    await ingest.redis.publish(
        constants.CHANNEL_DEVICE_CREDENTIALS,
        json.dumps({"tenant_id": "tenant-a", "device_id": device, "action": action}),
    )


async def test_many_messages_cost_at_most_one_credentials_read(ingest: Ingest) -> None:
    assert ingest.service.devices.misses == 0  # the fleet's active devices were preloaded at start
    late = new_device_token()
    await ingest.admin.execute(
        "INSERT INTO devices (tenant_id, device_id, site_id, status, token_hash)"
        " VALUES ('tenant-a', 'late-1', 'site-1', 'active', $1)",
        hash_secret(late),
    )
    ingest.fleet.tokens[("tenant-a", "late-1")] = late
    async with httpx.AsyncClient() as client:
        for seq in range(50):
            assert (await send(ingest, client, "late-1", late, seq)).status_code == 202
    assert ingest.service.devices.misses == 1  # registered after start: one read, then cached


async def test_revoked_device_is_refused_within_seconds(ingest: Ingest) -> None:
    token = ingest.fleet.token("tenant-a", "dev-1")
    async with httpx.AsyncClient() as client:
        assert (await send(ingest, client, "dev-1", token)).status_code == 202
        await revoke_in_db(ingest, "dev-1")
        await notify(ingest, "dev-1", "revoked")
        refused = await eventually(lambda: send(ingest, client, "dev-1", token), lambda r: r.status_code == 403, 3)
    assert refused.json()["error"] == "DEVICE_REVOKED"


async def test_rotated_token_replaces_the_old_one_within_seconds(ingest: Ingest) -> None:
    old = ingest.fleet.token("tenant-a", "dev-1")
    new = new_device_token()
    async with httpx.AsyncClient() as client:
        assert (await send(ingest, client, "dev-1", old)).status_code == 202
        await ingest.admin.execute(
            "UPDATE devices SET token_hash = $1 WHERE tenant_id = 'tenant-a' AND device_id = 'dev-1'", hash_secret(new)
        )
        await notify(ingest, "dev-1", "rotated")
        refused = await eventually(lambda: send(ingest, client, "dev-1", old), lambda r: r.status_code == 401, 3)
        assert refused.json()["error"] == "TOKEN_INVALID"
        assert (await send(ingest, client, "dev-1", new, seq=2)).status_code == 202


async def test_without_a_notification_the_ttl_still_bounds_staleness(
    db_urls: DbUrls, redis_server, mqtt_server, admin_conn, redis_client, fleet
) -> None:
    env = ingest_env(db_urls, redis_server, mqtt_server, PULSE_INGEST_CREDENTIAL_TTL_S="1")
    async with running_ingest(env, admin_conn, redis_client, fleet) as ingest:
        token = ingest.fleet.token("tenant-a", "dev-1")
        async with httpx.AsyncClient() as client:
            assert (await send(ingest, client, "dev-1", token)).status_code == 202
            await revoke_in_db(ingest, "dev-1")
            refused = await eventually(lambda: send(ingest, client, "dev-1", token), lambda r: r.status_code == 403, 5)
        assert refused.json()["error"] == "DEVICE_REVOKED"
