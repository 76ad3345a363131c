"""SSRF guard for outbound deliveries: only public addresses, unless an operator allows a range.

A destination host is resolved (getaddrinfo) and every address it resolves to is vetted; one
blocked address refuses the whole host (a mixed answer is a rebinding trick, not a fallback).
The connection is then made to the vetted address itself, so there is no second lookup an
attacker's DNS could answer differently (no rebinding window). For HTTP, `guarded_transport`
plugs the check into httpcore's connect step: every connection the client opens, whatever URL
or redirect led to it, goes through it, while the Host header and TLS SNI/certificate check
still use the original name.

Blocked: loopback, link-local (incl. 169.254.169.254 cloud metadata), private, CGNAT,
multicast, unspecified, reserved/documentation/benchmark ranges and their IPv6 equivalents;
IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses are judged
by the IPv4 address they carry. The allow-list (CIDRs, `PULSE_DELIVERY_ALLOW_CIDRS`) wins.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

__all__ = [
    "BLOCKED_NETWORKS",
    "AddressPolicy",
    "BlockedDestination",
    "GuardedBackend",
    "IPAddress",
    "IPNetwork",
    "blocked_reason",
    "guarded_transport",
    "pinned_tls_context",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# (network, reason) — the reason is a stable code shown in attempt errors and API answers
BLOCKED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "cgnat"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link_local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "reserved"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),
        ("198.51.100.0/24", "reserved"),
        ("203.0.113.0/24", "reserved"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # incl. 255.255.255.255 broadcast
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "reserved"),  # deprecated IPv4-compatible
        ("100::/64", "reserved"),  # discard
        ("2001::/23", "reserved"),  # IETF protocol assignments (Teredo, ORCHID, ...)
        ("2001:db8::/32", "reserved"),  # documentation
        ("fc00::/7", "private"),  # unique local
        ("fe80::/10", "link_local"),
        ("fec0::/10", "private"),  # deprecated site-local
        ("ff00::/8", "multicast"),
    )
)

# IPv6 forms that carry an IPv4 address: judged by that address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


class BlockedDestination(Exception):
    """The destination is not allowed; `reason` is a code (loopback, private, unresolvable, ...)."""

    def __init__(self, host: str, reason: str, address: str | None = None) -> None:
        self.host = host
        self.reason = reason
        self.address = address
        where = f"{host} ({address})" if address and address != host else host
        super().__init__(f"destination {where} refused: {reason}")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address (a code), or None when it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = blocked_reason(embedded)
            return f"ipv4_mapped_{inner}" if inner else None
    for net, reason in BLOCKED_NETWORKS:
        if ip.version == net.version and ip in net:
            return reason
    if not ip.is_global:  # a backstop for ranges the table above does not name
        return "reserved"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses outbound deliveries may reach: public ones plus the operator's allow-list."""

    allow: tuple[IPNetwork, ...] = field(default=())

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> AddressPolicy:
        """Build from CIDR strings (e.g. PULSE_DELIVERY_ALLOW_CIDRS); ValueError names a bad one."""
        nets: list[IPNetwork] = []
        for raw in cidrs:
            text = raw.strip()
            if not text:
                continue
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError as exc:
                raise ValueError(f"invalid CIDR {text!r}: {exc}") from exc
        return cls(tuple(nets))

    def allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allow)

    def check_ip(self, ip: IPAddress, host: str = "") -> None:
        """Raise BlockedDestination unless `ip` is public or allow-listed."""
        if self.allowed(ip):
            return
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None and self.allowed(ip.ipv4_mapped):
            return
        reason = blocked_reason(ip)
        if reason is not None:
            raise BlockedDestination(host or str(ip), reason, str(ip))

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Resolve `host` and vet every address; return them in resolver order (never empty)."""
        name = host.strip("[]")
        try:
            literal: IPAddress | None = ipaddress.ip_address(name)
        except ValueError:
            literal = None
        if literal is not None:
            self.check_ip(literal, host)
            return [literal]
        if not name or len(name) > 253:
            raise BlockedDestination(host, "invalid_host")
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise BlockedDestination(host, "unresolvable") from exc
        addresses: list[IPAddress] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise BlockedDestination(host, "unresolvable")
        for ip in addresses:
            self.check_ip(ip, host)
        return addresses

    async def check_url(self, url: str, *, schemes: Sequence[str] = ("http", "https")) -> list[IPAddress]:
        """Save-time check of a URL: scheme, no credentials, a host that resolves to allowed addresses."""
        parts = urlsplit(url)
        if parts.scheme not in schemes:
            raise BlockedDestination(url, "scheme_not_allowed")
        if parts.username or parts.password:
            raise BlockedDestination(parts.hostname or url, "credentials_in_url")
        host = parts.hostname
        if not host:
            raise BlockedDestination(url, "invalid_host")
        try:
            port = parts.port or (443 if parts.scheme in ("https", "mqtts") else 80)
        except ValueError as exc:
            raise BlockedDestination(host, "invalid_port") from exc
        return await self.resolve(host, port)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that connects only to vetted addresses of the requested host."""

    def __init__(self, policy: AddressPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.policy.resolve(host, port)
        last: Exception | None = None
        for ip in addresses:  # the vetted address itself: no second lookup, no rebinding window
            try:
                return await self.inner.connect_tcp(
                    str(ip), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedDestination(path, "unix_socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_transport(
    policy: AddressPolicy,
    *,
    verify: ssl.SSLContext | bool = True,
    max_connections: int = 100,
    keepalive_expiry: float = 30.0,
) -> httpx.AsyncBaseTransport:
    """An httpx transport whose every connection goes through `GuardedBackend`.

    Use with `httpx.AsyncClient(transport=..., trust_env=False)`: an environment proxy would
    otherwise be the address connected to, and the guard would vet the proxy, not the target.
    """
    transport = httpx.AsyncHTTPTransport(verify=verify)
    ssl_context = httpx.create_ssl_context(verify=verify)
    # httpx exposes no network-backend option; swap in a pool built with ours (same settings)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=keepalive_expiry,
        network_backend=GuardedBackend(policy),
    )
    return transport


class _PinnedNameContext(ssl.SSLContext):
    """An SSLContext that sends SNI for and verifies `pinned_name`, whatever host the caller gives
    (the vetted IP address the client was told to connect to)."""

    pinned_name: str = ""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:  # blocking clients (paho)
        kwargs["server_hostname"] = self.pinned_name
        return super().wrap_socket(sock, *args, **kwargs)

    def wrap_bio(self, incoming: Any, outgoing: Any, *args: Any, **kwargs: Any) -> Any:  # asyncio clients
        kwargs["server_hostname"] = self.pinned_name
        return super().wrap_bio(incoming, outgoing, *args, **kwargs)


def pinned_tls_context(server_name: str, *, verify: bool = True, cadata: str | None = None) -> ssl.SSLContext:
    """TLS settings for a client told to connect to a vetted IP: SNI and the certificate check
    still use `server_name` (paho-mqtt, aiosmtplib would otherwise use the IP)."""
    ctx = _PinnedNameContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.pinned_name = server_name
    if verify and cadata:
        ctx.load_verify_locations(cadata=cadata)
    elif verify:
        ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
