r"""InfluxDB line protocol, written by pure functions.

    measurement[,tag_key=tag_value...] field_key=field_value[,...] timestamp_ns

Escaping follows the InfluxDB 3 parser (the influxdb_line_protocol crate). In measurements it
reads `\\`, `\,` and `\ ` as the escaped character; in tag keys, tag values and field keys also
`\=`; inside string field values `\\` and `\"`. Backslashes are always escaped here, so every
value reads back exactly as written.

What line protocol cannot carry is refused with `LineProtocolError` instead of being written
wrongly: empty names, newlines, tabs and NUL in names (they end a token however they are
escaped), a name ending in a backslash (the parser refuses it, escaped or not), a measurement
starting with '#' (a comment line), the reserved key "time", non-finite floats, and string
values over 64 KiB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime

from services.common.telemetry.base import InvalidObservation

__all__ = [
    "FieldValue",
    "LineProtocolError",
    "build_line",
    "escape_key",
    "escape_measurement",
    "escape_tag_value",
    "format_field_value",
    "quote_string",
    "to_ns",
]

FieldValue = float | int | bool | str

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_STRING_LIMIT = 65_536  # bytes, the parser's limit for a string field value
_UNREPRESENTABLE = ("\n", "\t", "\0")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LineProtocolError(InvalidObservation):
    """A name or value that line protocol cannot represent."""


def _check_name(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise LineProtocolError(f"{what} must be a non-empty string, got {value!r}")
    for ch in _UNREPRESENTABLE:
        if ch in value:
            raise LineProtocolError(f"{what} {value!r} contains {ch!r}, which line protocol cannot carry")
    if value.endswith("\\"):
        raise LineProtocolError(f"{what} {value!r} ends with a backslash, which line protocol refuses")


def escape_measurement(name: str) -> str:
    """A measurement (table) name: backslash, comma and space escaped."""
    _check_name(name, "measurement")
    if name.startswith("#"):
        raise LineProtocolError(f"measurement {name!r} starts with '#', which makes the line a comment")
    return name.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def escape_key(key: str) -> str:
    """A tag key or field key: backslash, comma, equals sign and space escaped."""
    _check_name(key, "key")
    if key == "time":
        raise LineProtocolError("'time' is reserved for the timestamp and cannot be a tag or field key")
    return _escape_tag_chars(key)


def escape_tag_value(value: str) -> str:
    """A tag value: backslash, comma, equals sign and space escaped."""
    _check_name(value, "tag value")
    return _escape_tag_chars(value)


def _escape_tag_chars(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def quote_string(value: str) -> str:
    """A string field value: double-quoted, with backslashes and double quotes escaped."""
    if len(value.encode()) > _STRING_LIMIT:
        raise LineProtocolError(f"string field value of {len(value.encode())} bytes exceeds {_STRING_LIMIT}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_field_value(value: FieldValue) -> str:
    """float -> shortest round-trip decimal; int -> `123i`; bool -> true/false; str -> quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise LineProtocolError(f"integer field value {value} does not fit in 64 bits")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"float field value {value!r} is not finite")
        return repr(value)  # '1.5', '1e-05', '1e+16': all forms the parser reads as floats
    if isinstance(value, str):
        return quote_string(value)
    raise LineProtocolError(f"unsupported field value type {type(value).__name__}")


def to_ns(ts: datetime) -> int:
    """Nanoseconds since the Unix epoch for an aware datetime (naive means UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - _EPOCH
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    if not _INT64_MIN <= ns <= _INT64_MAX:
        raise LineProtocolError(f"timestamp {ts.isoformat()} is outside what line protocol can carry")
    return ns


def build_line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], timestamp_ns: int) -> str:
    """One line (no trailing newline); tags and fields sorted by key, empty tag values left out."""
    if not fields:
        raise LineProtocolError("a line needs at least one field")
    if not _INT64_MIN <= timestamp_ns <= _INT64_MAX:
        raise LineProtocolError(f"timestamp {timestamp_ns} does not fit in 64 bits")
    if set(tags) & set(fields):
        raise LineProtocolError(f"names used as both tag and field: {sorted(set(tags) & set(fields))}")
    head = escape_measurement(measurement)
    for key in sorted(tags):
        if tags[key] != "":
            head += f",{escape_key(key)}={escape_tag_value(tags[key])}"
    body = ",".join(f"{escape_key(k)}={format_field_value(fields[k])}" for k in sorted(fields))
    return f"{head} {body} {timestamp_ns}"
