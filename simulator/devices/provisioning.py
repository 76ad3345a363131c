"""Tenants and devices through the admin API, tokens through device activation, as a real fleet gets them.

For each tenant: POST /api/admin/tenants (409: it exists, fine). For each device:
POST /api/admin/devices for an activation code (409: it exists, so ask for a fresh code with
.../activate-code, or, when that is refused, rotate its token), then exchange the code at
ingest's POST /api/device/activate for the device token. Re-running with the same prefix
therefore reuses the tenants and devices and gives every device a new token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from simulator.devices.config import FleetConfig, SimulatorError
from simulator.devices.device import Credentials

__all__ = ["ProvisionReport", "provision"]

_CONCURRENCY = 16


@dataclass
class ProvisionReport:
    tenants_created: int = 0
    tenants_existing: int = 0
    devices_registered: int = 0
    devices_existing: int = 0
    devices_activated: int = 0
    tokens_rotated: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class _Api:
    """The two HTTP endpoints provisioning talks to, with errors turned into advice."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.admin = httpx.AsyncClient(
            base_url=config.admin_url, headers={"X-Admin-Key": config.admin_key}, timeout=10.0
        )
        self.ingest = httpx.AsyncClient(base_url=config.ingest_url, timeout=10.0)

    async def close(self) -> None:
        await self.admin.aclose()
        await self.ingest.aclose()

    async def wait_ready(self, wait_s: float) -> None:
        """Both services answer /healthz, or SimulatorError naming the one that does not and what to start."""
        deadline = time.monotonic() + wait_s
        for client, what, start in (
            (self.admin, "admin API (ui service)", "`pulse run ui`"),
            (self.ingest, "ingest (device activation)", "`pulse run ingest`"),
        ):
            while True:
                try:
                    await client.get("/healthz")
                    break
                except httpx.TransportError as exc:
                    if time.monotonic() >= deadline:
                        flag = "--admin-url" if client is self.admin else "--ingest-url"
                        raise SimulatorError(
                            f"{what} unreachable at {client.base_url} ({type(exc).__name__}); start it"
                            f" (`pulse dev` starts everything, or {start}), pass {flag},"
                            " or --wait SECONDS to wait for it"
                        ) from None
                    await asyncio.sleep(0.5)

    async def admin_call(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            response = await self.admin.post(path, json=body)
        except httpx.TransportError as exc:
            raise SimulatorError(
                f"admin API at {self.config.admin_url} failed: {type(exc).__name__} on {path}"
            ) from None
        data = _body(response)
        status = response.status_code
        if status == 401:
            raise SimulatorError(
                f"admin API at {self.config.admin_url} refused the admin key (401 {data.get('error')}):"
                " pass --admin-key or set PULSE_SIM_ADMIN_KEY (or PULSE_ADMIN_KEYS) to one of the ui's keys"
            )
        if status == 429:
            raise SimulatorError(
                f"admin API at {self.config.admin_url} has locked this address out after failed key checks;"
                f" retry in {response.headers.get('retry-after', 'a few')} seconds with the right key"
            )
        if status == 404 and data.get("error") not in ("tenant_not_found", "device_not_found"):
            raise SimulatorError(
                f"no admin API at {self.config.admin_url} (404 for {path}): point --admin-url at the ui service"
            )
        if status >= 500:
            raise SimulatorError(f"admin API at {self.config.admin_url} failed on {path}: {status} {_detail(data)}")
        return status, data

    async def activate(self, tenant_id: str, device_id: str, code: str) -> str:
        body = {"tenant_id": tenant_id, "device_id": device_id, "activation_code": code}
        try:
            response = await self.ingest.post("/api/device/activate", json=body)
        except httpx.TransportError as exc:
            raise SimulatorError(
                f"ingest at {self.config.ingest_url} failed on activation: {type(exc).__name__}"
            ) from None
        data = _body(response)
        if response.status_code != 200 or not isinstance(data.get("device_token"), str):
            raise SimulatorError(
                f"activation of {tenant_id}/{device_id} at {self.config.ingest_url} refused:"
                f" {response.status_code} {_detail(data)}"
            )
        return str(data["device_token"])


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _detail(data: dict[str, Any]) -> str:
    return f"{data.get('error', '?')}: {data.get('detail', '')}".strip()


async def _tenant(api: _Api, tenant_id: str, n: int, report: ProvisionReport) -> None:
    body = {"tenant_id": tenant_id, "name": f"Simulated tenant {n}", "metadata": {"simulator": True}}
    status, data = await api.admin_call("/api/admin/tenants", body)
    if status == 201:
        report.tenants_created += 1
    elif status == 409 and data.get("error") == "tenant_exists":
        report.tenants_existing += 1
    else:
        raise SimulatorError(f"creating tenant {tenant_id!r} failed: {status} {_detail(data)}")


async def _device(api: _Api, tenant_id: str, device_id: str, site_id: str, report: ProvisionReport) -> Credentials:
    body = {
        "tenant_id": tenant_id,
        "device_id": device_id,
        "site_id": site_id,
        "kind": "iot",
        "fw_version": "pulse-sim-1",
        "metadata": {"simulator": True},
    }
    status, data = await api.admin_call("/api/admin/devices", body)
    if status == 201:
        report.devices_registered += 1
    elif status == 409 and data.get("error") == "device_exists":
        report.devices_existing += 1
        path = f"/api/admin/devices/{tenant_id}/{device_id}"
        status, data = await api.admin_call(f"{path}/activate-code", {})
        if status == 409 and data.get("error") not in ("device_revoked", "tenant_disabled"):
            status, data = await api.admin_call(f"{path}/rotate-token", {})
            if status == 200 and isinstance(data.get("device_token"), str):
                report.tokens_rotated += 1
                return Credentials(tenant_id, device_id, str(data.get("site_id") or site_id), data["device_token"])
    if status not in (200, 201) or not isinstance(data.get("activation_code"), str):
        hint = " (use another --tenant-prefix)" if data.get("error") in ("device_revoked", "tenant_disabled") else ""
        raise SimulatorError(f"provisioning {tenant_id}/{device_id} failed: {status} {_detail(data)}{hint}")
    token = await api.activate(tenant_id, device_id, data["activation_code"])
    report.devices_activated += 1
    # an existing device keeps the site it was registered with; messages must carry that one
    return Credentials(tenant_id, device_id, str(data.get("site_id") or site_id), token)


async def provision(
    config: FleetConfig, say: Callable[[str], None], report: ProvisionReport
) -> dict[str, list[Credentials]]:
    """Every tenant's devices, active, with their tokens (tenant id -> devices in order)."""
    api = _Api(config)
    try:
        await api.wait_ready(config.wait_s)
        for n, tenant_id in enumerate(config.tenant_ids(), start=1):
            await _tenant(api, tenant_id, n, report)
        total = config.tenants * config.devices
        gate = asyncio.Semaphore(_CONCURRENCY)
        done = 0
        last_said = time.monotonic()

        async def one(tenant_id: str, index: int, device_id: str) -> Credentials:
            nonlocal done, last_said
            async with gate:
                creds = await _device(api, tenant_id, device_id, config.site_of(index), report)
            done += 1
            if time.monotonic() - last_said >= 2.0:
                last_said = time.monotonic()
                say(f"provisioning: {done}/{total} devices active")
            return creds

        pairs = [(t, i, d) for t in config.tenant_ids() for i, d in enumerate(config.device_ids())]
        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels the rest
                tasks = [group.create_task(one(t, i, d)) for t, i, d in pairs]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        if total > 1:
            say(f"provisioning: {total}/{total} devices active")
        fleet: dict[str, list[Credentials]] = {t: [] for t in config.tenant_ids()}
        for task in tasks:
            creds = task.result()
            fleet[creds.tenant_id].append(creds)
        return fleet
    finally:
        await api.close()
