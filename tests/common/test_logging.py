from __future__ import annotations

import json
import logging

import pytest

from services.common.logging import JsonFormatter, correlation, setup_logging

pytestmark = pytest.mark.unit


def test_log_lines_are_json_with_service_and_correlation_id(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging("ingest", "INFO")
        log = logging.getLogger("pulse.test")
        with correlation("req-42"):
            log.info("message accepted", extra={"device_id": "dev-1"})
        log.debug("hidden at INFO")
        log.warning("outside")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert len(lines) == 2
    first, second = lines
    assert first["service"] == "ingest" and first["correlation_id"] == "req-42"
    assert first["msg"] == "message accepted" and first["device_id"] == "dev-1" and first["level"] == "INFO"
    assert "correlation_id" not in second and second["level"] == "WARNING"


def test_exceptions_are_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, "f", 1, "failed", None, __import__("sys").exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]
