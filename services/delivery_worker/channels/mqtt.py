"""MQTT channel: publish the JSON payload to the integration's broker (aiomqtt).

config: {"host", "port" (1883, or 8883 with tls), "topic" (template), "qos" (0|1|2, default 1),
"retain" (default false), "tls" (default false), "tls_verify" (default true), "ca_cert" (PEM),
"username"}; secrets: {"password"}. The topic template may use {tenant_id}, {device_id},
{site_id}, {severity}, {alert_type}, {alert_id}; it must start with `alerts/` and hold no
wildcard. Values are made topic-safe ('/', '+', '#' become '_') so they cannot add levels.
The broker's host is vetted by the SSRF guard and the connection is made to the vetted address.
"""

from __future__ import annotations

import asyncio
import ssl
import string
import uuid
from typing import Any

import aiomqtt
import msgspec
from paho.mqtt.reasoncodes import ReasonCode

from services.common.ssrf import AddressPolicy, BlockedDestination, pinned_tls_context
from services.delivery_worker.channels.base import Delivery, Outcome

__all__ = ["TOPIC_FIELDS", "InvalidTopic", "MqttChannel", "render_topic", "validate_topic_template"]

TOPIC_FIELDS = frozenset({"tenant_id", "device_id", "site_id", "severity", "alert_type", "alert_id"})
DEFAULT_TOPIC = "alerts/{tenant_id}/{severity}/{device_id}"
_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_", "\x00": "_"})
_encoder = msgspec.json.Encoder()
# CONNACK codes meaning our credentials or rights are wrong: retrying cannot help
_REFUSED_FOR_GOOD = {4, 5, 134, 135, 138, 140}


class InvalidTopic(ValueError):
    """A topic template that does not start with alerts/, uses a wildcard or an unknown field."""


def validate_topic_template(template: str) -> None:
    if not template.startswith("alerts/"):
        raise InvalidTopic("topic must start with alerts/")
    if "+" in template or "#" in template or "\x00" in template:
        raise InvalidTopic("topic must not contain wildcards (+, #)")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidTopic(f"topic template: {exc}") from exc
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TOPIC_FIELDS or spec or conversion:
            raise InvalidTopic(f"topic template: unknown field {{{name}}}; allowed: {sorted(TOPIC_FIELDS)}")


def render_topic(template: str, payload: dict[str, Any]) -> str:
    validate_topic_template(template)
    alert = payload.get("alert", {})
    device = payload.get("device", {})
    values = {
        "tenant_id": payload.get("tenant", {}).get("tenant_id"),
        "device_id": device.get("device_id"),
        "site_id": device.get("site_id"),
        "severity": alert.get("severity"),
        "alert_type": alert.get("alert_type"),
        "alert_id": alert.get("alert_id"),
    }
    safe = {k: (str(v) if v is not None else "none").translate(_UNSAFE) or "_" for k, v in values.items()}
    return template.format_map(safe)


class MqttChannel:
    def __init__(self, policy: AddressPolicy, *, timeout_s: float = 10.0) -> None:
        self.policy = policy
        self.timeout_s = timeout_s

    async def send(self, delivery: Delivery) -> Outcome:
        cfg = delivery.config
        host = cfg.get("host")
        if not isinstance(host, str) or not host:
            return Outcome.failed("config: host is required")
        use_tls = bool(cfg.get("tls", False))
        port = cfg.get("port") or (8883 if use_tls else 1883)
        qos = cfg.get("qos", 1)
        if not isinstance(port, int) or not 0 < port < 65536 or qos not in (0, 1, 2):
            return Outcome.failed("config: port must be 1-65535 and qos 0, 1 or 2")
        try:
            topic = render_topic(str(cfg.get("topic") or DEFAULT_TOPIC), delivery.payload)
        except InvalidTopic as exc:
            return Outcome.failed(f"config: {exc}")
        try:
            addresses = await self.policy.resolve(host, port)
        except BlockedDestination as exc:
            return Outcome.retry(str(exc)) if exc.reason == "unresolvable" else Outcome.failed(str(exc))
        password = delivery.secrets.get("password")
        tls_context = None
        if use_tls:
            ca = cfg.get("ca_cert")
            try:
                tls_context = pinned_tls_context(
                    host, verify=bool(cfg.get("tls_verify", True)), cadata=ca if isinstance(ca, str) and ca else None
                )
            except (ssl.SSLError, ValueError) as exc:
                return Outcome.failed(f"config: ca_cert: {exc}")
        try:
            async with asyncio.timeout(self.timeout_s):
                async with (
                    aiomqtt.Client(
                        str(addresses[0]),  # the vetted address; TLS still checks `host`
                        port,
                        username=cfg.get("username") or None,
                        password=password if isinstance(password, str) and password else None,
                        identifier=f"pulse-delivery-{uuid.uuid4().hex[:12]}",
                        tls_context=tls_context,
                        timeout=self.timeout_s,
                    ) as client
                ):
                    await client.publish(
                        topic, _encoder.encode(delivery.payload), qos=qos, retain=bool(cfg.get("retain", False))
                    )
        except TimeoutError:
            return Outcome.retry("timeout")
        except aiomqtt.MqttCodeError as exc:
            code = exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc
            if code in _REFUSED_FOR_GOOD:
                return Outcome.failed(f"mqtt: refused: {exc}")
            return Outcome.retry(f"mqtt: {exc}"[:500])
        except (aiomqtt.MqttError, OSError, ssl.SSLError) as exc:
            return Outcome.retry(f"mqtt: {type(exc).__name__}: {exc}"[:500])
        return Outcome.success()

    async def close(self) -> None:
        return None
