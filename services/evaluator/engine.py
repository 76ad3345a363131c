"""The evaluation engine: observations in, device state and alert transitions out.

Hot path (`evaluate`) is in memory only: the device tracker, rules indexed by (tenant,
metric), and the set of open alert fingerprints. What must reach Postgres is queued and
written by `commit` in one transaction (state transitions, alert opens/resolves) before the
stream entries are acknowledged; last_seen of every active device and repeat counts of open
alerts are written by `flush` every few seconds, one multi-row statement each. Device status
messages are published after their commit; alert events go through the outbox.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from services.common.bus import Entry, RetryLater, publish_many
from services.common.db import Conn, Database
from services.evaluator import builtin
from services.evaluator.alerts import (
    AlertSpec,
    OpenAlert,
    Outbox,
    iso_utc,
    load_open,
    open_alert,
    record_repeats,
    resolve_alert,
)
from services.evaluator.rules import RULE_ALERT_TYPE, Decision, Rule, RuleBook, decide, rule_fingerprint
from services.evaluator.settings import EvaluatorSettings
from services.evaluator.sharding import shard_of
from services.evaluator.state import Device, DeviceStatus, DeviceTracker, Thresholds, Transition

__all__ = ["Evaluator"]

log = logging.getLogger("pulse.evaluator")

STALE_KEY = "evaluator.stale_after_s"
OFFLINE_KEY = "evaluator.offline_after_s"


@dataclass(frozen=True, slots=True)
class _Open:
    spec: AlertSpec
    at: float


@dataclass(frozen=True, slots=True)
class _Resolve:
    tenant_id: str
    fingerprint: str
    at: float


_Op = _Open | _Resolve


def _seen_at(raw: Any, now: float) -> float:
    """received_at of an observation as Unix seconds (never in the future)."""
    if isinstance(raw, str):
        try:
            return min(datetime.fromisoformat(raw).timestamp(), now)
        except ValueError:
            pass
    return now


def _device_key(d: Device) -> tuple[str, str]:
    return (d.tenant_id, d.device_id)


def _mark(d: Device, rule_id: str) -> None:
    if d.rules_active is None:
        d.rules_active = {rule_id}
    else:
        d.rules_active.add(rule_id)


class Evaluator:
    """Evaluation state of one process, and the Postgres/Redis writes that follow from it."""

    def __init__(
        self, settings: EvaluatorSettings, db: Database, r: aioredis.Redis, outbox: Outbox, *, shard: int = 0
    ) -> None:
        self.settings = settings
        self.db = db
        self.redis = r
        self.tracker = DeviceTracker(Thresholds(settings.stale_after_s, settings.offline_after_s))
        self.rules = RuleBook()
        self.open: dict[tuple[str, str], OpenAlert] = {}
        self.pending: dict[tuple[str, str], tuple[float, Rule, Device, float]] = {}
        self.repeats: dict[tuple[str, str], list[float]] = {}
        self.ok_clock_classes = frozenset(settings.ptp_clock_classes_ok)
        self.outbox = outbox
        self.shard = shard
        self.lock = asyncio.Lock()  # one writer at a time: commits and flushes never interleave
        self.evaluated = 0
        self.state_writes = 0  # device_state statements issued (each a multi-row upsert)
        self._ops: list[_Op] = []
        self._transitioned: set[Device] = set()
        self._status: list[dict[str, Any]] = []
        self._settings_version: tuple[Any, ...] = ()

    # -- start-up ------------------------------------------------------------------------------

    async def load(self) -> None:
        """Rebuild memory from Postgres: thresholds, rules, device states, open alerts."""
        await self.refresh()
        async with self.db.worker() as conn:
            rows = await conn.fetch(
                "SELECT s.tenant_id, s.device_id, d.site_id, s.status, extract(epoch FROM s.last_seen_at) AS seen,"
                " extract(epoch FROM s.status_changed_at) AS changed, s.stale_after_s,"
                " extract(epoch FROM s.last_heartbeat_at) AS hb, extract(epoch FROM s.last_telemetry_at) AS tel"
                " FROM device_state s JOIN devices d USING (tenant_id, device_id)"
            )
        devices = []
        for row in rows:
            if not self.owns(row["tenant_id"], row["device_id"]):
                continue
            seen = row["seen"]
            status = DeviceStatus(row["status"]) if seen is not None else DeviceStatus.OFFLINE
            d = Device(
                row["tenant_id"],
                row["device_id"],
                row["site_id"],
                status,
                float(seen or 0.0),
                float(row["changed"] or 0.0),
                None if row["stale_after_s"] is None else float(row["stale_after_s"]),
            )
            d.last_heartbeat = float(row["hb"] or 0.0)
            d.last_telemetry = float(row["tel"] or 0.0)
            devices.append(d)
        self.tracker.load(devices)
        self.open = await load_open(self.db, self.owns)
        for tenant_id, fingerprint in self.open:
            if fingerprint.startswith("RULE:"):
                _, rule_id, device_id = fingerprint.split(":", 2)
                _mark(self.tracker.device(tenant_id, device_id), rule_id)
        log.info("evaluator state loaded", extra={"devices": len(devices), "open_alerts": len(self.open)})

    def owns(self, tenant_id: str, device_id: str | None) -> bool:
        """Whether the device belongs to this evaluator's shard."""
        shards = self.settings.shards
        return shards <= 1 or (device_id is not None and shard_of(tenant_id, device_id, shards) == self.shard)

    # -- hot path ------------------------------------------------------------------------------

    async def handle(self, entries: list[Entry]) -> None:
        """Stream handler: evaluate, then commit before the bus acknowledges the entries."""
        now = time.time()
        for entry in entries:
            self.evaluate(entry.data, now)
        await self.commit()

    def evaluate(self, data: Mapping[str, Any], now: float) -> None:
        tenant_id = data["tenant_id"]
        device_id = data["device_id"]
        site_id = data.get("site_id")
        seen = _seen_at(data.get("received_at"), now)
        d, transition = self.tracker.observe(tenant_id, device_id, site_id, data.get("kind", ""), seen, now)
        if transition is not None:
            self._on_transition(transition)
        self.evaluated += 1
        metrics = data.get("metrics")
        if metrics:
            by_metric = self.rules.by_metric
            for name, value in metrics.items():
                rules = by_metric.get((tenant_id, name))
                if rules is None or not isinstance(value, int | float):
                    continue
                active = d.rules_active
                for rule in rules:
                    # fast path: no alert open or pending for (rule, device) and the condition is false
                    if not rule.op(value, rule.threshold) and (active is None or rule.rule_id not in active):
                        continue
                    if self.rules.selects(rule, device_id, d.site_id):
                        self._apply_rule(rule, d, float(value), now)
        source = data.get("source")
        if source == "ptp":
            verdicts = builtin.ptp_alerts(
                tenant_id, device_id, d.site_id, data.get("states") or {}, metrics or {}, self.ok_clock_classes
            )
        elif source == "ca":
            verdicts = builtin.epics_alerts(tenant_id, device_id, d.site_id, data.get("states") or {})
        else:
            return
        for fingerprint, spec in verdicts:
            if spec is None:
                self._clear(tenant_id, fingerprint, now)
            else:
                self._want(spec, now)

    def _apply_rule(self, rule: Rule, d: Device, value: float, now: float) -> None:
        key = (d.tenant_id, rule_fingerprint(rule.rule_id, d.device_id))
        pend = self.pending.get(key)
        decision = decide(
            rule, value, is_open=key in self.open, pending_since=None if pend is None else pend[0], now=now
        )
        if decision is Decision.REPEAT:
            self._repeat(key, now)
            return
        if decision is Decision.OPEN:
            self.pending.pop(key, None)
            self._want(self._rule_spec(rule, d, value), now)
            _mark(d, rule.rule_id)
        elif decision is Decision.PENDING:
            self.pending[key] = (now if pend is None else pend[0], rule, d, value)
            _mark(d, rule.rule_id)
        else:
            if decision is Decision.RESOLVE:
                self._clear(d.tenant_id, key[1], now)
            if pend is not None:
                del self.pending[key]
            if d.rules_active is not None:
                d.rules_active.discard(rule.rule_id)

    @staticmethod
    def _rule_spec(rule: Rule, d: Device, value: float) -> AlertSpec:
        return AlertSpec(
            tenant_id=d.tenant_id,
            device_id=d.device_id,
            site_id=d.site_id,
            fingerprint=rule_fingerprint(rule.rule_id, d.device_id),
            alert_type=RULE_ALERT_TYPE,
            severity=rule.severity,
            summary=rule.summary(d.device_id, value),
            rule_id=rule.rule_id,
            details={"metric": rule.metric, "value": value, "threshold": rule.threshold},
        )

    def _want(self, spec: AlertSpec, at: float) -> None:
        key = (spec.tenant_id, spec.fingerprint)
        current = self.open.get(key)
        if current is not None and current.severity == spec.severity and current.alert_type == spec.alert_type:
            self._repeat(key, at)
            return
        if current is not None:  # severity or type changed: the old alert ends, a new one opens
            self._ops.append(_Resolve(spec.tenant_id, spec.fingerprint, at))
            self.repeats.pop(key, None)
        self.open[key] = OpenAlert("", spec.alert_type, spec.severity)
        self._ops.append(_Open(spec, at))

    def _clear(self, tenant_id: str, fingerprint: str, at: float) -> None:
        key = (tenant_id, fingerprint)
        if self.open.pop(key, None) is not None:
            self.repeats.pop(key, None)
            self._ops.append(_Resolve(tenant_id, fingerprint, at))

    def _repeat(self, key: tuple[str, str], at: float) -> None:
        counted = self.repeats.get(key)
        if counted is None:
            self.repeats[key] = [1, at]
        else:
            counted[0] += 1
            counted[1] = at

    def _on_transition(self, t: Transition) -> None:
        d = t.device
        self._transitioned.add(d)
        self._status.append(
            {
                "v": 1,
                "tenant_id": d.tenant_id,
                "device_id": d.device_id,
                "status": t.status.value,
                "previous": t.previous.value,
                "at": iso_utc(t.at),
            }
        )
        if t.status is DeviceStatus.STALE:
            self._want(builtin.no_heartbeat(d.tenant_id, d.device_id, d.site_id, t.at - d.last_seen), t.at)
        elif t.status is DeviceStatus.ONLINE:
            self._clear(d.tenant_id, builtin.no_heartbeat_fingerprint(d.device_id), t.at)

    # -- timers --------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Transition]:
        """Deadlines that passed: state transitions, and rule conditions held long enough."""
        transitions = self.tracker.expire(now)
        for t in transitions:
            self._on_transition(t)
        if self.pending:
            due = [k for k, (since, rule, _d, _v) in self.pending.items() if now - since >= rule.duration_s]
            for key in due:
                _since, rule, d, value = self.pending.pop(key)
                if key not in self.open:
                    self._want(self._rule_spec(rule, d, value), now)
        return transitions

    def has_work(self) -> bool:
        return bool(self._ops or self._transitioned or self._status)

    # -- writes --------------------------------------------------------------------------------

    async def commit(self) -> None:
        """Write queued transitions and alert changes in one transaction; raise RetryLater if down."""
        async with self.lock:
            ops, self._ops = self._ops, []
            changed, self._transitioned = self._transitioned, set()
            status, self._status = self._status, []
            if ops or changed:
                try:
                    async with self.db.worker() as conn:
                        await self._write_states(conn, changed)
                        opened = [(op, await self._apply(conn, op)) for op in ops]
                except Exception as exc:
                    self._ops = ops + self._ops
                    self._transitioned |= changed
                    self._status = status + self._status
                    raise RetryLater(f"postgres write failed: {exc!r}") from exc
                for op, alert in opened:
                    if isinstance(op, _Open) and alert is not None:
                        current = self.open.get((op.spec.tenant_id, op.spec.fingerprint))
                        if current is not None and not current.alert_id:
                            current.alert_id = alert.alert_id
                if ops:
                    self.outbox.wake.set()
            if status:
                try:
                    await publish_many(
                        self.redis, self.settings.streams.device_status, status, maxlen=self.settings.stream_maxlen
                    )
                except aioredis.RedisError as exc:
                    self._status = status + self._status
                    log.warning("device status not published; will retry", extra={"error": repr(exc)})

    @staticmethod
    async def _apply(conn: Conn, op: _Op) -> OpenAlert | None:
        if isinstance(op, _Open):
            return await open_alert(conn, op.spec, op.at)
        await resolve_alert(conn, op.tenant_id, op.fingerprint, op.at)
        return None

    async def flush(self) -> None:
        """Write last_seen of every device seen since the last flush, and alert repeat counts."""
        dirty, self.tracker.dirty = self.tracker.dirty, set()
        try:
            # no lock: this touches only the last-seen columns, which commits never move back
            async with self.db.worker() as conn:
                await self._write_states(conn, dirty, with_status=False)
        except Exception:
            self.tracker.dirty |= dirty
            raise
        async with self.lock:
            repeats, self.repeats = self.repeats, {}
            if not repeats:
                return
            try:
                async with self.db.worker() as conn:
                    await record_repeats(conn, {k: (int(v[0]), v[1]) for k, v in repeats.items()})
            except Exception:
                for key, (n, at) in repeats.items():
                    counted = self.repeats.setdefault(key, [0, at])
                    counted[0] += n
                    counted[1] = max(counted[1], at)
                raise

    async def _write_states(self, conn: Conn, devices: Iterable[Device], *, with_status: bool = True) -> None:
        # sorted: concurrent upserts (a commit and a flush) take row locks in the same order
        ds = sorted(devices, key=_device_key)
        if not ds:
            return
        self.state_writes += 1
        status = " status = EXCLUDED.status, status_changed_at = EXCLUDED.status_changed_at," if with_status else ""
        # one statement for the whole batch; rows of devices unknown to `devices` are skipped
        await conn.execute(
            "INSERT INTO device_state (tenant_id, device_id, status, last_seen_at, last_heartbeat_at,"
            " last_telemetry_at, status_changed_at)"
            " SELECT u.t, u.d, u.s, to_timestamp(NULLIF(u.seen, 0)), to_timestamp(NULLIF(u.hb, 0)),"
            " to_timestamp(NULLIF(u.tel, 0)), COALESCE(to_timestamp(NULLIF(u.ch, 0)), now())"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[], $6::float8[],"
            " $7::float8[]) AS u(t, d, s, seen, hb, tel, ch)"
            " JOIN devices dv ON dv.tenant_id = u.t AND dv.device_id = u.d"
            f" ON CONFLICT (tenant_id, device_id) DO UPDATE SET{status}"
            " last_seen_at = GREATEST(device_state.last_seen_at, EXCLUDED.last_seen_at),"
            " last_heartbeat_at = GREATEST(device_state.last_heartbeat_at, EXCLUDED.last_heartbeat_at),"
            " last_telemetry_at = GREATEST(device_state.last_telemetry_at, EXCLUDED.last_telemetry_at)",
            [d.tenant_id for d in ds],
            [d.device_id for d in ds],
            [d.status.value for d in ds],
            [d.last_seen for d in ds],
            [d.last_heartbeat for d in ds],
            [d.last_telemetry for d in ds],
            [d.changed_at for d in ds],
        )

    # -- configuration from Postgres -----------------------------------------------------------

    async def refresh(self) -> None:
        """Reload rules when alert_rules changed, and staleness thresholds from settings/device_state."""
        async with self.db.worker() as conn:
            version = tuple(await conn.fetchrow("SELECT count(*), max(updated_at) FROM alert_rules") or ())
            rule_rows = await conn.fetch("SELECT * FROM alert_rules") if version != self.rules.version else None
            settings = await conn.fetch(
                "SELECT tenant_id, key, value FROM settings WHERE key = ANY($1::text[])", [STALE_KEY, OFFLINE_KEY]
            )
            overrides = await conn.fetch(
                "SELECT tenant_id, device_id, stale_after_s FROM device_state WHERE stale_after_s IS NOT NULL"
            )
        if rule_rows is not None:
            self._install_rules([Rule.from_row(r) for r in rule_rows], version)
        self._install_thresholds(settings, overrides)

    def _install_rules(self, rules: list[Rule], version: tuple[Any, ...]) -> None:
        gone = self.rules.replace(rules, version)
        now = time.time()
        for rule in gone:  # deleted or disabled: its open alerts resolve
            prefix = f"RULE:{rule.rule_id}:"
            for tenant_id, fingerprint in [k for k in self.open if k[1].startswith(prefix)]:
                self._clear(tenant_id, fingerprint, now)
        for key, (since, rule, d, value) in list(self.pending.items()):
            current = self.rules.rules.get(rule.rule_id)
            if current is None:
                del self.pending[key]
            else:
                self.pending[key] = (since, current, d, value)
        log.info("alert rules loaded", extra={"rules": len(self.rules.rules), "removed": len(gone)})

    def _install_thresholds(self, settings: Iterable[asyncpg.Record], overrides: Iterable[asyncpg.Record]) -> None:
        th = self.tracker.thresholds
        stale, offline = self.settings.stale_after_s, self.settings.offline_after_s
        tenant_stale: dict[str, float] = {}
        tenant_offline: dict[str, float] = {}
        for row in settings:
            value = row["value"]
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                continue
            if row["tenant_id"] is None:
                if row["key"] == STALE_KEY:
                    stale = float(value)
                else:
                    offline = float(value)
            elif row["key"] == STALE_KEY:
                tenant_stale[row["tenant_id"]] = float(value)
            else:
                tenant_offline[row["tenant_id"]] = float(value)
        per_device = {(r["tenant_id"], r["device_id"]): float(r["stale_after_s"]) for r in overrides}
        version = (stale, offline, tenant_stale, tenant_offline, per_device)
        if version == self._settings_version:
            return
        first = not self._settings_version
        self._settings_version = version
        th.stale_after_s, th.offline_after_s = stale, offline
        th.tenant_stale, th.tenant_offline = tenant_stale, tenant_offline
        for key, d in self.tracker.devices.items():
            d.stale_override = per_device.get(key)
        if not first:
            self.tracker.reschedule_all()
            log.info("staleness thresholds changed", extra={"stale_after_s": stale, "offline_after_s": offline})

    def forget_resolved(self, messages: Iterable[Mapping[str, Any]]) -> None:
        """A user resolved an alert: forget it, so the condition may open a new one."""
        for m in messages:
            if m.get("status") != "RESOLVED":
                continue
            key = (m["tenant_id"], m["fingerprint"])
            current = self.open.get(key)
            if current is not None and current.alert_id == m["alert_id"]:
                del self.open[key]
                self.repeats.pop(key, None)
