"""Every reason code, over MQTT and over HTTP, with its quarantine record."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import msgspec
import pytest

from services.ingest.reasons import Reason
from tests.ingest.conftest import Ingest, eventually, mqtt_client

pytestmark = pytest.mark.integration

Case = Callable[[Ingest], tuple[str, str, str, bytes]]  # -> tenant, device, msg_type, body

CASES: dict[Reason, Case] = {
    Reason.PAYLOAD_TOO_LARGE: lambda i: (
        "tenant-a",
        "dev-1",
        "telemetry",
        i.payload("tenant-a", "dev-1", pad="x" * 9000),
    ),
    Reason.BAD_TOPIC_FORMAT: lambda i: ("tenant-a", "dev*1", "telemetry", i.payload("tenant-a", "dev-1")),
    Reason.INVALID_MSG_TYPE: lambda i: ("tenant-a", "dev-1", "status", i.payload("tenant-a", "dev-1")),
    Reason.MALFORMED_JSON: lambda i: ("tenant-a", "dev-1", "telemetry", b'{"site_id": "site-1", '),
    Reason.SCHEMA_INVALID: lambda i: (
        "tenant-a",
        "dev-1",
        "telemetry",
        i.payload("tenant-a", "dev-1", metrics={"t": "hot"}),
    ),
    Reason.TENANT_MISMATCH: lambda i: (
        "tenant-a",
        "dev-1",
        "telemetry",
        i.payload("tenant-a", "dev-1", tenant_id="tenant-b"),
    ),
    Reason.MISSING_SITE_ID: lambda i: ("tenant-a", "dev-1", "telemetry", i.payload("tenant-a", "dev-1", site_id=None)),
    Reason.TOKEN_MISSING: lambda i: (
        "tenant-a",
        "dev-1",
        "telemetry",
        i.payload("tenant-a", "dev-1", provision_token=None),
    ),
    Reason.UNREGISTERED_DEVICE: lambda i: ("tenant-a", "ghost", "telemetry", i.payload("tenant-a", "dev-1")),
    Reason.DEVICE_REVOKED: lambda i: ("tenant-a", "gone", "heartbeat", i.payload("tenant-a", "gone")),
    Reason.TOKEN_INVALID: lambda i: ("tenant-a", "dev-1", "telemetry", i.payload("tenant-a", "dev-2")),
    Reason.SITE_MISMATCH: lambda i: (
        "tenant-a",
        "dev-1",
        "telemetry",
        i.payload("tenant-a", "dev-1", site_id="site-2"),
    ),
    Reason.TS_OUT_OF_RANGE: lambda i: (
        "tenant-a",
        "dev-1",
        "telemetry",
        i.payload("tenant-a", "dev-1", ts="2020-01-01T00:00:00Z"),
    ),
}
# RATE_LIMITED needs a burst of messages: tests/ingest/test_settings.py


async def _revoke_gone(ingest: Ingest) -> None:
    await ingest.admin.execute(
        "UPDATE devices SET status = 'revoked', revoked_at = now() WHERE tenant_id = 'tenant-a' AND device_id = 'dev-2'"
    )
    await ingest.admin.execute(
        "INSERT INTO devices (tenant_id, device_id, site_id, status, token_hash, revoked_at)"
        " SELECT tenant_id, 'gone', site_id, 'revoked', NULL, now() FROM devices"
        " WHERE tenant_id = 'tenant-a' AND device_id = 'dev-1'"
    )
    ingest.fleet.tokens[("tenant-a", "gone")] = ingest.fleet.token("tenant-a", "dev-2")


@pytest.mark.parametrize("reason", list(CASES), ids=str)
async def test_each_reason_is_refused_over_http_with_its_code(ingest: Ingest, reason: Reason) -> None:
    if reason is Reason.DEVICE_REVOKED:
        await _revoke_gone(ingest)
    tenant_id, device_id, msg_type, body = CASES[reason](ingest)
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{ingest.base_url}/ingest/v1/tenant/{tenant_id}/device/{device_id}/{msg_type}", content=body
        )
    assert response.status_code == reason.http_status
    assert response.json()["error"] == reason.value
    assert response.json()["detail"]
    [event] = await ingest.quarantined()
    assert (event["reason"], event["source"], event["tenant_id"]) == (reason.value, "http", tenant_id)
    assert await ingest.observations() == []


@pytest.mark.parametrize("reason", list(CASES), ids=str)
async def test_each_reason_is_quarantined_over_mqtt(ingest: Ingest, reason: Reason) -> None:
    if reason is Reason.DEVICE_REVOKED:
        await _revoke_gone(ingest)
    tenant_id, device_id, msg_type, body = CASES[reason](ingest)
    async with mqtt_client(ingest.mqtt_url) as client:
        await client.publish(f"tenant/{tenant_id}/device/{device_id}/{msg_type}", body, qos=1)
        # a good message after it proves the bad one was handled and the stream keeps flowing
        await client.publish(
            "tenant/tenant-a/device/dev-1/telemetry", ingest.payload("tenant-a", "dev-1", seq=2), qos=1
        )
    [ok] = await ingest.wait_observations(1)
    assert ok["seq"] == 2
    events = await eventually(ingest.quarantined, lambda rows: len(rows) == 1)
    assert (events[0]["reason"], events[0]["source"]) == (reason.value, "mqtt")
    assert events[0]["topic"] == f"tenant/{tenant_id}/device/{device_id}/{msg_type}"


async def test_accepted_message_becomes_an_observation(ingest: Ingest) -> None:
    body = ingest.payload("tenant-a", "dev-1", seq=7, ts="2026-11-23T10:00:00+01:00")
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{ingest.base_url}/ingest/v1/tenant/tenant-a/device/dev-1/telemetry",
            content=body,
            headers={"X-Provision-Token": ingest.fleet.token("tenant-a", "dev-1")},
        )
    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "device_id": "dev-1", "seq": 7}
    [obs] = await ingest.observations()
    assert obs["ts"] == "2026-11-23T09:00:00.000000Z"  # UTC
    assert obs["metrics"] == {"temp_c": 21.5, "humidity": 40.0, "door_open": 0.0}  # floats
    assert obs["v"] == 1 and obs["source"] == "http" and obs["kind"] == "telemetry" and obs["site_id"] == "site-1"
    assert obs["received_at"].endswith("Z") and len(obs["id"]) == 24
    # the same message again (a retry) carries the same stable id
    async with httpx.AsyncClient() as client:
        await client.post(f"{ingest.base_url}/ingest/v1/tenant/tenant-a/device/dev-1/telemetry", content=body)
    first, second = await ingest.observations()
    assert first["id"] == second["id"]


async def test_device_without_registered_site_accepts_any_site(ingest: Ingest) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{ingest.base_url}/ingest/v1/tenant/tenant-a/device/any-site/heartbeat",
            content=ingest.payload("tenant-a", "any-site", site_id="roaming"),
        )
    assert response.status_code == 202


async def test_batch_reports_each_message(ingest: Ingest) -> None:
    good = msgspec.json.decode(ingest.payload("tenant-a", "dev-1"))
    messages = [
        {**good, "tenant_id": "tenant-a", "device_id": "dev-1", "msg_type": "telemetry", "seq": n} for n in range(3)
    ]
    messages.append({**good, "tenant_id": "tenant-a", "device_id": "dev-2", "msg_type": "telemetry"})  # wrong token
    messages.append("not an object")
    messages.append({**good, "tenant_id": "tenant-b", "device_id": "dev-1", "msg_type": "telemetry"})
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{ingest.base_url}/ingest/v1/batch", json={"messages": messages})
        assert response.status_code == 202
        body = response.json()
        assert (body["accepted"], body["rejected"]) == (3, 3)
        assert [(r["index"], r["status"], r["reason"], r["device_id"]) for r in body["results"]] == [
            (0, "accepted", None, "dev-1"),
            (1, "accepted", None, "dev-1"),
            (2, "accepted", None, "dev-1"),
            (3, "rejected", "TOKEN_INVALID", "dev-2"),
            (4, "rejected", "SCHEMA_INVALID", None),
            (5, "rejected", "TOKEN_INVALID", "dev-1"),
        ]
        assert sorted(o["seq"] for o in await ingest.observations()) == [0, 1, 2]
        assert len(await ingest.quarantined()) == 3

        none_ok = await client.post(f"{ingest.base_url}/ingest/v1/batch", json={"messages": [messages[3]]})
        assert none_ok.status_code == 400 and none_ok.json()["accepted"] == 0
        bad = await client.post(f"{ingest.base_url}/ingest/v1/batch", content=b"[")
        assert bad.status_code == 400 and bad.json()["error"] == "MALFORMED_JSON"
