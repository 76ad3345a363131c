from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.common.config import (
    DEFAULT_ADMIN_KEY,
    CommonSettings,
    ConfigError,
    Mode,
    Secret,
    Url,
    env,
    load,
)

pytestmark = pytest.mark.unit

PROD_OK = {
    "PULSE_MODE": "PROD",
    "PULSE_DATABASE_URL": "postgresql://pulse_service:s3cr3t-long@db:5432/pulse",
    "PULSE_REDIS_URL": "redis://redis:6379/0",
    "PULSE_ADMIN_KEYS": "k" * 32,
}


@dataclass(frozen=True, kw_only=True)
class IngestLike(CommonSettings):
    max_payload_bytes: int = env("PULSE_INGEST_MAX_PAYLOAD_BYTES", minimum=1)
    store_rejects: bool = env("PULSE_INGEST_STORE_REJECTS", False)


def test_defaults_give_a_working_dev_configuration() -> None:
    s = load(CommonSettings, {})
    assert s.mode is Mode.DEV
    assert s.database_url.startswith("postgresql://")
    assert s.admin_keys == [Secret(DEFAULT_ADMIN_KEY)]


def test_missing_required_variable_is_named_with_what_it_expects() -> None:
    with pytest.raises(ConfigError) as err:
        load(IngestLike, {})
    assert err.value.problems == [("PULSE_INGEST_MAX_PAYLOAD_BYTES", "is required; expected an integer >= 1")]
    assert "PULSE_INGEST_MAX_PAYLOAD_BYTES" in str(err.value)


@pytest.mark.parametrize(
    ("var", "value", "expects"),
    [
        ("PULSE_MODE", "TEST", "one of DEV|PROD"),
        ("PULSE_HTTP_PORT", "eighty", "an integer >= 0"),
        ("PULSE_DATABASE_URL", "mysql://db/pulse", "scheme postgresql|postgres"),
        ("PULSE_REDIS_URL", "not a url", "scheme redis|rediss|unix"),
        ("PULSE_INGEST_STORE_REJECTS", "maybe", "true or false"),
        ("PULSE_INGEST_MAX_PAYLOAD_BYTES", "0", "an integer >= 1"),
    ],
)
def test_invalid_variable_is_named_with_what_it_expects(var: str, value: str, expects: str) -> None:
    environ = {"PULSE_INGEST_MAX_PAYLOAD_BYTES": "8192", var: value}
    with pytest.raises(ConfigError) as err:
        load(IngestLike, environ)
    [(name, why)] = err.value.problems
    assert name == var
    assert expects in why and repr(value) in why


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load(IngestLike, {"PULSE_MODE": "x", "PULSE_HTTP_PORT": "-1"})
    assert [v for v, _ in err.value.problems] == ["PULSE_MODE", "PULSE_HTTP_PORT", "PULSE_INGEST_MAX_PAYLOAD_BYTES"]


def test_secrets_never_show_in_errors_or_repr() -> None:
    s = load(CommonSettings, {"PULSE_ADMIN_KEYS": "alpha-key,beta-key"})
    assert len(s.admin_keys) == 2
    assert "alpha-key" not in repr(s) and "alpha-key" not in str(s.summary())
    with pytest.raises(ConfigError) as err:
        load(CommonSettings, {"PULSE_ADMIN_KEYS": ","})
    assert err.value.problems == [("PULSE_ADMIN_KEYS", "needs at least one key")]


def test_summary_redacts_passwords() -> None:
    s = load(CommonSettings, {"PULSE_DATABASE_URL": "postgresql://u:hunter2@db/pulse"})
    assert s.summary()["database_url"] == "postgresql://u:***@db/pulse"
    assert Url("redis://h:6379").redacted() == "redis://h:6379"


def test_prod_accepts_explicit_real_secrets() -> None:
    s = load(CommonSettings, PROD_OK)
    assert s.mode is Mode.PROD


@pytest.mark.parametrize(
    ("override", "var", "reason"),
    [
        ({"PULSE_ADMIN_KEYS": DEFAULT_ADMIN_KEY}, "PULSE_ADMIN_KEYS", "dev default"),
        ({"PULSE_ADMIN_KEYS": "short"}, "PULSE_ADMIN_KEYS", "at least 24"),
        ({"PULSE_DATABASE_URL": "postgresql://pulse:pulse@db/pulse"}, "PULSE_DATABASE_URL", "default password"),
        ({"PULSE_REDIS_URL": None}, "PULSE_REDIS_URL", "required in PROD"),
        ({"PULSE_DATABASE_URL": None}, "PULSE_DATABASE_URL", "required in PROD"),
    ],
)
def test_prod_refuses_default_secrets_and_dev_shortcuts(override: dict[str, str | None], var: str, reason: str) -> None:
    environ = {**PROD_OK, **override}
    environ = {k: v for k, v in environ.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        load(CommonSettings, environ)
    assert any(name == var and reason in why for name, why in err.value.problems), err.value.problems
