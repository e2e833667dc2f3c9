"""Shared by the World Models benchmarks: run a ``dreamworld worldmodels`` stage and book its time.

Stage times accumulate over reruns in ``OUTDIR/benchmark_times.json`` (a finished stage adds only its
start-up), so an interrupted and resumed benchmark still reports the whole cost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


class Ledger:
    """Wall times per stage, summed over every run of a benchmark on the same output directory."""

    def __init__(self, outdir: Path) -> None:
        self.path = outdir / "benchmark_times.json"
        self.times: dict[str, float] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def add(self, key: str, seconds: float) -> None:
        if self.path.exists():  # what was booked meanwhile (by hand, or by another run) stays
            self.times = json.loads(self.path.read_text())
        self.times[key] = self.times.get(key, 0.0) + seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.times, indent=1))

    def print(self) -> None:
        for name, seconds in self.times.items():
            print(f"  {name:30} {seconds / 60:6.1f} min")
        print(f"  {'total':30} {sum(self.times.values()) / 60:6.1f} min")


def stage(ledger: Ledger, key: str, name: str, outdir: Path, *args: str) -> None:
    """Runs ``dreamworld worldmodels <name> --logdir <outdir> <args>``; books its wall time under ``key``."""
    command = [sys.executable, "-m", "dreamworld.cli", "worldmodels", name, "--logdir", str(outdir), *args]
    print("$", " ".join(command[2:]), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    ledger.add(key, time.perf_counter() - started)


def tested(directory: Path, episodes: int | None = None) -> bool:
    """Whether ``directory/test.json`` already holds a test of the current best controller.

    A rerun of a benchmark then skips the test stage (100 Doom episodes take about five minutes).
    """
    result, best = directory / "test.json", directory / "best.pt"
    if not (result.exists() and best.exists()) or result.stat().st_mtime < best.stat().st_mtime:
        return False
    return episodes is None or json.loads(result.read_text()).get("episodes") == episodes
