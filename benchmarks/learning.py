"""Learning curves: evaluation return against environment steps, over seeds, with wall time.

Trains one agent per seed (one after another, or ``--parallel`` at once), then prints the mean and
spread of ``eval/return`` and of the other evaluation statistics (``eval/length``, and ``eval/success``,
``eval/crashed``, ... where the task reports them) at every evaluation
step (a policy step, followed by the environment steps it stands for when the run repeats actions) and
the wall time of each run. Runs land in ``--outdir/<task>/<method>/<seed>`` (plot them with
``dreamworld plot --indir OUTDIR``) and resume if interrupted (rerun the same command).

Usage::

    python benchmarks/learning.py --env gym/CartPole-v1 --algo dreamerv3 --preset classic \\
        --steps 30000 --seeds 0 1 2 -- --dreamer.train_ratio 256
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dreamworld.tools.plot import run_action_repeat


def logdir_of(args: argparse.Namespace, seed: int) -> Path:
    """``<outdir>/<task>/<method>/<seed>``: the layout ``dreamworld plot`` reads."""
    method = "-".join([args.algo, *args.preset])
    return Path(args.outdir) / args.env.replace("/", "_") / method / str(seed)


def run_command(args: argparse.Namespace, seed: int, extra: list[str]) -> list[str]:
    logdir = logdir_of(args, seed)
    command = [sys.executable, "-m", "dreamworld.cli", "train", "--algo", args.algo, "--env", args.env]
    command += ["--steps", str(args.steps), "--seed", str(seed), "--logdir", str(logdir)]
    if args.preset:
        command += ["--preset", *args.preset]
    command += ["--dreamer.eval_every", str(args.eval_every), "--log.progress", "false", *extra]
    return command


def curve(logdir: Path, key: str = "eval/return") -> list[tuple[int, float]]:
    points = []
    for line in (logdir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if key in record:
            points.append((int(record["step"]), float(record[key])))
    return points


def eval_keys(logdirs: list[Path]) -> list[str]:
    """The evaluation statistics the runs logged: ``eval/return`` first, then the others by name."""
    keys: set[str] = set()
    for logdir in logdirs:
        path = logdir / "metrics.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            keys.update(key for key in json.loads(line) if key.startswith("eval/"))
    keys -= {"eval/return", "eval/return_std"}
    return ["eval/return", *sorted(keys)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="gym/CartPole-v1")
    parser.add_argument("--algo", default="dreamerv3")
    parser.add_argument("--preset", nargs="*", default=[])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--eval-every", type=int, default=2_500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", action="store_true", help="run the seeds at the same time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--outdir", default="runs/learning")
    parser.add_argument("extra", nargs="*", help="more config overrides, after --")
    args = parser.parse_args()
    environ = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    extra = [*args.extra, "--dreamer.threads", str(args.threads)]
    started: dict[int, float] = {}
    procs: dict[int, subprocess.Popen[bytes]] = {}
    walls: dict[int, float] = {}
    # Stopping this script stops its runs too (they resume from their last checkpoint when the same
    # command is run again), rather than leaving them training unseen.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for seed in args.seeds:
            command = run_command(args, seed, extra)
            started[seed] = time.perf_counter()
            procs[seed] = subprocess.Popen(command, env=environ, stdout=subprocess.DEVNULL)
            if not args.parallel:
                procs[seed].wait()
                walls[seed] = time.perf_counter() - started[seed]
        for seed, proc in procs.items():
            if proc.wait() != 0:
                raise SystemExit(f"seed {seed} failed: {' '.join(run_command(args, seed, extra))}")
            walls.setdefault(seed, time.perf_counter() - started[seed])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    hours = {seed: dict(curve(logdir_of(args, seed), "time/hours")) for seed in args.seeds}
    cpu = {seed: dict(curve(logdir_of(args, seed), "time/cpu_hours")) for seed in args.seeds}
    repeat = run_action_repeat(logdir_of(args, args.seeds[0])) or 1
    unit = "policy step (environment steps)" if repeat > 1 else "step"
    for key in eval_keys([logdir_of(args, seed) for seed in args.seeds]):
        curves = {seed: dict(curve(logdir_of(args, seed), key)) for seed in args.seeds}
        steps = sorted(set().union(*curves.values()))
        if not steps:
            continue
        print(f"{args.algo} on {args.env}, seeds {args.seeds}, {key} mean (min..max) by {unit}, hours")
        for step in steps:
            values = [c[step] for c in curves.values() if step in c]
            spread = f"{min(values):.2f}..{max(values):.2f}"
            clocks = [h[step] for h in hours.values() if step in h]
            clock = f", {np.mean(clocks):.2f} h" if clocks else ""
            at = f"{step:>7} ({step * repeat:>7})" if repeat > 1 else f"{step:>7}"
            print(f"  step {at}: {np.mean(values):8.2f} ({spread}), n={len(values)}{clock}")
    for seed, wall in walls.items():
        # A run's own clock covers its earlier, resumed invocations too; this process only saw the last.
        total = max(hours[seed].values(), default=wall / 3600)
        used = max(cpu[seed].values(), default=float("nan"))
        print(
            f"  seed {seed}: {total * 60:.1f} min of training, {used * 60:.1f} CPU min "
            f"({wall / 60:.1f} min in this invocation)"
        )


if __name__ == "__main__":
    main()
