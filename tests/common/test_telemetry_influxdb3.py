"""The InfluxDB 3 telemetry backend without a server: lines, names, queries, result decoding, errors.

No InfluxDB 3 server can run on the build machines (its binaries are not in any package registry
we reach), so writes and queries against a live server are not exercised here. What runs is the
real client against a closed port, to show that a down server surfaces as StoreUnavailable.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest
from influxdb_client_3.exceptions.exceptions import InfluxDB3ClientQueryError, InfluxDBError
from influxdb_client_3.write_client.write_exceptions import ApiException
from pyarrow import flight

from services.common.db import InvalidTenantId
from services.common.observations import Observation
from services.common.telemetry import InvalidObservation, Reading, StoreUnavailable, TelemetryStore, open_store
from services.common.telemetry.influxdb3 import (
    InfluxDB3TelemetryStore,
    database_name,
    is_unavailable,
    latest_values,
    observation_line,
    quote_ident,
    readings_from_table,
    recent_query,
)
from services.devstack import free_port

pytestmark = pytest.mark.unit


def obs(**overrides: object) -> Observation:
    values: dict[str, object] = {
        "id": "obs-1",
        "tenant_id": "acme",
        "device_id": "dev-1",
        "site_id": "site-1",
        "source": "mqtt",
        "kind": "telemetry",
        "ts": "2025-01-01T00:00:00.5Z",
        "received_at": "2025-01-01T00:00:01Z",
        "metrics": {"temp_c": 21.5, "rssi": -70.0},
        "seq": 7,
    }
    values.update(overrides)
    return Observation(**values)  # type: ignore[arg-type]


def test_an_observation_becomes_one_point_of_its_kind_tagged_by_device_and_site() -> None:
    line = observation_line(obs())
    assert (
        line
        == 'telemetry,device_id=dev-1,site_id=site-1 obs_id="obs-1",rssi=-70.0,seq=7i,temp_c=21.5 1735689600500000000'
    )


def test_heartbeats_without_site_or_metrics_still_make_a_valid_line() -> None:
    line = observation_line(obs(kind="heartbeat", site_id=None, metrics={}, seq=None, ts="2025-01-01T00:00:00Z"))
    assert line == 'heartbeat,device_id=dev-1 obs_id="obs-1" 1735689600000000000'


def test_device_ids_and_metric_names_with_delimiters_are_escaped() -> None:
    line = observation_line(obs(device_id="dev 1,a=b", metrics={"temp c": 1.0}, seq=None))
    assert line.startswith(r"telemetry,device_id=dev\ 1\,a\=b,site_id=site-1 obs_id=")
    assert r"temp\ c=1.0" in line


def test_non_finite_and_reserved_metrics_are_left_out() -> None:
    line = observation_line(obs(metrics={"ok": 1.0, "bad": float("nan"), "inf": float("inf"), "seq": 3.0}, seq=None))
    assert line == 'telemetry,device_id=dev-1,site_id=site-1 obs_id="obs-1",ok=1.0 1735689600500000000'


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"kind": "bogus"}, InvalidObservation),
        ({"ts": "yesterday"}, InvalidObservation),
        ({"ts": "2300-01-01T00:00:00Z"}, InvalidObservation),
        ({"device_id": "ends\\"}, InvalidObservation),
        ({"tenant_id": "no spaces"}, InvalidTenantId),
    ],
)
def test_observations_line_protocol_cannot_carry_are_refused(overrides: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        observation_line(obs(**overrides))


def test_each_tenant_gets_its_own_database_with_a_valid_name() -> None:
    assert database_name("acme") == "telemetry_acme"
    assert database_name("tenant-a_1") == "telemetry_tenant-a_1"
    dotted = database_name("acme.eu")
    long = database_name("x" * 60)
    for name in (dotted, long):
        assert name.startswith("telemetry__") and len(name) <= 64
        assert name.replace("_", "").replace("-", "").isalnum()
    # distinct tenants, distinct databases; a hashed name never equals a plain one
    assert len({dotted, long, database_name("acme_eu"), database_name("x" * 54)}) == 4
    with pytest.raises(InvalidTenantId):
        database_name("../etc")


def test_recent_query_binds_the_device_and_time_as_parameters() -> None:
    sql, params = recent_query("telemetry", "dev'; DROP TABLE x; --", since=None, limit=10)
    assert sql == 'SELECT * FROM "telemetry" WHERE device_id = $device_id ORDER BY time DESC LIMIT 10'
    assert params == {"device_id": "dev'; DROP TABLE x; --"}
    since = datetime(2025, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    sql, params = recent_query("heartbeat", "d", since=since, limit=5)
    assert sql == 'SELECT * FROM "heartbeat" WHERE device_id = $device_id AND time >= $since ORDER BY time DESC LIMIT 5'
    assert params == {"device_id": "d", "since": "2025-01-01T00:00:00.000000Z"}
    assert quote_ident('we"ird') == '"we""ird"'
    with pytest.raises(InvalidObservation):
        recent_query("nope", "d", since=None, limit=5)
    with pytest.raises(ValueError, match="limit"):
        recent_query("telemetry", "d", since=None, limit=0)


def test_query_results_decode_into_readings_with_nanosecond_times() -> None:
    # the shape `SELECT *` returns: time, tags, the table's fields (null where a point has none)
    table = pa.table(
        {
            "device_id": pa.array(["dev-1", "dev-1"], pa.dictionary(pa.int32(), pa.string())),
            "obs_id": ["b", "a"],
            "rssi": pa.array([None, -70.0], pa.float64()),
            "seq": pa.array([8, None], pa.int64()),
            "site_id": pa.array([None, "s1"], pa.string()),
            "temp_c": [22.0, 21.5],
            "time": pa.array([1735689600123456789, 1735689600000000000], pa.timestamp("ns")),
        }
    )
    got = readings_from_table(table, "telemetry")
    assert got == [
        Reading(
            "b", "dev-1", None, "telemetry", datetime(2025, 1, 1, 0, 0, 0, 123456, tzinfo=UTC), {"temp_c": 22.0}, 8
        ),
        Reading("a", "dev-1", "s1", "telemetry", datetime(2025, 1, 1, tzinfo=UTC), {"rssi": -70.0, "temp_c": 21.5}),
    ]
    assert readings_from_table(table.slice(0, 0), "telemetry") == []


def test_latest_takes_the_newest_value_of_each_metric() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    readings = [
        Reading("1", "d", None, "telemetry", t0, {"a": 1.0, "b": 1.0}),
        Reading("3", "d", None, "heartbeat", t0 + timedelta(seconds=2), {"battery": 90.0}),
        Reading("2", "d", None, "telemetry", t0 + timedelta(seconds=1), {"a": 2.0}),
    ]
    assert latest_values(readings) == {"a": 2.0, "b": 1.0, "battery": 90.0}
    assert latest_values([]) == {}


def test_errors_of_server_network_or_credentials_mean_unavailable_others_mean_bad_data() -> None:
    assert is_unavailable(ConnectionRefusedError())
    assert is_unavailable(ApiException(status=503, reason="unavailable"))
    assert is_unavailable(ApiException(status=401, reason="bad token"))
    assert is_unavailable(ApiException(status=0, reason="ssl"))
    assert is_unavailable(flight.FlightUnavailableError("down"))
    try:  # how the client wraps a Flight error: raised while handling it
        try:
            raise flight.FlightTimedOutError("slow")
        except flight.FlightError as inner:
            raise InfluxDB3ClientQueryError(f"Error while executing query: {inner}")  # noqa: B904
    except InfluxDB3ClientQueryError as wrapped:
        assert is_unavailable(wrapped)
    assert not is_unavailable(ApiException(status=400, reason="bad line"))
    assert not is_unavailable(InfluxDB3ClientQueryError("Error while executing query: syntax error"))
    assert not is_unavailable(ValueError("bad"))
    assert issubclass(ApiException, InfluxDBError)


async def test_a_server_that_is_not_there_is_unavailable_not_an_error_of_the_data() -> None:
    store = await open_store("influxdb3", influxdb3_url=f"http://127.0.0.1:{free_port()}", influxdb3_token="t")
    try:
        assert isinstance(store, InfluxDB3TelemetryStore) and isinstance(store, TelemetryStore)
        with pytest.raises(StoreUnavailable, match="influxdb3"):
            await store.write([obs()])
        with pytest.raises(StoreUnavailable):
            await store.recent("acme", "dev-1")
        with pytest.raises(StoreUnavailable):
            await store.latest("acme", "dev-1")
        assert await store.ping() is False
        await store.write([])  # nothing to send: no request at all
    finally:
        await store.close()
