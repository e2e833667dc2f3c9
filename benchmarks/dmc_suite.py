"""A task suite: one recipe, unchanged, on several tasks and seeds, against published scores.

Trains every task x seed with the same preset and overrides (``--jobs`` runs at a time, each on
``--threads`` threads), resumes the runs an earlier invocation left unfinished and skips the finished
ones, then prints one table: the evaluation return at ``--at`` environment steps per task and seed,
the mean +- std over seeds (over the seeds that got there, and how many, while some have not), the
reference at the same step and each run's CPU hours, and a last line that counts the tasks at or
above their reference and the runs it stands on. Steps are environment steps throughout (a policy
step stands for ``env.repeat`` of them). Runs land in ``--outdir/<task>/<method>/<seed>``; the
figure of every task with its reference is ``dreamworld plot --indir OUTDIR --xaxis env_step
--reference dreamerv3_dmc_proprio`` (``--plot DIR`` draws it at the end, for
this call's tasks and method only). ``--archive DIR`` copies each run's records (its config, metrics
and training scores, about 200 kB) into the same layout under DIR, where ``--table --outdir DIR``
and the plot read them on any machine: the runs of a suite that spans machines or sessions meet
there (the project keeps its own in benchmarks/results/dmc_suite).

Usage::

    python benchmarks/dmc_suite.py --preset dmc_proprio_cpu --seeds 0 1 --jobs 2 --outdir runs/suite
    python benchmarks/dmc_suite.py --outdir runs/suite --table   # the table of what is there
    python benchmarks/dmc_suite.py --outdir runs/suite --table --archive benchmarks/results/dmc_suite
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dreamworld.config import load_config
from dreamworld.config.loader import parse_overrides
from dreamworld.envs import action_repeat, check_env_id
from dreamworld.errors import DreamworldError
from dreamworld.tools.plot import load_reference, read_records, run_action_repeat, task_key

TASKS = (
    "dmc/reacher-easy",
    "dmc/finger-spin",
    "dmc/pendulum-swingup",
    "dmc/ball_in_cup-catch",
    "dmc/cartpole-balance",
    "dmc/cartpole-swingup",
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", nargs="+", default=list(TASKS), help="environment ids (a bare domain-task means dmc/)"
    )
    parser.add_argument("--algo", default="dreamerv3")
    parser.add_argument("--preset", nargs="*", default=["dmc_proprio_cpu"])
    parser.add_argument("--name", help="the method's name in the run directories (default: algo-presets)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=100_000, help="environment steps per run")
    parser.add_argument(
        "--eval-every", type=int, default=12_500, help="environment steps between evaluations"
    )
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--at", type=int, nargs="+", default=[25_000, 50_000, 100_000], help="table columns")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one per core)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--outdir", default="runs/dmc_suite")
    parser.add_argument("--reference", default="dreamerv3_dmc_proprio", help="a file or a shipped reference")
    parser.add_argument(
        "--table", action="store_true", help="train nothing: print the table of the runs there"
    )
    parser.add_argument("--plot", metavar="DIR", help="also draw every task with its reference into DIR")
    parser.add_argument(
        "--archive", metavar="DIR", help="copy each run's records (config, metrics, scores) into DIR"
    )
    parser.add_argument("extra", nargs="*", help="config overrides for every run, after --")
    return parser.parse_args(argv)


class Job:
    """One task x seed: its directory, its command and what its records say."""

    def __init__(self, args: argparse.Namespace, task: str, seed: int) -> None:
        config = load_config(
            [args.algo, *args.preset], overrides={"env.name": task, **parse_overrides(args.extra)}
        )
        self.task, self.seed = task, seed
        self._records: list[dict] | None = None
        self.method = args.name or "-".join([args.algo, *args.preset])
        self.logdir = Path(args.outdir) / task.replace("/", "_") / self.method / str(seed)
        # A run started earlier counts in the repeat it was trained with, whatever this call's overrides.
        self.repeat = run_action_repeat(self.logdir) or action_repeat(task, config.env.repeat)
        self.policy_steps = -(-args.steps // self.repeat)
        self.command = [sys.executable, "-m", "dreamworld.cli", "train", "--algo", args.algo, "--env", task]
        self.command += ["--steps", str(self.policy_steps), "--seed", str(seed), "--logdir", str(self.logdir)]
        self.command += ["--preset", *args.preset] if args.preset else []
        self.command += ["--dreamer.eval_every", str(max(1, args.eval_every // self.repeat))]
        self.command += ["--dreamer.eval_episodes", str(args.eval_episodes), "--log.progress", "false"]
        self.command += ["--dreamer.threads", str(args.threads), *args.extra]

    def __str__(self) -> str:
        return f"{self.task} seed {self.seed}"

    def records(self) -> list[dict]:
        """The run's metrics, read once until :meth:`forget` (a finished training writes new ones)."""
        if self._records is None:
            self._records = read_records(self.logdir / "metrics.jsonl")
        return self._records

    def forget(self) -> None:
        self._records = None

    def returns(self) -> dict[int, float]:
        """Evaluation returns by environment step."""
        return {
            int(r["step"]) * self.repeat: float(r["eval/return"])
            for r in self.records()
            if "eval/return" in r
        }

    def finished(self) -> bool:
        return any(step >= self.policy_steps * self.repeat for step in self.returns())

    def cpu_hours(self) -> float:
        return max(
            (float(r["time/cpu_hours"]) for r in self.records() if "time/cpu_hours" in r), default=np.nan
        )

    def scores(self) -> list[tuple[int, float]]:
        """Training episodes' (environment step, return)."""
        rows = read_records(self.logdir / "scores.jsonl")
        return [(int(r["step"]) * self.repeat, float(r["score"])) for r in rows if "score" in r]

    def diagnosis(self) -> str:
        """What the logs say about why a run learns or not: when training first earned a reward
        (exploration), the actor's entropy over the run (collapse), the critic against the imagined
        returns it regresses on (lag) and the reward model's loss (model error), over the last fifth."""
        records, scores = self.records(), self.scores()
        if not records and not scores:
            return f"{self}: not started (no records in {self.logdir})"
        parts = []
        first = next((step for step, score in scores if score > 0), None)
        parts.append(
            f"first rewarded episode by {_steps(first)}" if first is not None else "no rewarded episode"
        )
        entropy = [
            (int(r["step"]) * self.repeat, r["actor/entropy"]) for r in records if "actor/entropy" in r
        ]
        if entropy:
            low = min(entropy, key=lambda point: point[1])
            span = f"entropy {entropy[0][1]:.2g} -> {entropy[-1][1]:.2g}"
            parts.append(f"{span} (lowest {low[1]:.2g} at {_steps(low[0])})")
        late = [r for r in records if "critic/value" in r][-max(1, len(records) // 5) :]
        if late and all("imagine/return" in r and "wm/loss_reward" in r for r in late):
            value, target = (
                np.mean([r["critic/value"] for r in late]),
                np.mean([r["imagine/return"] for r in late]),
            )
            parts.append(f"critic {value:.3g} for imagined returns {target:.3g}")
            parts.append(f"reward loss {np.mean([r['wm/loss_reward'] for r in late]):.2g}")
        saturated = [r["actor/saturated"] for r in late if "actor/saturated" in r]
        if saturated:
            parts.append(f"imagined means beyond the squash's range {np.mean(saturated):.0%}")
        if scores:
            parts.append(f"last 10 training episodes {np.mean([score for _, score in scores[-10:]]):.1f}")
        drift = self.action_drift()
        if drift:
            parts.append(drift)
        return f"{self}: " + "; ".join(parts)

    def action_drift(self) -> str:
        """Where the training episodes' actions went (an actor whose mean drifts to the bounds before
        it sees a reward explores elsewhere than its first episodes did): the largest per-episode mean
        action over the run, and the last 10 episodes', each with its share of actions at the bounds."""
        rows = []
        steps = 0
        for path in sorted((self.logdir / "episodes").glob("*.npz")):
            try:
                with np.load(path) as episode:
                    action = np.asarray(episode["action"], np.float64)
            except (OSError, ValueError, KeyError):
                continue
            steps += len(action)
            onehot = np.isin(action, (0.0, 1.0)).all() and (action.sum(-1) == 1).all()
            if action.ndim == 2 and len(action) and not onehot:  # continuous actions only
                mean = float(np.abs(action.mean(0)).max())
                rows.append((steps * self.repeat, mean, float((np.abs(action) > 0.99).mean())))
        if not rows:
            return ""
        step, mean, bounds = max(rows, key=lambda row: row[1])
        last = rows[-10:]
        return (
            f"episode-mean action up to {mean:.2f} by {_steps(step)} ({bounds:.0%} at the bounds), "
            f"last 10 {np.mean([r[1] for r in last]):.2f} ({np.mean([r[2] for r in last]):.0%})"
        )

    def at(self, step: int) -> float:
        """The return of the last evaluation at or before ``step`` environment steps, once the run has
        been evaluated at ``step`` or later (NaN before)."""
        returns = self.returns()
        before = [s for s in returns if s <= step]
        return returns[max(before)] if before and max(returns) >= step else np.nan


ARCHIVED = ("config.yaml", "metrics.jsonl", "scores.jsonl")


def archive(jobs: list[Job], outdir: Path, into: Path) -> list[Path]:
    """Copies the records of every evaluated run to the same place under ``into``; returns where.
    A run archived earlier with more evaluations (from another machine, say) is kept."""
    copied = []
    for job in jobs:
        target = into / job.logdir.relative_to(outdir)
        if not job.returns() or target.resolve() == job.logdir.resolve():
            continue
        if sum("eval/return" in r for r in read_records(target / "metrics.jsonl")) > len(job.returns()):
            print(f"{job}: the archive's run in {target} is further along; kept")
            continue
        target.mkdir(parents=True, exist_ok=True)
        for name in ARCHIVED:
            if (job.logdir / name).is_file():
                # Through a temporary file: a full disk leaves the archive's earlier copy whole.
                partial = target / f".{name}.partial"
                shutil.copyfile(job.logdir / name, partial)
                partial.replace(target / name)
        copied.append(target)
    return copied


def train(jobs: list[Job], parallel: int, threads: int, logs: Path) -> list[Job]:
    """Runs the unfinished jobs, ``parallel`` at a time; returns the ones that failed."""
    pending = [job for job in jobs if not job.finished()]
    for job in jobs:
        if job not in pending:
            print(f"{job}: finished earlier ({job.logdir})")
    environ = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    logs.mkdir(parents=True, exist_ok=True)
    running: dict[Job, tuple[subprocess.Popen[bytes], float]] = {}
    failed = []
    try:
        while pending or running:
            while pending and len(running) < parallel:
                job = pending.pop(0)
                # One file per run: methods side by side in one outdir keep their outputs apart.
                name = f"{job.task.replace('/', '_')}-{job.method}-{job.seed}.log"
                log = (logs / name).open("ab")
                resumed = "resuming" if (job.logdir / "checkpoint.pt").is_file() else "starting"
                print(f"{job}: {resumed} ({job.logdir}, output in {log.name})", flush=True)
                running[job] = (
                    subprocess.Popen(job.command, env=environ, stdout=log, stderr=log),
                    time.time(),
                )
                log.close()
            time.sleep(1.0)
            for job, (proc, began) in list(running.items()):
                if proc.poll() is not None:
                    del running[job]
                    job.forget()
                    minutes = (time.time() - began) / 60
                    if proc.returncode != 0:
                        failed.append(job)
                    state = "done" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
                    print(f"{job}: {state} after {minutes:.1f} min: {job.cpu_hours():.2f} CPU h", flush=True)
    finally:
        # Stopping the suite stops its runs, which checkpoint; the same command resumes them.
        for proc, _ in running.values():
            proc.terminate()
        for proc, _ in running.values():
            proc.wait()
    return failed


def reference_at(references: list, task: str, step: int) -> float:
    for ref in references:
        if task_key(ref.task) == task_key(task) and step in ref.x:
            return float(ref.y[list(ref.x).index(step)])
    return np.nan


def _steps(count: int) -> str:
    return f"{count / 1000:.3g}k" if count >= 1000 else str(count)


def _cell(value: float) -> str:
    return f"{value:16.1f}" if np.isfinite(value) else f"{'-':>16}"


def _mean_cell(values: np.ndarray) -> str:
    """Mean +- std over the seeds that reached the step; ``mean (k/n)`` while only k of n have."""
    done = values[np.isfinite(values)]
    if not len(done):
        return f"{'-':>16}"
    if len(done) < len(values):
        return f"{f'{np.mean(done):.1f} ({len(done)}/{len(values)})':>16}"
    return f"{f'{np.mean(done):.1f} +- {np.std(done):.1f}':>16}"


def table(jobs: list[Job], at: Sequence[int], references: list) -> list[str]:
    """The lines of the suite's table (returns at ``at`` environment steps), then its summary: the
    tasks at or above their reference and the mean over tasks, at the last step, over the runs that
    reached it (their count is said, so a suite still running is not mistaken for a finished one)."""
    width = max(len(job.task) for job in jobs) + 2
    head = "".join(f"{_steps(s):>16}" for s in at)
    lines = [f"{'task':<{width}}{'seed':>5}{head}{'CPU h':>8}"]
    means, refs, reached = [], [], 0
    for task in dict.fromkeys(job.task for job in jobs):
        rows = [job for job in jobs if job.task == task]
        for job in rows:
            cells = "".join(_cell(job.at(s)) for s in at)
            hours = job.cpu_hours()
            lines.append(
                f"{task:<{width}}{job.seed:>5}{cells}"
                + (f"{hours:8.2f}" if np.isfinite(hours) else f"{'-':>8}")
            )
        values = np.array([[job.at(s) for s in at] for job in rows])
        lines.append(f"{'':<{width}}{'mean':>5}" + "".join(_mean_cell(v) for v in values.T))
        reference = [reference_at(references, task, s) for s in at]
        lines.append(f"{'':<{width}}{'ref':>5}" + "".join(_cell(r) for r in reference))
        final = values[:, -1][np.isfinite(values[:, -1])]
        reached += len(final)
        means.append(np.mean(final) if len(final) else np.nan)
        refs.append(reference[-1])
    means_a, refs_a = np.array(means), np.array(refs)
    known = np.isfinite(means_a) & np.isfinite(refs_a)
    if known.any():
        above = int(np.sum(means_a[known] >= refs_a[known]))
        lines.append(
            f"at {_steps(at[-1])}: {above} of {int(known.sum())} tasks at or above the reference; "
            f"mean over tasks {np.mean(means_a[known]):.1f} against {np.mean(refs_a[known]):.1f} "
            f"({reached} of {len(jobs)} runs there)"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.tasks = [task if "/" in task else f"dmc/{task}" for task in args.tasks]
    try:  # a misspelt task fails here, in one line, before any run starts
        for task in args.tasks:
            check_env_id(task)
    except DreamworldError as error:
        print(f"dmc_suite: {error}", file=sys.stderr)
        return 2
    references = load_reference(args.reference) if args.reference else []
    jobs = [Job(args, task, seed) for task in args.tasks for seed in args.seeds]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    failed = [] if args.table else train(jobs, args.jobs, args.threads, Path(args.outdir) / "logs")
    print("\n".join(table(jobs, sorted(args.at), references)))
    print("\n".join(job.diagnosis() for job in jobs))
    if args.archive:
        for path in archive(jobs, Path(args.outdir), Path(args.archive)):
            print(f"archived {path}")
    if args.plot:
        from dreamworld.tools.plot import plot

        tasks = sorted({task.replace("/", "_") for task in args.tasks})  # the run directories' names
        methods = sorted({job.method for job in jobs})  # other methods in the same outdir stay out
        for path in plot(
            args.outdir,
            args.plot,
            xaxis="env_step",
            bins=args.eval_every,
            reference=args.reference,
            tasks=tasks,
            methods=methods,
        ):
            print(path)
    for job in failed:
        print(f"{job} failed: see {Path(args.outdir) / 'logs'}; rerun the same command to resume it")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
