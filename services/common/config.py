"""Typed settings read once from PULSE_* environment variables.

A settings class is a frozen dataclass whose fields name their variable with `env(...)`.
`load(cls)` parses every field, collects every problem, and raises one ConfigError that
names each bad variable and what it expects, so start-up fails with a useful message.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from services.common import constants

__all__ = [
    "DEFAULT_ADMIN_KEY",
    "CommonSettings",
    "ConfigError",
    "Mode",
    "Secret",
    "StreamNames",
    "Url",
    "env",
    "load",
]

# Dev-only defaults: PULSE_MODE=PROD refuses to start while any of these is in use.
DEFAULT_ADMIN_KEY = "pulse-dev-admin-key"
_DEFAULT_PASSWORDS = frozenset({"pulse", "postgres", "password", "changeme", "admin", "secret"})


class Mode(enum.StrEnum):
    DEV = "DEV"
    PROD = "PROD"


class Secret:
    """A value that never shows in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Url(str):
    """A URL whose scheme was checked at load time; str() hides any password."""

    __slots__ = ()

    def redacted(self) -> str:
        parts = urlsplit(self)
        if parts.password is None:
            return str(self)
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()


class ConfigError(Exception):
    """Invalid or missing settings; the message names every variable and what it expects."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"  {var}: {why}" for var, why in problems]
        super().__init__("invalid configuration:\n" + "\n".join(lines))


_MISSING: Any = dataclasses.MISSING


def env(
    var: str,
    default: Any = _MISSING,
    *,
    expects: str = "",
    schemes: tuple[str, ...] = (),
    minimum: float | None = None,
) -> Any:
    """Declare a settings field read from environment variable `var`."""
    meta = {"env": var, "expects": expects, "schemes": schemes, "minimum": minimum}
    if default is _MISSING:
        return field(metadata=meta)
    if isinstance(default, list | dict):
        frozen = default
        return field(default_factory=lambda: type(frozen)(frozen), metadata=meta)
    return field(default=default, metadata=meta)


def _parse_bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise ValueError


def _parser(tp: Any, meta: Mapping[str, Any]) -> tuple[Callable[[str], Any], str]:
    """Return (parse, description of what is expected) for a field type."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner, what = _parser(args[0], meta)
        return (lambda raw: None if raw == "" else inner(raw)), what
    if origin is list:
        (item,) = typing.get_args(tp)
        inner, what = _parser(item, meta)
        return (
            lambda raw: [inner(p.strip()) for p in raw.split(",") if p.strip()],
            f"a comma-separated list of {what}",
        )
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        names = [m.value for m in tp]
        return (lambda raw: tp(raw.strip().upper())), "one of " + "|".join(map(str, names))
    if tp is bool:
        return _parse_bool, "true or false"
    if tp is int or tp is float:
        minimum = meta.get("minimum")

        def number(raw: str) -> Any:
            value = tp(raw)
            if minimum is not None and value < minimum:
                raise ValueError
            return value

        kind = "an integer" if tp is int else "a number"
        return number, kind + (f" >= {minimum:g}" if minimum is not None else "")
    if tp is Url:
        schemes: tuple[str, ...] = meta.get("schemes") or ()

        def url(raw: str) -> Url:
            parts = urlsplit(raw.strip())
            if not parts.scheme or not parts.netloc or (schemes and parts.scheme not in schemes):
                raise ValueError
            return Url(raw.strip())

        return url, "a URL with scheme " + "|".join(schemes) if schemes else "a URL"
    if tp is Secret:

        def secret(raw: str) -> Secret:
            if not raw:
                raise ValueError
            return Secret(raw)

        return secret, "a non-empty secret"
    if tp is str:
        return (lambda raw: raw), "a string"
    raise TypeError(f"unsupported settings type {tp!r}")


T = TypeVar("T")


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build settings `cls` from `environ` (default os.environ); raise ConfigError on problems."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        var = f.metadata.get("env")
        if var is None:
            nested = hints[f.name]
            if isinstance(nested, type) and dataclasses.is_dataclass(nested):
                try:
                    values[f.name] = load(nested, environ)
                except ConfigError as exc:
                    problems.extend(exc.problems)
            continue
        parse, what = _parser(hints[f.name], f.metadata)
        what = f.metadata.get("expects") or what
        raw = environ.get(var)
        if raw is None:
            if f.default is _MISSING and f.default_factory is _MISSING:
                problems.append((var, f"is required; expected {what}"))
            continue
        try:
            values[f.name] = parse(raw)
        except (ValueError, TypeError):
            shown = "<hidden>" if hints[f.name] in (Secret, list[Secret]) else repr(raw)
            problems.append((var, f"expected {what}, got {shown}"))
    if problems:
        raise ConfigError(problems)
    settings = cls(**values)
    check = getattr(settings, "check", None)
    if check is not None:
        problems = check()
        if problems:
            raise ConfigError(problems)
    return settings


@dataclass(frozen=True)
class StreamNames:
    """Stream names, overridable so that a large installation can shard them."""

    observations: str = env("PULSE_STREAM_OBSERVATIONS", constants.STREAM_OBSERVATIONS)
    alerts: str = env("PULSE_STREAM_ALERTS", constants.STREAM_ALERTS)
    device_status: str = env("PULSE_STREAM_DEVICE_STATUS", constants.STREAM_DEVICE_STATUS)
    deliveries: str = env("PULSE_STREAM_DELIVERIES", constants.STREAM_DELIVERIES)


@dataclass(frozen=True, kw_only=True)
class CommonSettings:
    """Settings every service shares; service settings extend it with kw_only=True."""

    mode: Mode = env("PULSE_MODE", Mode.DEV)
    database_url: Url = env(
        "PULSE_DATABASE_URL",
        Url("postgresql://pulse_service@127.0.0.1:5432/pulse"),
        schemes=("postgresql", "postgres"),
    )
    redis_url: Url = env("PULSE_REDIS_URL", Url("redis://127.0.0.1:6379/0"), schemes=("redis", "rediss", "unix"))
    mqtt_url: Url = env("PULSE_MQTT_URL", Url("mqtt://127.0.0.1:1883"), schemes=("mqtt", "mqtts"))
    admin_keys: list[Secret] = env("PULSE_ADMIN_KEYS", [Secret(DEFAULT_ADMIN_KEY)])
    log_level: str = env("PULSE_LOG_LEVEL", "INFO", expects="DEBUG|INFO|WARNING|ERROR")
    http_host: str = env("PULSE_HTTP_HOST", "0.0.0.0")  # noqa: S104 - containers listen on all
    http_port: int = env("PULSE_HTTP_PORT", 8080, minimum=0)
    stream_maxlen: int = env("PULSE_STREAM_MAXLEN", 1_000_000, minimum=1000)
    db_pool_max: int = env("PULSE_DB_POOL_MAX", 10, minimum=1)
    shutdown_grace_s: float = env("PULSE_SHUTDOWN_GRACE_S", 20.0, minimum=0)
    streams: StreamNames = field(default_factory=StreamNames)

    def check(self) -> list[tuple[str, str]]:
        """Cross-field rules; PROD refuses default secrets and dev shortcuts."""
        problems: list[tuple[str, str]] = []
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            problems.append(("PULSE_LOG_LEVEL", f"expected DEBUG|INFO|WARNING|ERROR, got {self.log_level!r}"))
        if not self.admin_keys:
            problems.append(("PULSE_ADMIN_KEYS", "needs at least one key"))
        if self.mode is Mode.PROD:
            for key in self.admin_keys:
                if key.get() == DEFAULT_ADMIN_KEY:
                    problems.append(("PULSE_ADMIN_KEYS", "holds the dev default key; PROD refuses it"))
                elif len(key.get()) < 24:
                    problems.append(("PULSE_ADMIN_KEYS", "every key must be at least 24 characters in PROD"))
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for name in ("database_url", "redis_url"):
                if getattr(self, name) == defaults[name]:
                    var = next(f.metadata["env"] for f in dataclasses.fields(self) if f.name == name)
                    problems.append((var, "is required in PROD (the local default is a dev shortcut)"))
            for var, url in (("PULSE_DATABASE_URL", self.database_url), ("PULSE_REDIS_URL", self.redis_url)):
                password = urlsplit(url).password
                if password is not None and password.lower() in _DEFAULT_PASSWORDS:
                    problems.append((var, "uses a well-known default password; PROD refuses it"))
        return problems

    def summary(self) -> dict[str, Any]:
        """Configuration for the start-up log line: no secrets, passwords redacted."""
        return {
            "mode": self.mode.value,
            "database_url": self.database_url.redacted(),
            "redis_url": self.redis_url.redacted(),
            "mqtt_url": self.mqtt_url.redacted(),
            "admin_keys": len(self.admin_keys),
            "http": f"{self.http_host}:{self.http_port}",
        }
