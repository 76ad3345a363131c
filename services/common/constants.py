"""Stream names, consumer groups, Redis key prefixes and database roles, defined once."""

from __future__ import annotations

__all__ = [
    "BUS_FAILURES_PREFIX",
    "CHANNEL_DEVICE_CREDENTIALS",
    "DB_ROLE_ADMIN",
    "DB_ROLE_APP",
    "DB_ROLE_OPERATOR",
    "DB_ROLE_OWNER",
    "DB_ROLE_SERVICE",
    "DB_ROLE_WORKER",
    "DEAD_LETTER_SUFFIX",
    "EVALUATOR_LEASE_PREFIX",
    "EVALUATOR_REPLICAS_KEY",
    "GROUP_DISPATCHER",
    "GROUP_EVALUATOR",
    "GROUP_TELEMETRY_WRITER",
    "SCHEMA_VERSION",
    "SEND_TEST_RATE_PREFIX",
    "SERVICES",
    "STREAM_ALERTS",
    "STREAM_DELIVERIES",
    "STREAM_DEVICE_STATUS",
    "STREAM_OBSERVATIONS",
    "TENANT_SETTING",
]

# Every stream entry carries one JSON field `data` with this version number.
SCHEMA_VERSION = 1

# Default stream names; each is overridable per installation (see config.StreamNames).
STREAM_OBSERVATIONS = "pulse:observations"
STREAM_ALERTS = "pulse:alerts"
STREAM_DEVICE_STATUS = "pulse:device-status"
STREAM_DELIVERIES = "pulse:deliveries"

# Dead-letter stream for entries of stream S read by group G: f"{S}{DEAD_LETTER_SUFFIX}".
DEAD_LETTER_SUFFIX = ":dead"
# Hash counting handler failures per entry id: f"{BUS_FAILURES_PREFIX}{stream}:{group}".
BUS_FAILURES_PREFIX = "pulse:bus:failures:"

# Pub/sub channel: {"tenant_id", "device_id", "action"} when a device's credentials change
# (revoke, rotate, activate); ingest drops its cached credentials for that device.
CHANNEL_DEVICE_CREDENTIALS = "pulse:device-credentials"

# Counter of "send test" deliveries of one integration in the current minute:
# f"{SEND_TEST_RATE_PREFIX}{integration_id}" (expires with its window).
SEND_TEST_RATE_PREFIX = "pulse:delivery:send-test:"

GROUP_EVALUATOR = "evaluator"
GROUP_DISPATCHER = "dispatcher"
GROUP_TELEMETRY_WRITER = "telemetry-writer"

# Postgres roles created by db/migrations/0001.
DB_ROLE_OWNER = "pulse_owner"  # owns the schema; migrations run as it
DB_ROLE_APP = "pulse_app"  # customer-facing, bound by RLS to app.tenant_id
DB_ROLE_OPERATOR = "pulse_operator"  # audited cross-tenant reads
DB_ROLE_WORKER = "pulse_worker"  # internal cross-tenant workers, not a superuser
DB_ROLE_ADMIN = "pulse_admin"  # admin API (X-Admin-Key): tenants, provisioning, global settings
DB_ROLE_SERVICE = "pulse_service"  # login role of the services; holds no rights of its own
TENANT_SETTING = "app.tenant_id"

# Service name (container / compose / Helm key) -> Python package under services/.
SERVICES: dict[str, str] = {
    "ingest": "ingest",
    "evaluator": "evaluator",
    "dispatcher": "dispatcher",
    "delivery_worker": "delivery_worker",
    "ptp-consumer": "ptp_consumer",
    "energy-ws": "energy_ws",
    "ca-gateway": "ca_gateway",
    "ui": "ui",
}

# Evaluator stream shards (PULSE_EVALUATOR_SHARDS > 1): shard k of stream S is f"{S}:{k}"; its
# owner holds the lease f"{EVALUATOR_LEASE_PREFIX}{k}"; live replicas heartbeat in a sorted set.
EVALUATOR_LEASE_PREFIX = "pulse:evaluator:lease:"
EVALUATOR_REPLICAS_KEY = "pulse:evaluator:replicas"
