"""World Models on CarRacing end to end with the ``cpu`` preset: test returns with and without memory,
the wall time of every stage, and the frame rate of rollout generation with 1 and 2 workers.

Usage::

    python benchmarks/worldmodels_carracing.py                     # about 3 hours on 2 cores
    python benchmarks/worldmodels_carracing.py --outdir runs/wmc -- --worldmodels.controller.generations 20

Each stage is the command a user runs (``dreamworld worldmodels ...``) in ``--outdir``; rerunning the
script resumes where it stopped (finished stages return at once). Extra arguments after ``--`` go to
every stage. Stage times accumulate over reruns (``benchmarks/wm_stages.py``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wm_stages import Ledger, stage, tested


def generation_rate(workers: int, steps: int) -> float:
    """Frames per second of brownian rollout collection into a scratch directory."""
    with tempfile.TemporaryDirectory() as scratch:
        episodes = 2 * workers
        limit = steps // episodes
        command = [sys.executable, "-m", "dreamworld.cli", "worldmodels", "collect", "--logdir", scratch]
        command += ["--rollouts", str(episodes), "--workers", str(workers), "--env.time_limit", str(limit)]
        command += ["--log.progress", "false", "--log.videos", "0"]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        # Process start-up (imports, Box2D) counts too: it is part of what a user waits for.
        return episodes * limit / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default="runs/bench-wm-carracing")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--rate-steps", type=int, default=4000, help="frames per generation-rate run")
    parser.add_argument("extra", nargs="*", help="config overrides for every stage, after --")
    args = parser.parse_args()
    outdir = Path(args.outdir)
    common = ["--preset", args.preset, "--log.progress", "false", *args.extra]
    ledger = Ledger(outdir)
    rates_path = outdir / "benchmark_rates.json"
    if rates_path.exists():
        rates = {int(key): value for key, value in json.loads(rates_path.read_text()).items()}
    else:
        rates = {workers: generation_rate(workers, args.rate_steps) for workers in (1, 2)}
        outdir.mkdir(parents=True, exist_ok=True)
        rates_path.write_text(json.dumps(rates))
    stage(ledger, "collect", "collect", outdir, *common)
    stage(ledger, "train-vae", "train-vae", outdir, *common)
    stage(ledger, "train-mdnrnn", "train-mdnrnn", outdir, *common)
    tests = {}
    # Each controller is tested as soon as it is trained: the one with memory is the main result.
    for label, flags in (("[z, h]", []), ("z only", ["--no-memory"])):
        stage(ledger, f"train-controller {label}", "train-controller", outdir, *flags, *common)
        directory = outdir / ("controller" if not flags else "controller-z")
        if not tested(directory):
            stage(ledger, f"test {label}", "test", outdir, *flags, "--video", *common)
        tests[label] = json.loads((directory / "test.json").read_text())
    stage(ledger, "report", "report", outdir, *common)
    print(f"\nWorld Models, CarRacing, preset {args.preset}: {outdir}")
    speedup = rates[2] / rates[1]
    print(
        f"rollout generation: {rates[1]:.0f} frames/s with 1 worker, {rates[2]:.0f} with 2 ({speedup:.2f}x)"
    )
    for label, result in tests.items():
        mean, std, episodes = result["mean"], result["std"], result["episodes"]
        print(f"test return {label:7}: {mean:7.1f} ± {std:.1f} over {episodes} episodes")
    ledger.print()


if __name__ == "__main__":
    main()
