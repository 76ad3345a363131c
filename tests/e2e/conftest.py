"""Whole-path fixtures: the ui (admin API) and ingest services over the session's real servers."""

from __future__ import annotations

from tests.ingest.conftest import fleet, ingest  # noqa: F401 - fixtures
from tests.ui.conftest import start_ui, ui  # noqa: F401 - fixtures
