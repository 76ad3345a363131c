"""Per-tenant settings from the settings table apply to MQTT and HTTP within seconds; quarantine modes."""

from __future__ import annotations

import json

import httpx
import pytest

from services.ingest.quarantine import EXCERPT_BYTES
from services.ingest.tenant_settings import IngestPolicy
from tests.conftest import DbUrls
from tests.ingest.conftest import Ingest, eventually, ingest_env, mqtt_client, running_ingest

pytestmark = pytest.mark.integration


async def set_setting(ingest: Ingest, tenant_id: str | None, key: str, value: object) -> None:
    await ingest.admin.execute(
        "INSERT INTO settings (tenant_id, key, value) VALUES ($1, $2, $3::jsonb)"
        " ON CONFLICT ON CONSTRAINT settings_key DO UPDATE SET value = EXCLUDED.value",
        tenant_id,
        key,
        json.dumps(value),
    )


async def post(ingest: Ingest, client: httpx.AsyncClient, tenant: str, device: str, body: bytes) -> httpx.Response:
    return await client.post(f"{ingest.base_url}/ingest/v1/tenant/{tenant}/device/{device}/telemetry", content=body)


async def test_rate_limit_override_applies_within_seconds_to_http_and_mqtt(ingest: Ingest) -> None:
    await set_setting(ingest, "tenant-a", "ingest.rate_per_s", 0.5)
    await set_setting(ingest, "tenant-a", "ingest.burst", 2)
    await eventually(lambda: _policy(ingest, "tenant-a"), lambda p: p.burst == 2, timeout=5)
    async with httpx.AsyncClient() as client:
        codes = [
            (await post(ingest, client, "tenant-a", "dev-1", ingest.payload("tenant-a", "dev-1", seq=n)))
            for n in range(5)
        ]
        other = [
            (
                await post(
                    ingest, client, "tenant-b", "dev-1", ingest.payload("tenant-b", "dev-1", site_id="site-9", seq=n)
                )
            )
            for n in range(5)
        ]
    assert [r.status_code for r in codes] == [202, 202, 429, 429, 429]
    assert codes[2].json()["error"] == "RATE_LIMITED" and int(codes[2].headers["Retry-After"]) >= 1
    assert [r.status_code for r in other] == [202] * 5  # tenant-b keeps the default

    async with mqtt_client(ingest.mqtt_url) as mqtt:
        for n in range(5):
            await mqtt.publish(
                "tenant/tenant-a/device/dev-2/telemetry", ingest.payload("tenant-a", "dev-2", seq=n), qos=1
            )
    events = await eventually(ingest.quarantined, lambda rows: sum(r["source"] == "mqtt" for r in rows) == 3)
    assert {r["reason"] for r in events} == {"RATE_LIMITED"}
    observations = await ingest.observations()
    assert sorted(o["seq"] for o in observations if o["device_id"] == "dev-2") == [0, 1]


async def test_max_payload_override_is_per_tenant(ingest: Ingest) -> None:
    await set_setting(ingest, "tenant-b", "ingest.max_payload_bytes", 200)
    await eventually(lambda: _policy(ingest, "tenant-b"), lambda p: p.max_payload_bytes == 200, timeout=5)
    async with httpx.AsyncClient() as client:
        big_b = ingest.payload("tenant-b", "dev-1", site_id="site-9", note="x" * 150)
        big_a = ingest.payload("tenant-a", "dev-1", note="x" * 150)
        assert len(big_b) > 200
        refused = await post(ingest, client, "tenant-b", "dev-1", big_b)
        accepted = await post(ingest, client, "tenant-a", "dev-1", big_a)
    assert refused.status_code == 413 and refused.json()["error"] == "PAYLOAD_TOO_LARGE"
    assert accepted.status_code == 202


async def test_dev_keeps_a_truncated_payload_prod_keeps_none(ingest: Ingest) -> None:
    malformed = b"{" + b"x" * 3000
    async with httpx.AsyncClient() as client:
        await post(ingest, client, "tenant-a", "dev-1", malformed)
        await set_setting(ingest, "tenant-b", "ingest.mode", "PROD")
        await eventually(lambda: _policy(ingest, "tenant-b"), lambda p: p.mode == "PROD", timeout=5)
        await post(ingest, client, "tenant-b", "dev-1", malformed)
        await set_setting(ingest, "tenant-a", "ingest.store_rejects", False)
        await eventually(lambda: _policy(ingest, "tenant-a"), lambda p: not p.store_rejects, timeout=5)
        await post(ingest, client, "tenant-a", "dev-1", malformed)
    dev, prod, dev_no_store = await ingest.quarantined()
    assert dev["payload_excerpt"] == malformed[:EXCERPT_BYTES].decode() and dev["topic"]
    assert prod["payload_excerpt"] is None and prod["topic"] is None
    assert (prod["tenant_id"], prod["device_id"], prod["reason"]) == ("tenant-b", "dev-1", "MALFORMED_JSON")
    assert dev_no_store["payload_excerpt"] is None
    counters = await ingest.admin.fetch("SELECT tenant_id, reason, count FROM quarantine_counters ORDER BY tenant_id")
    assert [(c["tenant_id"], c["reason"], c["count"]) for c in counters] == [
        ("tenant-a", "MALFORMED_JSON", 2),
        ("tenant-b", "MALFORMED_JSON", 1),
    ]
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{ingest.base_url}/metrics")).text
    assert 'pulse_ingest_rejected_total{reason="MALFORMED_JSON",source="http"}' in metrics


async def test_prod_process_never_keeps_payloads_whatever_the_table_says(
    db_urls: DbUrls, redis_server, mqtt_server, admin_conn, redis_client, fleet
) -> None:
    env = ingest_env(db_urls, redis_server, mqtt_server, PULSE_MODE="PROD", PULSE_ADMIN_KEYS="k" * 32)
    async with running_ingest(env, admin_conn, redis_client, fleet) as ingest:
        await set_setting(ingest, "tenant-a", "ingest.mode", "DEV")
        await ingest.service.tenant_settings.refresh()
        assert _policy(ingest, "tenant-a").mode == "PROD"
        async with httpx.AsyncClient() as client:
            response = await post(ingest, client, "tenant-a", "dev-1", b"{nope")
        assert response.status_code == 400
        [event] = await ingest.quarantined()
        assert event["payload_excerpt"] is None and event["reason"] == "MALFORMED_JSON"


def _policy(ingest: Ingest, tenant_id: str) -> IngestPolicy:
    return ingest.service.tenant_settings.for_tenant(tenant_id)
