"""Training speed of ``make run``'s configuration alone and beside busy single-threaded processes.

A run should slow down in proportion to the CPU it gets, not collapse: OpenMP threads that find their
cores taken spin-wait for each other. For each learner setting (``--threads``: 0 is dreamworld's
choice, the cores free at the start; 2 is torch's default on this machine) the script trains the same
CartPole run alone and then beside ``--busy`` processes that each spin one core, and prints the
environment steps per second after the prefill, and the ratio loaded / alone.

Usage::

    python benchmarks/under_load.py --steps 3000 --threads 0 2 --busy 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def spin() -> None:
    """One busy single-threaded process (a simulator, another seed's run)."""
    value = 0
    while True:
        value = (value * 1_103_515_245 + 12_345) % 2_147_483_648


def train(steps: int, threads: int, outdir: Path) -> float:
    """Steps per second of one run after its prefill (from its metrics)."""
    logdir = outdir / f"run-{threads}-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "dreamworld.cli", "train", "--algo", "dreamerv3", "--preset", "classic"]
    command += ["--env", "gym/CartPole-v1", "--steps", str(steps), "--logdir", str(logdir)]
    command += ["--dreamer.threads", str(threads), "--log.progress", "false", "--dreamer.eval_every", "0"]
    command += ["--dreamer.log_every", "1e9", "--dreamer.log_steps", "500", "--dreamer.eval_episodes", "0"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    rates = [row["time/steps_per_second"] for row in rows if "time/steps_per_second" in row]
    rates = rates[1:-1] or rates  # the first interval holds the prefill, the last may be short
    return sum(rates) / len(rates)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3000, help="policy steps per run (prefill 1024)")
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 2], help="learner threads to compare")
    parser.add_argument("--busy", type=int, default=1, help="busy single-threaded processes beside it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for threads in args.threads:
            alone = train(args.steps, threads, Path(tmp))
            context = mp.get_context("spawn")
            spinners = [context.Process(target=spin, daemon=True) for _ in range(args.busy)]
            for process in spinners:
                process.start()
            try:
                time.sleep(1.0)
                loaded = train(args.steps, threads, Path(tmp))
            finally:
                for process in spinners:
                    process.kill()
                    process.join()
            label = "free cores at start" if threads == 0 else f"{threads}"
            print(
                f"threads={label} alone={alone:.2f} steps/s beside_{args.busy}_busy={loaded:.2f} steps/s "
                f"ratio={loaded / alone:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
