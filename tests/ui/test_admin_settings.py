"""Settings through the admin API: global defaults and per-tenant overrides, audited."""

from __future__ import annotations

import json

import asyncpg
import pytest

from tests.ui.conftest import UiServer

pytestmark = pytest.mark.integration


async def test_global_and_tenant_settings_are_set_listed_and_removed(
    ui: UiServer, admin_conn: asyncpg.Connection
) -> None:
    api = ui.client()
    assert (await api.post("/api/admin/tenants", json={"tenant_id": "t1", "name": "T1"})).status_code == 201
    glob = await api.put("/api/admin/settings/ingest.rate_per_s", json={"value": 20})
    over = await api.put("/api/admin/settings/ingest.rate_per_s", json={"value": 5, "tenant_id": "t1"})
    assert glob.status_code == 200 and over.status_code == 200
    assert over.json()["tenant_id"] == "t1" and over.json()["value"] == 5
    again = await api.put("/api/admin/settings/ingest.rate_per_s", json={"value": 7, "tenant_id": "t1"})
    assert again.json()["value"] == 7  # an upsert, not a second row

    listed = (await api.get("/api/admin/settings", params={"tenant_id": "t1"})).json()["items"]
    assert [(i["tenant_id"], i["value"]) for i in listed] == [(None, 20), ("t1", 7)]

    assert (
        await api.put("/api/admin/settings/ingest.burst", json={"value": 1, "tenant_id": "nope"})
    ).status_code == 404
    assert (await api.put("/api/admin/settings/Bad Key", json={"value": 1})).status_code == 400
    assert (await api.delete("/api/admin/settings/ingest.rate_per_s", params={"tenant_id": "t1"})).status_code == 204
    assert (await api.delete("/api/admin/settings/ingest.rate_per_s", params={"tenant_id": "t1"})).status_code == 404
    rows = await admin_conn.fetch("SELECT tenant_id, value FROM settings")
    assert [(r["tenant_id"], json.loads(r["value"])) for r in rows] == [(None, 20)]
    actions = [r["action"] for r in await admin_conn.fetch("SELECT action FROM operator_audit_log ORDER BY id")]
    # a refused request rolls back together with its audit row; the 3 that changed something remain
    assert actions.count("settings.put") == 3 and "settings.delete" in actions
