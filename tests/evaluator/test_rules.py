"""Rule logic without servers: comparisons, hysteresis, duration, selectors."""

from __future__ import annotations

import pytest

from services.evaluator.rules import Comparison, Decision, Rule, RuleBook, decide

pytestmark = pytest.mark.unit


def rule(**kw: object) -> Rule:
    base: dict[str, object] = {
        "rule_id": "r1",
        "tenant_id": "t",
        "name": "n",
        "metric": "m",
        "comparison": Comparison.GT,
        "threshold": 30.0,
    }
    base.update(kw)
    return Rule(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("comparison", "fires", "quiet"),
    [(">", 31, 30), (">=", 30, 29), ("<", 29, 30), ("<=", 30, 31), ("==", 30, 31), ("!=", 31, 30)],
)
def test_each_comparison_fires_on_its_side_of_the_threshold(comparison: str, fires: float, quiet: float) -> None:
    r = rule(comparison=Comparison(comparison))
    assert decide(r, fires, is_open=False, pending_since=None, now=0) is Decision.OPEN
    assert decide(r, quiet, is_open=False, pending_since=None, now=0) is Decision.NONE


def test_open_alert_resolves_only_past_the_clear_threshold() -> None:
    above = rule(clear_threshold=25.0)
    assert decide(above, 28, is_open=True, pending_since=None, now=0) is Decision.REPEAT
    assert decide(above, 25, is_open=True, pending_since=None, now=0) is Decision.REPEAT
    assert decide(above, 24.9, is_open=True, pending_since=None, now=0) is Decision.RESOLVE
    below = rule(comparison=Comparison.LT, threshold=10.0, clear_threshold=15.0)
    assert decide(below, 12, is_open=True, pending_since=None, now=0) is Decision.REPEAT
    assert decide(below, 15.1, is_open=True, pending_since=None, now=0) is Decision.RESOLVE


def test_without_clear_threshold_the_alert_resolves_when_the_condition_stops() -> None:
    r = rule()
    assert decide(r, 30, is_open=True, pending_since=None, now=0) is Decision.RESOLVE
    assert decide(r, 31, is_open=True, pending_since=None, now=0) is Decision.REPEAT


def test_duration_keeps_the_condition_pending_until_it_held_long_enough() -> None:
    r = rule(duration_s=10.0)
    assert decide(r, 31, is_open=False, pending_since=None, now=100) is Decision.PENDING
    assert decide(r, 31, is_open=False, pending_since=100, now=105) is Decision.PENDING
    assert decide(r, 31, is_open=False, pending_since=100, now=110) is Decision.OPEN
    assert decide(r, 20, is_open=False, pending_since=100, now=111) is Decision.NONE


def test_selector_parts_must_all_match() -> None:
    r = rule(device_ids=frozenset({"pump-1", "fan-1"}), site_id="north", device_glob="pump-*")
    assert r.selects("pump-1", "north")
    assert not r.selects("pump-1", "south")
    assert not r.selects("fan-1", "north")
    assert not r.selects("pump-2", "north")
    assert rule().selects("anything", None)


def test_rule_book_indexes_by_tenant_and_metric_and_reports_removed_rules() -> None:
    book = RuleBook()
    a, b = rule(rule_id="a"), rule(rule_id="b", metric="other")
    assert book.replace([a, b], (2,)) == []
    assert book.for_metric("t", "m") == [a]
    assert book.for_metric("x", "m") is None
    assert book.replace([a, rule(rule_id="b", metric="other", enabled=False)], (3,)) == [b]
    assert book.for_metric("t", "other") is None
