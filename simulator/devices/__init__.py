"""Device simulator: N tenants x M devices provisioned through the admin API, sending to ingest.

Command line: `python -m simulator.devices --help`. In-process (as `pulse dev` may run it):

    summary = await run_fleet(FleetConfig(tenants=1, devices=3, rate=0.5, duration_s=0), stop_event)
"""

from __future__ import annotations

from simulator.devices.config import FleetConfig, Scenario, SimulatorError, TransportKind
from simulator.devices.fleet import run_fleet
from simulator.devices.report import Summary, Tally

__all__ = ["FleetConfig", "Scenario", "SimulatorError", "Summary", "Tally", "TransportKind", "run_fleet"]
