r"""Line protocol escaping and line building, checked against a reader with the InfluxDB 3 parser's rules.

`read_line` below follows the influxdb_line_protocol crate: in measurements `\,` `\ ` `\\` are
escapes, in tag keys/values and field keys also `\=`; any other backslash is a literal; in string
fields `\"` and `\\` are escapes. Every value written by `build_line` must read back unchanged.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.common.telemetry.lineprotocol import (
    LineProtocolError,
    build_line,
    escape_key,
    escape_measurement,
    escape_tag_value,
    format_field_value,
    quote_string,
    to_ns,
)

pytestmark = pytest.mark.unit

# --- a reader with the server's rules -------------------------------------------------------


def _token(text: str, i: int, stops: str, escapes: str) -> tuple[str, int]:
    """Read an unquoted token from text[i:] up to an unescaped char of `stops`."""
    out = []
    while i < len(text) and text[i] not in stops:
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in escapes:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out), i


def _string(text: str, i: int) -> tuple[str, int]:
    assert text[i] == '"'
    i += 1
    out = []
    while text[i] != '"':
        if text[i] == "\\" and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out), i + 1


def read_line(line: str) -> tuple[str, dict[str, str], dict[str, str], int]:
    """(measurement, tags, fields as written, timestamp); field strings unquoted and unescaped."""
    measurement, i = _token(line, 0, ", ", ", \\")
    tags: dict[str, str] = {}
    while line[i] == ",":
        key, i = _token(line, i + 1, "= ", ",= \\")
        assert line[i] == "="
        value, i = _token(line, i + 1, ", ", ",= \\")
        tags[key] = value
    assert line[i] == " "
    fields: dict[str, str] = {}
    while True:
        key, i = _token(line, i + 1, "= ", ",= \\")
        assert line[i] == "="
        if line[i + 1] == '"':
            value, i = _string(line, i + 1)
        else:
            value, i = _token(line, i + 1, ", ", "")
        fields[key] = value
        if line[i] == " ":
            break
        assert line[i] == ","
    return measurement, tags, fields, int(line[i + 1 :])


# --- escaping -------------------------------------------------------------------------------


def test_measurement_escapes_comma_space_and_backslash_but_not_equals() -> None:
    assert escape_measurement("cpu load,1") == r"cpu\ load\,1"
    assert escape_measurement("a=b") == "a=b"
    assert escape_measurement(r"c:\temp") == r"c:\\temp"
    assert escape_measurement("wetter°C") == "wetter°C"


def test_tag_keys_values_and_field_keys_escape_comma_equals_space_and_backslash() -> None:
    assert escape_key("my key=1,x") == r"my\ key\=1\,x"
    assert escape_tag_value("site A,=b") == r"site\ A\,\=b"
    assert escape_tag_value(r"C:\path\to") == r"C:\\path\\to"
    # an escaped delimiter in the input stays distinguishable from the delimiter itself
    assert escape_tag_value(r"a\,b") == r"a\\\,b"
    assert escape_tag_value('say "hi"') == r'say\ "hi"'


def test_string_fields_escape_quotes_and_backslashes_only() -> None:
    assert quote_string('say "hi" \\ ok') == r'"say \"hi\" \\ ok"'
    assert quote_string("a,b=c d") == '"a,b=c d"'
    assert quote_string("two\nlines") == '"two\nlines"'  # newlines are fine inside quotes
    assert quote_string("") == '""'
    assert quote_string("\\") == r'"\\"'


@pytest.mark.parametrize(
    ("escape", "value", "reason"),
    [
        (escape_measurement, "", "non-empty"),
        (escape_measurement, "#comment", "comment"),
        (escape_measurement, "two\nlines", "contains"),
        (escape_measurement, "nul\0", "contains"),
        (escape_key, "tab\tkey", "contains"),
        (escape_key, "time", "reserved"),
        (escape_key, "trailing\\", "backslash"),
        (escape_tag_value, "", "non-empty"),
        (escape_tag_value, "ends\\", "backslash"),
        (escape_tag_value, "line\nbreak", "contains"),
    ],
)
def test_unrepresentable_names_are_refused(escape, value: str, reason: str) -> None:
    with pytest.raises(LineProtocolError, match=reason):
        escape(value)


def test_string_field_over_64_kib_is_refused() -> None:
    quote_string("x" * 65_536)
    with pytest.raises(LineProtocolError, match="exceeds"):
        quote_string("x" * 65_537)
    with pytest.raises(LineProtocolError, match="exceeds"):
        quote_string("é" * 40_000)  # 80 000 bytes in UTF-8


# --- field values and timestamps ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1.0"),
        (-0.5, "-0.5"),
        (21.5, "21.5"),
        (1e16, "1e+16"),
        (1.5e-7, "1.5e-07"),
        (0.1 + 0.2, "0.30000000000000004"),
        (7, "7i"),
        (-(2**63), "-9223372036854775808i"),
        (True, "true"),
        (False, "false"),
        ("ok", '"ok"'),
    ],
)
def test_field_values_are_formatted_as_the_parser_reads_them(value: float | int | bool | str, text: str) -> None:
    assert format_field_value(value) == text
    if isinstance(value, float):
        assert float(text) == value  # shortest round-trip form


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 2**63])
def test_values_line_protocol_cannot_carry_are_refused(value: float | int) -> None:
    with pytest.raises(LineProtocolError):
        format_field_value(value)


def test_timestamps_are_nanoseconds_since_the_epoch() -> None:
    assert to_ns(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert to_ns(datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == 1735787045678901000
    assert to_ns(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)) == -1_000_000_000
    assert to_ns(datetime(2025, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))) == to_ns(
        datetime(2025, 1, 1, tzinfo=UTC)
    )
    assert to_ns(datetime(2025, 1, 1)) == to_ns(datetime(2025, 1, 1, tzinfo=UTC))  # naive means UTC
    with pytest.raises(LineProtocolError, match="outside"):
        to_ns(datetime(2300, 1, 1, tzinfo=UTC))


# --- lines ----------------------------------------------------------------------------------


def test_a_line_has_sorted_tags_and_fields_and_leaves_out_empty_tag_values() -> None:
    line = build_line(
        "telemetry",
        {"site_id": "", "device_id": "dev 1"},
        {"temp_c": 21.5, "obs_id": "abc", "seq": 42},
        1735689600000000000,
    )
    assert line == r'telemetry,device_id=dev\ 1 obs_id="abc",seq=42i,temp_c=21.5 1735689600000000000'


def test_a_line_needs_a_field_and_distinct_tag_and_field_names() -> None:
    with pytest.raises(LineProtocolError, match="at least one field"):
        build_line("m", {"a": "b"}, {}, 0)
    with pytest.raises(LineProtocolError, match="both tag and field"):
        build_line("m", {"a": "b"}, {"a": 1.0}, 0)
    with pytest.raises(LineProtocolError, match="64 bits"):
        build_line("m", {}, {"a": 1.0}, 2**63)


def test_tricky_names_and_values_read_back_exactly() -> None:
    measurement = r"my meas,urement=\x"
    tags = {"site id": "Bau 7, Halle=2", "path": r"C:\data\ 1", "quote": '"q"'}
    fields: dict[str, float | int | str] = {"temp, °C": -3.25, "count=": 3, "note": 'he said "a\\b", ok\nnext'}
    line = build_line(measurement, tags, fields, -5)
    assert "\n" not in line.split('"', 1)[0]  # the only newline is inside the quoted string
    m, t, f, ts = read_line(line)
    assert (m, t, ts) == (measurement, tags, -5)
    assert f == {"temp, °C": "-3.25", "count=": "3i", "note": fields["note"]}


def test_random_names_survive_a_round_trip() -> None:
    rng = random.Random(20250101)
    alphabet = "ab ,=\\\"'#é°_-.:/"
    for _ in range(2000):
        words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(4)]
        words = [w if not w.endswith("\\") else w + "x" for w in words]
        measurement = words[0] if not words[0].startswith("#") else "m" + words[0]
        tags = {words[1]: words[2]} if words[1] != "time" else {}
        fields: dict[str, float | int | str] = {words[3] if words[3] not in tags else words[3] + "_f": words[2]}
        m, t, f, _ = read_line(build_line(measurement, tags, fields, 1))
        assert (m, t, f) == (measurement, tags, fields), words
