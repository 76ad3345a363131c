"""`python -m simulator.devices`: a simulated fleet of N tenants x M devices feeding ingest.

Progress and the plan go to stderr, the summary to stdout (as JSON with --json), so the output
of a run can be piped. Exit status: 0 when the fleet ran and every message was delivered,
1 when some could not be delivered (the summary says which), 2 on a usage or set-up error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from services.common.config import DEFAULT_ADMIN_KEY
from simulator.devices.config import METRICS, FleetConfig, Scenario, SimulatorError, TransportKind
from simulator.devices.fleet import run_fleet
from simulator.devices.report import Summary

__all__ = ["build_parser", "config_from_args", "main"]

_EPILOG = (
    "scenarios:\n"
    + "\n".join(f"  {s.value:<10} {s.description}" for s in Scenario)
    + """

environment (read once; options win):
  PULSE_SIM_ADMIN_URL, PULSE_SIM_INGEST_URL, PULSE_MQTT_URL   default endpoints
  PULSE_SIM_ADMIN_KEY, else the first of PULSE_ADMIN_KEYS     admin key (else the dev default)

example:
  python -m simulator.devices --tenants 2 --devices 5 --rate 1 --transport mqtt --duration 60 \\
      --scenario silent --scenario bad-token --scenario burst
"""
)


_HEARTBEAT = "seconds between heartbeats, 0 = none (%(default)s)"
_DURATION = "seconds to send, 0 = until Ctrl-C / SIGTERM (%(default)s)"
_ADMIN_KEY = "X-Admin-Key (default: PULSE_SIM_ADMIN_KEY, else the first of PULSE_ADMIN_KEYS, else the dev key)"
_WAIT = "wait up to S seconds for the admin API, ingest and broker to come up (%(default)s: fail at once)"
_SCENARIO = "repeatable: " + ", ".join(s.value for s in Scenario)
_FAULT_EVERY = "seconds between bad-token and between malformed messages (%(default)s)"


def _default_admin_key(environ: Mapping[str, str]) -> str:
    if environ.get("PULSE_SIM_ADMIN_KEY"):
        return environ["PULSE_SIM_ADMIN_KEY"]
    keys = [k.strip() for k in environ.get("PULSE_ADMIN_KEYS", "").split(",") if k.strip()]
    return keys[0] if keys else DEFAULT_ADMIN_KEY


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if environ is None else environ
    d = FleetConfig()
    p = argparse.ArgumentParser(
        prog="python -m simulator.devices",
        description="Simulated devices: provision N tenants x M devices through the admin API, activate them,"
        " and send heartbeats and telemetry to ingest over MQTT or HTTP, with optional fault scenarios.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fleet = p.add_argument_group("fleet")
    fleet.add_argument("--tenants", type=int, default=d.tenants, metavar="N", help="tenants (%(default)s)")
    fleet.add_argument("--devices", type=int, default=d.devices, metavar="M", help="devices per tenant (%(default)s)")
    fleet.add_argument("--sites", type=int, default=d.sites, metavar="N", help="sites per tenant (%(default)s)")
    fleet.add_argument("--tenant-prefix", default=d.tenant_prefix, help="tenant ids are PREFIX-1.. (%(default)s)")
    fleet.add_argument(
        "--rate", type=float, default=d.rate, metavar="R", help="telemetry msg/s per device (%(default)s)"
    )
    fleet.add_argument("--heartbeat-every", type=float, default=d.heartbeat_every_s, metavar="S", help=_HEARTBEAT)
    fleet.add_argument("--duration", type=float, default=d.duration_s, metavar="S", help=_DURATION)
    fleet.add_argument("--seed", type=int, default=None, help="random seed for reproducible readings")
    ends = p.add_argument_group("endpoints")
    transports = [t.value for t in TransportKind]
    ends.add_argument("--transport", choices=transports, default=d.transport.value, help="(%(default)s)")
    ends.add_argument("--admin-url", default=env.get("PULSE_SIM_ADMIN_URL", d.admin_url), help="ui service (admin API)")
    ends.add_argument("--ingest-url", default=env.get("PULSE_SIM_INGEST_URL", d.ingest_url), help="ingest HTTP")
    ends.add_argument("--mqtt-url", default=env.get("PULSE_MQTT_URL", d.mqtt_url), help="MQTT broker ingest reads")
    ends.add_argument("--admin-key", default=_default_admin_key(env), metavar="KEY", help=_ADMIN_KEY)
    ends.add_argument("--wait", type=float, default=d.wait_s, metavar="S", help=_WAIT)
    sc = p.add_argument_group("scenarios")
    names = [s.value for s in Scenario]
    sc.add_argument("--scenario", action="append", default=[], choices=names, metavar="NAME", help=_SCENARIO)
    sc.add_argument(
        "--silent-after",
        type=float,
        default=d.silent_after_s,
        metavar="S",
        help="silent: stop after S seconds (%(default)s)",
    )
    sc.add_argument(
        "--threshold-metric",
        default=d.threshold_metric,
        choices=METRICS,
        help="threshold: metric that ramps (%(default)s)",
    )
    sc.add_argument(
        "--threshold", type=float, default=d.threshold, metavar="X", help="threshold: value crossed (%(default)s)"
    )
    sc.add_argument(
        "--threshold-after",
        type=float,
        default=d.threshold_after_s,
        metavar="S",
        help="threshold: crossed after S seconds (%(default)s)",
    )
    sc.add_argument("--fault-every", type=float, default=d.fault_every_s, metavar="S", help=_FAULT_EVERY)
    sc.add_argument(
        "--burst-at",
        type=float,
        default=d.burst_at_s,
        metavar="S",
        help="burst: when, seconds after start (%(default)s)",
    )
    sc.add_argument(
        "--burst-count", type=int, default=d.burst_count, metavar="N", help="burst: messages sent at once (%(default)s)"
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the summary as JSON")
    out.add_argument(
        "--progress-every",
        type=float,
        default=d.progress_every_s,
        metavar="S",
        help="seconds between progress lines (%(default)s)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> FleetConfig:
    return FleetConfig(
        tenants=args.tenants,
        devices=args.devices,
        sites=args.sites,
        rate=args.rate,
        heartbeat_every_s=args.heartbeat_every,
        transport=TransportKind(args.transport),
        duration_s=args.duration,
        admin_url=args.admin_url.rstrip("/"),
        ingest_url=args.ingest_url.rstrip("/"),
        mqtt_url=args.mqtt_url,
        admin_key=args.admin_key,
        tenant_prefix=args.tenant_prefix,
        scenarios=frozenset(Scenario(s) for s in args.scenario),
        silent_after_s=args.silent_after,
        threshold_metric=args.threshold_metric,
        threshold=args.threshold,
        threshold_after_s=args.threshold_after,
        fault_every_s=args.fault_every,
        burst_at_s=args.burst_at,
        burst_count=args.burst_count,
        wait_s=args.wait,
        progress_every_s=args.progress_every,
        seed=args.seed,
    )


def _say(line: str) -> None:
    print(f"[sim] {line}", file=sys.stderr, flush=True)


async def _run(config: FleetConfig) -> Summary:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            _say("second signal: exiting now")
            os._exit(128 + signum)
        _say(f"{signal.Signals(signum).name}: stopping (again to exit at once)")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await run_fleet(config, stop, say=_say)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    problems = config.problems()
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(_run(config))
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.to_json() if args.json else summary.render(), flush=True)
    if summary.errors:
        _say(f"{summary.errors} message(s) could not be delivered (see errors above)")
        return 1
    return 0
