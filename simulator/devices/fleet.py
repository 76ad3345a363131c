"""Run a simulated fleet: provision it, then send on a monotonic schedule until the duration or a stop.

Every periodic event is due at first + k * period on the monotonic clock, so the rate does not
drift however long the run. When the simulator falls more than one period behind (the
transport cannot keep up), the missed ticks are skipped and counted rather than sent in a rush.
Sends run concurrently; at most `8 * max_in_flight` messages wait on the transport, then the
schedule itself waits — the backpressure shows up as skipped ticks.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from simulator.devices import scenarios
from simulator.devices.config import FleetConfig, SimulatorError, TransportKind
from simulator.devices.device import Outgoing, SimDevice, utc_iso
from simulator.devices.provisioning import ProvisionReport, provision
from simulator.devices.report import Stats, Summary
from simulator.devices.scenarios import Event, Role, Tick
from simulator.devices.transports import Transport, build_transport

__all__ = ["run_fleet"]

T = TypeVar("T")
_MAX_SLEEP_S = 0.25  # how long the schedule sleeps at most before it looks at the stop event again
_GRANULARITY_S = 0.002  # events due this close together go out together
_DRAIN_S = 10.0


async def run_fleet(
    config: FleetConfig, stop_event: asyncio.Event, *, say: Callable[[str], None] | None = None
) -> Summary:
    """Provision and run the fleet until `config.duration_s` passes or `stop_event` is set.

    `say` receives human-readable lines (plan, provisioning and progress). Raises SimulatorError
    when an option is wrong or an endpoint cannot be reached; the message says what to do.
    """
    problems = config.problems()
    if problems:
        raise SimulatorError("; ".join(problems))
    say = say or (lambda _line: None)
    stats = Stats(outcome_known=config.transport is not TransportKind.MQTT)
    report = ProvisionReport()
    say(
        f"provisioning {config.tenants} tenant(s) x {config.devices} device(s) via {config.admin_url}"
        f" (activation at {config.ingest_url}) ..."
    )
    provisioned, fleet = await _unless_stopped(provision(config, say, report), stop_event)
    if not provisioned or fleet is None:
        return _summary(config, stats, report)
    rng = random.Random(config.seed)  # noqa: S311 - simulated readings, not secrets
    devices: list[SimDevice] = []
    roles: list[Role] = []
    for creds_list in fleet.values():
        tenant_devices = [SimDevice(c, rng) for c in creds_list]
        tenant_roles = scenarios.assign(config.scenarios, tenant_devices)
        scenarios.apply(tenant_roles, config)
        devices.extend(tenant_devices)
        roles.extend(tenant_roles)
    transport = build_transport(config, stats)
    try:
        connected, _ = await _unless_stopped(transport.connect(config.wait_s), stop_event)
        if not connected:
            return _summary(config, stats, report)
        for line in _plan(config, transport, roles):
            say(line)
        schedule = _Schedule(config, transport, stats, scenarios.initial_events(config, devices, roles))
        started_wall = time.time()
        stopped_by = await schedule.run(stop_event, say)
        elapsed = schedule.elapsed
    finally:
        await transport.close()
    _count_unfinished(stats)
    records = scenarios.records(roles, config, started_wall, schedule.burst_times)
    return _summary(
        config, stats, report, started_wall=started_wall, elapsed=elapsed, stopped_by=stopped_by, records=records
    )


def _summary(
    config: FleetConfig,
    stats: Stats,
    report: ProvisionReport,
    *,
    started_wall: float | None = None,
    elapsed: float = 0.0,
    stopped_by: str = "stop",
    records: list[dict[str, Any]] | None = None,
) -> Summary:
    return Summary(
        transport=config.transport.value,
        target=config.mqtt_url if config.transport is TransportKind.MQTT else config.ingest_url,
        tenants=config.tenant_ids(),
        devices_per_tenant=config.devices,
        started_at=None if started_wall is None else utc_iso(datetime.fromtimestamp(started_wall, UTC)),
        ended_at=utc_iso(),
        duration_s=elapsed,
        target_rate=config.target_rate,
        stopped_by=stopped_by,
        stats=stats,
        scenarios=records or [],
        provisioning=report.to_dict(),
    )


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """(True, `work`'s result), or (False, None) with `work` cancelled when `stop` is set first."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # we are being cancelled: take `work` down with us
        task.cancel()
        raise
    finally:
        stopper.cancel()
    if task.done():
        return True, task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False, None


def _plan(config: FleetConfig, transport: Transport, roles: Sequence[Role]) -> list[str]:
    heartbeat = f" + a heartbeat every {config.heartbeat_every_s:g}s" if config.heartbeat_every_s else ""
    lines = [
        f"fleet: {config.tenants} tenant(s) ({', '.join(config.tenant_ids()[:3])}"
        f"{', ...' if config.tenants > 3 else ''}) x {config.devices} device(s) over {config.sites} site(s);"
        f" {config.rate:g} telemetry/s{heartbeat} per device = {config.target_rate:.1f} msg/s"
        f" over {transport.kind.value} -> {transport.target}",
        *scenarios.describe(config, roles),
        f"sending for {config.duration_s:g}s" if config.duration_s else "sending until stopped",
    ]
    return lines


def _count_unfinished(stats: Stats) -> None:
    """Messages still unanswered when the drain timed out count as errors (UNFINISHED)."""
    for tally in [stats.total, *stats.by_tag.values()]:
        missing = tally.sent - tally.delivered - sum(tally.errors.values())
        if missing > 0:
            tally.errors["UNFINISHED"] += missing


class _Schedule:
    def __init__(
        self, config: FleetConfig, transport: Transport, stats: Stats, events: list[tuple[float, Event]]
    ) -> None:
        self.config = config
        self.transport = transport
        self.stats = stats
        self._order = itertools.count()
        self.heap = [(due, next(self._order), ev) for due, ev in events]
        heapq.heapify(self.heap)
        self.burst_times: dict[str, float] = {}
        self.elapsed = 0.0
        self._pending: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._room = asyncio.Event()
        self._room.set()
        self._max_waiting = 8 * config.max_in_flight

    async def run(self, stop: asyncio.Event, say: Callable[[str], None]) -> str:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        progress = asyncio.create_task(self._progress(t0, say))
        duration = self.config.duration_s
        window = max(self.transport.linger_s, _GRANULARITY_S)
        stopped_by = "stop"
        try:
            while not stop.is_set():
                now = loop.time() - t0
                if duration and now >= duration:
                    stopped_by = "duration"
                    break
                delay = self.heap[0][0] - window - now
                if duration:
                    delay = min(delay, duration - now)
                if delay > 0:
                    await asyncio.sleep(min(delay, _MAX_SLEEP_S))
                    continue
                batch: list[Outgoing] = []
                while self.heap and self.heap[0][0] - window <= now:
                    due, _, event = heapq.heappop(self.heap)
                    batch.extend(self._fire(event, due, now))
                if batch:
                    await self._dispatch(batch)
            self.elapsed = loop.time() - t0
        finally:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
        if self._pending:
            _, late = await asyncio.wait(self._pending, timeout=_DRAIN_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        return stopped_by

    def _fire(self, event: Event, due: float, now: float) -> list[Outgoing]:
        device = event.device
        if device.silent_after_s is not None and due >= device.silent_after_s:
            return []  # silent from here on: nothing more from this device, ever
        if event.period is not None:
            following = due + event.period
            behind = now - following
            if behind > event.period:
                skipped = int(behind // event.period)
                following += skipped * event.period
                self.stats.skipped_ticks += skipped
            heapq.heappush(self.heap, (following, next(self._order), event))
        tick = event.tick
        if tick is Tick.TELEMETRY:
            return [device.telemetry(now)]
        if tick is Tick.HEARTBEAT:
            return [device.heartbeat(now)]
        if tick is Tick.BAD_TOKEN:
            return [device.bad_token(now, tick.value)]
        if tick is Tick.MALFORMED:
            return [device.malformed(now, tick.value)]
        self.burst_times[device.creds.key] = now
        return [device.telemetry(now, tick.value) for _ in range(self.config.burst_count)]

    async def _dispatch(self, batch: list[Outgoing]) -> None:
        while self._in_flight >= self._max_waiting:
            self._room.clear()
            await self._room.wait()
        for msg in batch:
            self.stats.sent(msg)
        self._in_flight += len(batch)
        task = asyncio.create_task(self._send(batch))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, batch: list[Outgoing]) -> None:
        try:
            await self.transport.send(batch)
        except Exception as exc:  # a transport bug must not stop the fleet; count it against the messages
            for msg in batch:
                self.stats.error(msg, type(exc).__name__)
        finally:
            self._in_flight -= len(batch)
            if self._in_flight < self._max_waiting:
                self._room.set()

    async def _progress(self, t0: float, say: Callable[[str], None]) -> None:
        loop = asyncio.get_running_loop()
        every = self.config.progress_every_s
        last_sent, last_t = 0, t0
        while True:
            await asyncio.sleep(every)
            now = loop.time()
            sent = self.stats.total.sent
            rate = (sent - last_sent) / (now - last_t)
            last_sent, last_t = sent, now
            say(self.stats.progress_line(now - t0, rate, self.config.target_rate))
