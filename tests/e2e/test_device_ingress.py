"""A device's life through the public interfaces: provisioned by the admin API, activated at
ingest, sending over MQTT and HTTP, then rotated and revoked — each taking effect in seconds."""

from __future__ import annotations

import httpx
import pytest

from tests.ingest.conftest import Ingest, eventually, mqtt_client
from tests.ui.conftest import UiServer

pytestmark = pytest.mark.e2e


async def test_provision_activate_send_rotate_revoke(ui: UiServer, ingest: Ingest) -> None:
    admin = ui.client()
    assert (await admin.post("/api/admin/tenants", json={"tenant_id": "acme", "name": "Acme"})).status_code == 201
    registered = await admin.post(
        "/api/admin/devices", json={"tenant_id": "acme", "device_id": "meter-7", "site_id": "plant-1"}
    )
    assert registered.status_code == 201
    code = registered.json()["activation_code"]

    async with httpx.AsyncClient(base_url=ingest.base_url) as device:
        activated = await device.post(
            "/api/device/activate", json={"tenant_id": "acme", "device_id": "meter-7", "activation_code": code}
        )
        assert activated.status_code == 200
        token = activated.json()["device_token"]
        ingest.fleet.tokens[("acme", "meter-7")] = token

        async with mqtt_client(ingest.mqtt_url) as mqtt:
            await mqtt.publish(
                "tenant/acme/device/meter-7/telemetry", ingest.payload("acme", "meter-7", site_id="plant-1"), qos=1
            )
        [obs] = await ingest.wait_observations(1)
        assert (obs["tenant_id"], obs["device_id"], obs["source"]) == ("acme", "meter-7", "mqtt")

        async def send(tok: str, seq: int) -> httpx.Response:
            return await device.post(
                "/ingest/v1/tenant/acme/device/meter-7/telemetry",
                content=ingest.payload("acme", "meter-7", site_id="plant-1", seq=seq),
                headers={"X-Provision-Token": tok},
            )

        rotated = await admin.post("/api/admin/devices/acme/meter-7/rotate-token")
        assert rotated.status_code == 200
        new_token = rotated.json()["device_token"]
        old_refused = await eventually(lambda: send(token, 2), lambda r: r.status_code == 401, 3)
        assert old_refused.json()["error"] == "TOKEN_INVALID"
        assert (await send(new_token, 3)).status_code == 202

        assert (await admin.post("/api/admin/devices/acme/meter-7/revoke")).status_code == 200
        revoked = await eventually(lambda: send(new_token, 4), lambda r: r.status_code == 403, 3)
        assert revoked.json()["error"] == "DEVICE_REVOKED"

    detail = (await admin.get("/api/admin/devices/acme/meter-7")).json()
    assert detail["status"] == "revoked"
    assert [h["reason"] for h in detail["token_history"]].count("rotated") >= 1


async def test_ingest_applies_a_tenant_override_set_through_the_api(ui: UiServer, ingest: Ingest) -> None:
    api = ui.client()
    response = await api.put(
        "/api/admin/settings/ingest.max_payload_bytes", json={"value": 200, "tenant_id": "tenant-b"}
    )
    assert response.status_code == 200
    await eventually(
        lambda: ingest.service.tenant_settings.for_tenant("tenant-b").max_payload_bytes, lambda v: v == 200, 5
    )
    async with httpx.AsyncClient() as client:
        refused = await client.post(
            f"{ingest.base_url}/ingest/v1/tenant/tenant-b/device/dev-1/telemetry",
            content=ingest.payload("tenant-b", "dev-1", site_id="site-9", note="x" * 200),
        )
    assert refused.status_code == 413
