from __future__ import annotations

import asyncio
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
import uvicorn

from services.common.ssrf import (
    BLOCKED_NETWORKS,
    AddressPolicy,
    BlockedDestination,
    GuardedBackend,
    blocked_reason,
    guarded_transport,
)
from services.devstack import free_port
from tests.delivery_worker.receiver import Reply, http_receiver
from tests.support import localhost_certificate

# one address inside each blocked range, with the reason it must be refused for
BLOCKED_SAMPLES = [
    ("0.0.0.0", "unspecified"),
    ("10.1.2.3", "private"),
    ("100.64.0.1", "cgnat"),
    ("100.127.255.254", "cgnat"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("169.254.169.254", "link_local"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("192.0.2.10", "reserved"),
    ("198.18.0.1", "reserved"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link_local"),
    ("febf::1", "link_local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "reserved"),
    ("::ffff:127.0.0.1", "ipv4_mapped_loopback"),
    ("::ffff:169.254.169.254", "ipv4_mapped_link_local"),
    ("::ffff:10.0.0.1", "ipv4_mapped_private"),
    ("64:ff9b::7f00:1", "ipv4_mapped_loopback"),
    ("2002:c0a8:0101::1", "ipv4_mapped_private"),
]

PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.unit
@pytest.mark.parametrize(("address", "reason"), BLOCKED_SAMPLES)
def test_every_non_public_range_is_refused_with_its_reason(address: str, reason: str) -> None:
    ip = ipaddress.ip_address(address)
    assert blocked_reason(ip) == reason
    with pytest.raises(BlockedDestination) as caught:
        AddressPolicy().check_ip(ip)
    assert caught.value.reason == reason


@pytest.mark.unit
def test_every_listed_network_blocks_its_first_and_last_address() -> None:
    for net, _reason in BLOCKED_NETWORKS:
        for ip in (net.network_address, net.broadcast_address):
            assert blocked_reason(ip) is not None, ip


@pytest.mark.unit
@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    AddressPolicy().check_ip(ipaddress.ip_address(address))


@pytest.mark.unit
def test_allow_list_admits_only_its_ranges() -> None:
    policy = AddressPolicy.from_cidrs(["127.0.0.0/8", " ", "fd00::/8"])
    policy.check_ip(ipaddress.ip_address("127.0.0.1"))
    policy.check_ip(ipaddress.ip_address("::ffff:127.0.0.1"))
    policy.check_ip(ipaddress.ip_address("fd00::5"))
    with pytest.raises(BlockedDestination):
        policy.check_ip(ipaddress.ip_address("10.0.0.1"))
    with pytest.raises(ValueError, match="invalid CIDR"):
        AddressPolicy.from_cidrs(["not-a-net"])


@pytest.mark.unit
async def test_names_are_judged_by_what_they_resolve_to() -> None:
    with pytest.raises(BlockedDestination) as caught:
        await AddressPolicy().resolve("localhost", 80)
    assert caught.value.reason == "loopback"
    allowed = await AddressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"]).resolve("localhost", 80)
    assert all(ip.is_loopback for ip in allowed)
    with pytest.raises(BlockedDestination) as unresolvable:
        await AddressPolicy().resolve("no-such-host.invalid", 80)
    assert unresolvable.value.reason == "unresolvable"


@pytest.mark.unit
async def test_save_time_url_check_refuses_schemes_credentials_and_metadata() -> None:
    policy = AddressPolicy()
    for url, reason in [
        ("ftp://example.com/x", "scheme_not_allowed"),
        ("http://user:pw@8.8.8.8/", "credentials_in_url"),
        ("http://169.254.169.254/latest/meta-data", "link_local"),
        ("http://[::ffff:127.0.0.1]:8080/", "ipv4_mapped_loopback"),
        ("http://[::1]/", "loopback"),
    ]:
        with pytest.raises(BlockedDestination) as caught:
            await policy.check_url(url)
        assert caught.value.reason == reason, url
    assert await policy.check_url("https://8.8.8.8/hook") == [ipaddress.ip_address("8.8.8.8")]


class _Recording(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, **kw: Any) -> httpcore.AsyncNetworkStream:
        self.hosts.append(host)
        return await self.inner.connect_tcp(host, port, **kw)


@pytest.mark.integration
async def test_connection_goes_to_the_vetted_address_with_the_original_host_header() -> None:
    recording = _Recording()
    backend = GuardedBackend(AddressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"]), recording)
    async with http_receiver() as receiver:
        stream = await backend.connect_tcp("localhost", receiver.port)
        await stream.aclose()
        assert recording.hosts and ipaddress.ip_address(recording.hosts[0]).is_loopback  # an IP, not the name

        transport = guarded_transport(AddressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"]))
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            resp = await client.post(f"http://localhost:{receiver.port}/hook", content=b"x")
        assert resp.status_code == 200
        assert receiver.received[-1].headers["host"] == f"localhost:{receiver.port}"


@pytest.mark.integration
async def test_loopback_receiver_is_refused_without_allow_list_and_reached_with_it() -> None:
    async with http_receiver() as receiver:
        async with httpx.AsyncClient(transport=guarded_transport(AddressPolicy()), trust_env=False) as client:
            with pytest.raises(BlockedDestination) as caught:
                await client.post(receiver.url, content=b"x")
            assert caught.value.reason == "loopback"
        assert receiver.received == []
        transport = guarded_transport(AddressPolicy.from_cidrs(["127.0.0.1/32"]))
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            assert (await client.post(receiver.url, content=b"x")).status_code == 200
        assert len(receiver.received) == 1


@pytest.mark.integration
async def test_redirect_target_is_vetted_at_connect_time() -> None:
    async with http_receiver() as first:
        first.default = Reply(302, {"location": "http://127.0.0.2:9/internal"})
        transport = guarded_transport(AddressPolicy.from_cidrs(["127.0.0.1/32"]))  # 127.0.0.2 stays blocked
        async with httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=True) as client:
            with pytest.raises(BlockedDestination) as caught:
                await client.get(first.url)
        assert caught.value.address == "127.0.0.2"
        assert len(first.received) == 1


@pytest.mark.integration
async def test_https_goes_to_the_vetted_address_and_checks_the_certificate_of_the_name(tmp_path: Path) -> None:
    localhost_certificate(tmp_path)
    hosts: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        hosts.append(dict(scope["headers"]).get(b"host", b"").decode())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(tmp_path / "cert.pem"),
        ssl_keyfile=str(tmp_path / "key.pem"),
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        trust = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        transport = guarded_transport(AddressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"]), verify=trust)
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            resp = await client.post(f"https://localhost:{port}/hook", content=b"x")
            assert resp.status_code == 204
            with pytest.raises(httpx.ConnectError):  # the certificate does not name the IP
                await client.post(f"https://127.0.0.1:{port}/hook", content=b"x")
        assert hosts == [f"localhost:{port}"]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
