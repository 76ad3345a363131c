"""Service lifecycle: one main() per service, SIGTERM drains, a second signal forces exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable

__all__ = ["install_stop_signals", "run_main", "sleep_or_stop"]

log = logging.getLogger("pulse.lifecycle")


def install_stop_signals(stop: asyncio.Event) -> None:
    """First SIGTERM/SIGINT sets `stop`; a second one exits at once."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal, exiting now", extra={"signal": signal.Signals(signum).name})
            os._exit(128 + signum)
        log.info("stop requested; finishing work in hand", extra={"signal": signal.Signals(signum).name})
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


async def _supervise(main: Callable[[asyncio.Event], Awaitable[None]], grace_s: float) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop)
    task = asyncio.ensure_future(main(stop))
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        # drain: main() sees `stop` and finishes the work in hand, bounded by the grace period
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            log.error("drain timed out; cancelling", extra={"grace_s": grace_s})
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    stopper.cancel()
    if task.done() and not task.cancelled():
        task.result()  # surface a crash as a non-zero exit


def run_main(main: Callable[[asyncio.Event], Awaitable[None]], *, grace_s: float = 20.0) -> None:
    """Run `main(stop)` until it returns; on SIGTERM set `stop` and wait up to `grace_s`."""
    asyncio.run(_supervise(main, grace_s))


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile (periodic loops stay responsive)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
