"""Alert rules (alert_rules table): comparison, threshold, hysteresis, duration, device selector.

A rule fires for a device when `value <comparison> threshold` has held for `duration_s`
(pending since the first matching sample; a sample that does not match cancels it). An open
rule alert resolves only once the value is past `clear_threshold` (hysteresis): below it for
> and >=, above it for < and <=; with no clear threshold, or for == and !=, when the
condition no longer holds. Rules are indexed by (tenant_id, metric) so an observation only
meets the rules that read one of its metrics.
"""

from __future__ import annotations

import enum
import fnmatch
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

__all__ = ["Comparison", "Decision", "Rule", "RuleBook", "decide", "rule_fingerprint"]

RULE_ALERT_TYPE = "THRESHOLD"


class Comparison(enum.StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="


_OPS: dict[Comparison, Callable[[float, float], bool]] = {
    Comparison.GT: operator.gt,
    Comparison.GE: operator.ge,
    Comparison.LT: operator.lt,
    Comparison.LE: operator.le,
    Comparison.EQ: operator.eq,
    Comparison.NE: operator.ne,
}


def rule_fingerprint(rule_id: str, device_id: str) -> str:
    return f"RULE:{rule_id}:{device_id}"


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    tenant_id: str
    name: str
    metric: str
    comparison: Comparison
    threshold: float
    clear_threshold: float | None = None
    duration_s: float = 0.0
    severity: str = "WARNING"
    device_ids: frozenset[str] | None = None
    site_id: str | None = None
    device_glob: str | None = None
    enabled: bool = True
    op: Callable[[float, float], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "op", _OPS[self.comparison])

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Rule:
        ids = row["device_ids"]
        return cls(
            rule_id=str(row["rule_id"]),
            tenant_id=row["tenant_id"],
            name=row["name"],
            metric=row["metric"],
            comparison=Comparison(row["comparison"]),
            threshold=float(row["threshold"]),
            clear_threshold=None if row["clear_threshold"] is None else float(row["clear_threshold"]),
            duration_s=float(row["duration_s"]),
            severity=row["severity"],
            device_ids=None if ids is None else frozenset(ids),
            site_id=row["site_id"],
            device_glob=row["device_glob"],
            enabled=row["enabled"],
        )

    def selects(self, device_id: str, site_id: str | None) -> bool:
        """All given parts of the selector must match; none given = every device of the tenant."""
        if self.device_ids is not None and device_id not in self.device_ids:
            return False
        if self.site_id is not None and site_id != self.site_id:
            return False
        return self.device_glob is None or fnmatch.fnmatchcase(device_id, self.device_glob)

    def fires(self, value: float) -> bool:
        return self.op(value, self.threshold)

    def clears(self, value: float) -> bool:
        c = self.clear_threshold
        if c is None or self.comparison in (Comparison.EQ, Comparison.NE):
            return not self.fires(value)
        if self.comparison in (Comparison.GT, Comparison.GE):
            return value < c
        return value > c

    def summary(self, device_id: str, value: float) -> str:
        return f"{self.name}: {self.metric}={value:g} {self.comparison.value} {self.threshold:g} on {device_id}"


class Decision(enum.Enum):
    NONE = "none"
    PENDING = "pending"  # condition holds, duration not reached yet
    OPEN = "open"
    REPEAT = "repeat"  # condition still holds while the alert is open
    RESOLVE = "resolve"


def decide(rule: Rule, value: float, *, is_open: bool, pending_since: float | None, now: float) -> Decision:
    """What one sample means for (rule, device), given whether its alert is open."""
    if is_open:
        return Decision.RESOLVE if rule.clears(value) else Decision.REPEAT
    if not rule.fires(value):
        return Decision.NONE
    if rule.duration_s <= 0:
        return Decision.OPEN
    if pending_since is not None and now - pending_since >= rule.duration_s:
        return Decision.OPEN
    return Decision.PENDING


@dataclass
class RuleBook:
    """Enabled rules indexed by (tenant_id, metric), with a per-device selector cache."""

    rules: dict[str, Rule] = field(default_factory=dict)
    by_metric: dict[tuple[str, str], list[Rule]] = field(default_factory=dict)
    version: tuple[Any, ...] = ()
    _selected: dict[tuple[str, str, str | None], bool] = field(default_factory=dict)

    def replace(self, rules: Iterable[Rule], version: tuple[Any, ...]) -> list[Rule]:
        """Install a new rule set; return the rules that were deleted or disabled."""
        new = {r.rule_id: r for r in rules if r.enabled}
        gone = [r for rid, r in self.rules.items() if rid not in new]
        self.rules = new
        index: dict[tuple[str, str], list[Rule]] = {}
        for r in new.values():
            index.setdefault((r.tenant_id, r.metric), []).append(r)
        self.by_metric = index
        self.version = version
        self._selected.clear()
        return gone

    def for_metric(self, tenant_id: str, metric: str) -> list[Rule] | None:
        return self.by_metric.get((tenant_id, metric))

    def selects(self, rule: Rule, device_id: str, site_id: str | None) -> bool:
        if rule.device_glob is None:  # set and equality checks: cheaper than a cache entry
            return rule.selects(device_id, site_id)
        key = (rule.rule_id, device_id, site_id)
        hit = self._selected.get(key)
        if hit is None:
            hit = self._selected[key] = rule.selects(device_id, site_id)
        return hit
