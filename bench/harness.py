"""What every benchmark shares: stopping a measured process, writing and printing its results."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "report", "stop"]

RESULTS = Path(__file__).resolve().parent / "results"


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM (the services drain and exit 0), then SIGKILL after `timeout_s`."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()


def report(name: str, run: Callable[[Path], Coroutine[Any, Any, dict[str, Any]]], summary_keys: Sequence[str]) -> None:
    """Run `run(workdir)` in a temp dir, write bench/results/<name>.json, print the summary."""
    with tempfile.TemporaryDirectory(prefix="pulse-bench-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    out = RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in summary_keys) + 2
    print(f"[bench-{name}] summary:", flush=True)
    for key in summary_keys:
        print(f"[bench-{name}]   {key:{width}} {result[key]}", flush=True)
    print(f"[bench-{name}] wrote {out}", flush=True)
