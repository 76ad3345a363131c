"""Delivery channels, one module per integration type, all behind `base.Channel`."""

from __future__ import annotations

from services.common.ssrf import AddressPolicy
from services.delivery_worker.channels.base import Channel, Delivery, Outcome, OutcomeKind
from services.delivery_worker.channels.email import EmailChannel
from services.delivery_worker.channels.mqtt import MqttChannel
from services.delivery_worker.channels.snmp import SnmpChannel
from services.delivery_worker.channels.webhook import WebhookChannel

__all__ = ["Channel", "Delivery", "Outcome", "OutcomeKind", "build_channels"]


def build_channels(policy: AddressPolicy, *, timeout_s: float = 10.0, max_connections: int = 100) -> dict[str, Channel]:
    """Every channel this worker can deliver through, keyed by integrations.type."""
    return {
        "webhook": WebhookChannel(policy, timeout_s=timeout_s, max_connections=max_connections),
        "mqtt": MqttChannel(policy, timeout_s=timeout_s),
        "email": EmailChannel(policy, timeout_s=timeout_s),
        "snmp": SnmpChannel(policy, timeout_s=timeout_s),
    }
