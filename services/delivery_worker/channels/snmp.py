"""SNMP trap channel (pysnmp, asyncio): SNMPv2c or SNMPv3 (authPriv / authNoPriv, SHA/AES).

config: {"host", "port" (162), "version": "v2c" | "v3", "oid_prefix" (default 1.3.6.1.4.1.99999),
"username", "security_level": "authPriv" (default) | "authNoPriv", "auth_protocol": "SHA" |
"SHA256" | "SHA512" (default SHA), "priv_protocol": "AES" | "AES256" (default AES),
"engine_id" (hex; default derived from the integration id, see `engine_id_for`)};
secrets: {"community"} for v2c, {"auth_password", "priv_password"} for v3.

The objects are laid out in docs/PULSE-MIB.txt under the prefix P: notifications P.0.1 (OPEN),
P.0.2 (ACKNOWLEDGED), P.0.3 (RESOLVED); varbinds P.1.1.1-13. A trap is unacknowledged UDP: a
success means it was sent, not received. The receiver's host is vetted by the SSRF guard and
the trap is sent to the vetted address. One SNMP engine per engine id and set of credentials is
kept (LRU), so each integration's USM credentials stay apart and v3 engine time grows.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time
from collections import OrderedDict
from typing import Any

from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    Integer32,
    NotificationType,
    ObjectIdentity,
    OctetString,
    SnmpEngine,
    Udp6TransportTarget,
    UdpTransportTarget,
    UsmUserData,
    send_notification,
    usmAesCfb128Protocol,
    usmAesCfb256Protocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMAC384SHA512AuthProtocol,
    usmHMACSHAAuthProtocol,
    usmNoPrivProtocol,
)
from pysnmp.proto.rfc1902 import ObjectName

from services.common.ssrf import AddressPolicy, BlockedDestination
from services.delivery_worker.channels.base import Delivery, Outcome

__all__ = ["DEFAULT_OID_PREFIX", "SEVERITY_CODES", "SnmpChannel", "engine_id_for", "trap_varbinds"]

DEFAULT_OID_PREFIX = "1.3.6.1.4.1.99999"
SEVERITY_CODES = {"CRITICAL": 1, "MAJOR": 2, "MINOR": 3, "WARNING": 4, "INFO": 5}
TRAP_BY_TRANSITION = {"OPEN": 1, "ACKNOWLEDGED": 2, "RESOLVED": 3}
_OID = re.compile(r"^1(\.\d{1,10}){3,40}$")
_AUTH = {"SHA": usmHMACSHAAuthProtocol, "SHA256": usmHMAC192SHA256AuthProtocol, "SHA512": usmHMAC384SHA512AuthProtocol}
_PRIV = {"AES": usmAesCfb128Protocol, "AES128": usmAesCfb128Protocol, "AES256": usmAesCfb256Protocol}
# the enterprise number 99999 with the RFC 3411 high bit, then format 5 (octets)
_ENGINE_PREFIX = "8001869f05"
_MAX_ENGINES = 256
_BOOTS_EPOCH = 1_700_000_000  # boots = seconds since then: fits snmpEngineBoots until ~2088


def engine_id_for(integration_id: str) -> str:
    """The default SNMPv3 engine id of an integration (hex): stable, so receivers can list it."""
    return _ENGINE_PREFIX + hashlib.sha256(integration_id.encode()).hexdigest()[:24]


def trap_varbinds(prefix: str, payload: dict[str, Any]) -> tuple[str, list[tuple[str, Any]]]:
    """(notification OID, [(oid, value)]) for a payload, as documented in docs/PULSE-MIB.txt."""
    alert = payload.get("alert", {})
    device = payload.get("device", {})
    obj = f"{prefix}.1.1"

    def text(value: Any) -> OctetString:
        return OctetString(("" if value is None else str(value)).encode()[:1024])

    varbinds: list[tuple[str, Any]] = [
        (f"{obj}.1", text(alert.get("alert_id"))),
        (f"{obj}.2", text(payload.get("tenant", {}).get("tenant_id"))),
        (f"{obj}.3", text(device.get("device_id"))),
        (f"{obj}.4", text(device.get("site_id"))),
        (f"{obj}.5", text(alert.get("alert_type"))),
        (f"{obj}.6", Integer32(SEVERITY_CODES.get(str(alert.get("severity")), 5))),
        (f"{obj}.7", text(alert.get("status"))),
        (f"{obj}.8", text(payload.get("transition"))),
        (f"{obj}.9", text(alert.get("summary"))),
        (f"{obj}.10", text(payload.get("at"))),
        (f"{obj}.11", text(payload.get("delivery_id"))),
        (f"{obj}.12", text(payload.get("links", {}).get("alert"))),
        (f"{obj}.13", text(payload.get("event_id"))),
    ]
    trap = f"{prefix}.0.{TRAP_BY_TRANSITION.get(str(payload.get('transition')), 1)}"
    return trap, varbinds


def _credentials_key(delivery: Delivery) -> str:
    """What distinguishes one set of credentials from another: changed secrets, a new engine."""
    cfg = delivery.config
    parts = [cfg.get(k) for k in ("version", "username", "security_level", "auth_protocol", "priv_protocol")]
    return hashlib.sha256(repr((parts, sorted(delivery.secrets.items()))).encode()).hexdigest()


def _engine(engine_id: str | None) -> SnmpEngine:
    """A fresh engine; for v3 with our engine id and boots taken from the clock.

    pysnmp would persist boots in a file under the temp dir for a custom engine id (blocking
    I/O, a leaked file handle, and nothing to write to on a read-only root filesystem). Boots
    from the clock still grow across engines, restarts and workers, which is what a receiver
    checking the time window needs."""
    engine = SnmpEngine()
    if engine_id:
        builder = engine.get_mib_builder()
        snmp_engine_id, snmp_engine_boots = builder.import_symbols(
            "__SNMP-FRAMEWORK-MIB", "snmpEngineID", "snmpEngineBoots"
        )
        snmp_engine_id.syntax = snmp_engine_id.syntax.clone(bytes.fromhex(engine_id))
        engine.snmpEngineID = snmp_engine_id.syntax
        snmp_engine_boots.syntax = snmp_engine_boots.syntax.clone(max(1, int(time.time()) - _BOOTS_EPOCH))
    return engine


class SnmpChannel:
    def __init__(self, policy: AddressPolicy, *, timeout_s: float = 10.0) -> None:
        self.policy = policy
        self.timeout_s = timeout_s
        # engines are costly to build (~0.1 s of CPU, on the loop: pysnmp binds them to it), so
        # one per engine id and credentials is reused; the least recently used beyond
        # `_MAX_ENGINES` is closed
        self._engines: OrderedDict[str, SnmpEngine] = OrderedDict()

    async def send(self, delivery: Delivery) -> Outcome:
        cfg = delivery.config
        host, port = cfg.get("host"), cfg.get("port", 162)
        prefix = str(cfg.get("oid_prefix") or DEFAULT_OID_PREFIX).strip(".")
        if not isinstance(host, str) or not host or not isinstance(port, int) or not 0 < port < 65536:
            return Outcome.failed("config: host is required and port must be 1-65535")
        if not _OID.match(prefix):
            return Outcome.failed("config: oid_prefix must be a numeric OID such as 1.3.6.1.4.1.99999")
        try:
            auth, engine_id = self._auth(delivery)
        except ValueError as exc:
            return Outcome.failed(f"config: {exc}")
        try:
            (ip, *_rest) = await self.policy.resolve(host, port)
        except BlockedDestination as exc:
            return Outcome.retry(str(exc)) if exc.reason == "unresolvable" else Outcome.failed(str(exc))
        engine = self._engine_for(engine_id, _credentials_key(delivery))
        try:
            target_cls = Udp6TransportTarget if isinstance(ip, ipaddress.IPv6Address) else UdpTransportTarget
            target = await target_cls.create((str(ip), port), timeout=self.timeout_s, retries=0)
            trap_oid, varbinds = trap_varbinds(prefix, delivery.payload)
            notification = NotificationType(ObjectIdentity(ObjectName(trap_oid))).add_varbinds(
                *((ObjectName(oid), value) for oid, value in varbinds)
            )
            error_indication, error_status, _index, _vbs = await send_notification(
                engine, auth, target, ContextData(), "trap", notification
            )
        except Exception as exc:  # pysnmp raises its own error types for transport and encoding problems
            return Outcome.retry(f"snmp: {type(exc).__name__}: {exc}"[:500])
        if error_indication:
            return Outcome.retry(f"snmp: {error_indication}"[:500])
        if error_status:
            return Outcome.failed(f"snmp: {error_status.prettyPrint()}"[:500])
        return Outcome.success()

    def _auth(self, delivery: Delivery) -> tuple[CommunityData | UsmUserData, str | None]:
        cfg, secrets = delivery.config, delivery.secrets
        version = cfg.get("version", "v2c")
        if version == "v2c":
            community = secrets.get("community")
            if not isinstance(community, str) or not community:
                raise ValueError("v2c needs secrets.community")
            return CommunityData(community, mpModel=1), None  # noqa: S508 - v2c is a customer choice
        if version != "v3":
            raise ValueError("version must be v2c or v3")
        user = cfg.get("username")
        level = cfg.get("security_level", "authPriv")
        auth_proto = _AUTH.get(str(cfg.get("auth_protocol", "SHA")).upper())
        priv_proto = _PRIV.get(str(cfg.get("priv_protocol", "AES")).upper())
        auth_key, priv_key = secrets.get("auth_password"), secrets.get("priv_password")
        if not isinstance(user, str) or not user:
            raise ValueError("v3 needs username")
        if auth_proto is None or priv_proto is None or level not in ("authPriv", "authNoPriv"):
            raise ValueError("v3: auth_protocol SHA|SHA256|SHA512, priv_protocol AES|AES256, authPriv|authNoPriv")
        if not isinstance(auth_key, str) or len(auth_key) < 8:
            raise ValueError("v3 needs secrets.auth_password of at least 8 characters")
        engine_id = str(cfg.get("engine_id") or engine_id_for(delivery.integration_id)).lower().removeprefix("0x")
        if not re.fullmatch(r"[0-9a-f]{10,64}", engine_id):
            raise ValueError("engine_id must be 5-32 bytes of hex")
        if level == "authNoPriv":
            return (
                UsmUserData(
                    user,
                    auth_key,
                    authProtocol=auth_proto,
                    privProtocol=usmNoPrivProtocol,
                ),
                engine_id,
            )
        if not isinstance(priv_key, str) or len(priv_key) < 8:
            raise ValueError("authPriv needs secrets.priv_password of at least 8 characters")
        return (
            UsmUserData(
                user,
                auth_key,
                priv_key,
                authProtocol=auth_proto,
                privProtocol=priv_proto,
            ),
            engine_id,
        )

    def _engine_for(self, engine_id: str | None, credentials: str) -> SnmpEngine:
        key = f"{engine_id}:{credentials}"
        engine = self._engines.get(key)
        if engine is not None:
            self._engines.move_to_end(key)
            return engine
        engine = _engine(engine_id)  # in the loop: pysnmp binds its engine to the running loop
        self._engines[key] = engine
        while len(self._engines) > _MAX_ENGINES:
            _old_key, old = self._engines.popitem(last=False)
            old.close_dispatcher()
        return engine

    async def close(self) -> None:
        for engine in self._engines.values():
            engine.close_dispatcher()
        self._engines.clear()
