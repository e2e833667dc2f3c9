"""The benchmark scripts' own behaviour (their figures are measured by running them, not here)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from dreamworld.config import load_config
from dreamworld.tools.plot import run_action_repeat
from tiny import TINY

ROOT = Path(__file__).resolve().parents[1]


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains ``text`` (Linux ``/proc``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_stopping_the_learning_benchmark_stops_its_training_runs(tmp_path):
    outdir = tmp_path / "learning"
    script = ROOT / "benchmarks" / "learning.py"
    command = [sys.executable, str(script), "--env", "gym/CartPole-v1", "--preset", "debug"]
    command += ["--steps", "100000", "--seeds", "0", "--outdir", str(outdir)]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not [p for p in processes_mentioning(f"--logdir {outdir}") if p != parent.pid]:
            assert parent.poll() is None, "the benchmark ended before its run started"
            assert time.monotonic() < deadline, "the training run never started"
            time.sleep(0.2)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 143
        assert processes_mentioning(f"--logdir {outdir}") == []
    finally:
        if parent.poll() is None:
            parent.kill()


def test_throughput_benchmark_prints_its_figures_per_size(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--sizes", "small", "--profile"]
    command += ["--updates", "1", "--blocks", "2", "--json", str(tmp_path / "rows.json")]
    command += ["--", "--dreamer.explore.disag", "0.1", "--dreamer.explore.models=3"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    row = next(line for line in result.stdout.splitlines() if line.startswith("size=small "))
    figures = dict(item.split("=") for item in row.split())
    assert float(figures["updates_per_s_min"]) <= float(figures["updates_per_s"])
    assert float(figures["updates_per_s"]) <= float(figures["updates_per_s_max"])
    assert float(figures["ms_per_update"]) == pytest.approx(1e3 / float(figures["updates_per_s"]), rel=0.01)
    assert float(figures["fraction_of_peak"]) > 0 and float(figures["gflop_per_update"]) > 1
    assert float(figures["aten_ops_per_update"]) > 1000 and figures["compile"] == "auto"
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert saved["device"] == "cpu" and saved["rows"][0]["size"] == "small"
    assert saved["overrides"] == {"dreamer.explore.disag": "0.1", "dreamer.explore.models": "3"}
    assert "every row with dreamer.explore.disag=0.1 dreamer.explore.models=3" in result.stdout


def test_a_runs_action_repeat_is_read_from_its_saved_configuration(tmp_path):
    """What the learning and suite benchmarks count environment steps with."""
    (tmp_path / "config.yaml").write_text("env:\n  name: dmc/cartpole-swingup\n  repeat: 4\n")
    assert run_action_repeat(tmp_path) == 4
    assert run_action_repeat(tmp_path / "not-started") is None
    (tmp_path / "config.yaml").write_text("env:\n  name: dmc/cartpole-swingup\n  repeat: null\n")
    assert run_action_repeat(tmp_path) == 2  # the suite's default
    (tmp_path / "config.yaml").write_text("env: [unclosed\n")
    assert run_action_repeat(tmp_path) is None


def test_suite_benchmark_trains_resumes_and_tabulates_against_references(tmp_path):
    """Two seeds side by side, then a longer budget resumes both, then the table alone: returns by
    environment step, mean +- std, the reference at that step and the count of tasks above it."""
    outdir, reference = tmp_path / "suite", tmp_path / "reference.csv"
    reference.write_text("task,method,x,y\ngym_cartpole-v1,paper,300,5\ngym/CartPole-v1,paper,600,1e4\n")
    script = [sys.executable, str(ROOT / "benchmarks" / "dmc_suite.py"), "--tasks", "gym/CartPole-v1"]
    script += ["--preset", "debug", "--seeds", "0", "1", "--jobs", "2", "--eval-every", "150"]
    script += ["--eval-episodes", "1", "--outdir", str(outdir), "--reference", str(reference)]

    def suite(*flags: str) -> list[str]:
        # Tiny sizes, few updates; the suite sets the evaluations.
        overrides = ["--", *TINY[: TINY.index("--dreamer.eval_episodes")], "--dreamer.train_ratio", "8"]
        done = subprocess.run([*script, *flags, *overrides], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        return done.stdout.splitlines()

    lines = suite("--steps", "300", "--at", "300", "600")
    assert sum("starting" in line for line in lines) == 2
    logs = sorted(path.name for path in (outdir / "logs").iterdir())  # one per task, method and seed
    assert logs == [f"gym_CartPole-v1-dreamerv3-debug-{seed}.log" for seed in (0, 1)]
    seeds = [line.split() for line in lines if line.startswith("gym/CartPole-v1 ") and "seed" not in line]
    assert [row[:2] for row in seeds] == [["gym/CartPole-v1", "0"], ["gym/CartPole-v1", "1"]]
    assert all(row[3] == "-" for row in seeds)  # nothing at 600 yet
    assert next(line for line in lines if line.split()[:1] == ["ref"]).split()[1:] == ["5.0", "10000.0"]
    lines = suite("--steps", "600", "--at", "300", "600")
    assert sum("resuming" in line for line in lines) == 2
    rows = [line.split() for line in lines if line.startswith("gym/CartPole-v1 ") and "seed" not in line]
    assert all(row[3] != "-" for row in rows) and [row[2] for row in rows] == [row[2] for row in seeds]
    shutil.copytree(
        outdir / "gym_CartPole-v1" / "dreamerv3-debug" / "0", outdir / "gym_CartPole-v1" / "other" / "0"
    )
    lines = suite("--table", "--steps", "600", "--at", "600", "--plot", str(tmp_path / "plots"))
    assert not any("starting" in line or "resuming" in line for line in lines)
    curves = json.loads((tmp_path / "plots" / "eval_return.json").read_text())["curves"]
    assert {curve["method"] for curve in curves} == {"dreamerv3-debug"}  # not the other method
    summary = next(line for line in lines if line.startswith("at 600: "))
    assert summary.startswith("at 600: 0 of 1 tasks at or above the reference")
    diagnoses = [line for line in lines if line.startswith("gym/CartPole-v1 seed ")]
    assert len(diagnoses) == 2 and all("first rewarded episode by " in line for line in diagnoses)
    assert all("critic " in line and "reward loss " in line for line in diagnoses)


def test_doom_benchmark_finds_the_controllers_of_the_experiments_inputs(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import worldmodels_doom
    from dreamworld.config import load_config, save_config

    save_config(load_config(["worldmodels", "worldmodels_doom"]), tmp_path / "config.yaml")
    assert (
        worldmodels_doom.controller_directory(tmp_path, 1.15, []) == tmp_path / "controller-zhc-dream-tau1.15"
    )
    off = ["--worldmodels.controller.cell", "false"]
    assert worldmodels_doom.controller_directory(tmp_path, 1.0, off) == tmp_path / "controller-dream-tau1"


def test_learning_benchmark_reports_every_evaluation_statistic(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning

    lines = [{"step": 5, "eval/return": 1.0, "eval/return_std": 0.1, "eval/length": 9.0, "eval/crashed": 0.5}]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    keys = learning.eval_keys([tmp_path / "a", tmp_path / "not-started"])
    assert keys == ["eval/return", "eval/crashed", "eval/length"]


def test_fixed_policy_baselines(capsys, monkeypatch):
    """CartPole pays 1 per step: random and constant policies' returns equal their lengths."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import fixed_policies

    argv = ["fixed_policies.py", "--env", "gym/CartPole-v1", "--policies", "random", "0"]
    monkeypatch.setattr(sys, "argv", argv)
    fixed_policies.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "gym/CartPole-v1, 10 episodes each (repeat 1)" and len(lines) == 3
    for line in lines[1:]:
        mean = float(line.split("return")[1].split("±")[0])
        assert f"length {mean:.2f}" in line
    result = fixed_policies.run_policy(load_config(overrides={"env.name": "gym/CartPole-v1"}).env, "0", 3)
    assert 8 <= result["length"] <= 12 and result["return"] == result["length"]  # pushing left falls fast
    with pytest.raises(SystemExit, match="needs"):
        fixed_policies.constant_action("0.1,0.2", gym.spaces.Box(-1, 1, (3,)))
    space = gym.spaces.Box(-1, 1, (2,))
    assert fixed_policies.normal_policy("normal:0.5:0.2", space)[0].tolist() == [0.5, 0.5]
    mean, std = fixed_policies.normal_policy("normal:0.25,-0.5:0.9", space)
    assert mean.tolist() == [0.25, -0.5] and std == 0.9
    pendulum = load_config(overrides={"env.name": "gym/Pendulum-v1", "env.time_limit": "20"}).env
    result = fixed_policies.run_policy(pendulum, "normal:0:0.5", 2)
    assert result["length"] == 20 and result["rewarded"] == 0.0  # Pendulum's rewards are never positive
    for policy in ("colored:2", "colored:1:3", "brownian", "brownian:0.5"):
        result = fixed_policies.run_policy(pendulum, policy, 2)
        assert result["length"] == 20 and result["return"] < 0, policy
    obs, rng = {"is_first": np.asarray(True)}, np.random.default_rng(0)

    def lag1(policy: str) -> float:  # the actions' correlation from one step to the next
        act = fixed_policies.episode_actor(policy, space, rng)
        actions = np.stack([act({**obs, "is_first": np.asarray(step == 0)}, step) for step in range(400)])
        assert actions.shape == (400, 2) and np.abs(actions).max() <= 1, policy
        return float(np.corrcoef(actions[:-1, 0], actions[1:, 0])[0, 1])

    assert lag1("colored:0") < 0.2 < lag1("colored:1") < lag1("colored:2")
    assert lag1("brownian") > 0.9 and abs(lag1("normal:0:0.5")) < 0.2


def test_distributed_benchmark_prints_rates_for_one_and_two_ranks():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "benchmarks" / "distributed.py"
    done = subprocess.run(
        [sys.executable, str(script), "--nproc", "1", "2", "--batch", "2", "--updates", "1"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("nproc=")]
    assert [row.split()[0] for row in rows] == ["nproc=1", "nproc=2"]
    assert all("allreduce_ms=" in row for row in rows)


def test_suite_diagnosis_follows_the_actions_of_the_training_episodes(tmp_path, monkeypatch):
    """The largest per-episode mean action over the run and the last episodes', with their share at
    the bounds, in environment steps (policy steps x the action repeat); one-hot actions say nothing."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import dmc_suite

    args = dmc_suite.parse_args(
        ["--tasks", "dmc/finger-spin", "--outdir", str(tmp_path), "--", "--env.repeat", "2"]
    )
    job = dmc_suite.Job(args, "dmc/finger-spin", 0)
    episodes = job.logdir / "episodes"
    episodes.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, centre in enumerate([0.0, 0.6, 0.1]):
        action = np.clip(rng.normal(centre, 0.01, (100, 2)), -1, 1).astype(np.float32)
        action[:10] = 1.0  # a tenth at the bounds
        np.savez(episodes / f"2026010{index}T000000-len100.npz", action=action)
    assert (
        job.action_drift() == "episode-mean action up to 0.64 by 400 (10% at the bounds), last 10 0.31 (10%)"
    )
    for path in episodes.glob("*.npz"):
        path.unlink()
    np.savez(episodes / "20260101T000000-len3.npz", action=np.eye(3, dtype=np.float32))
    assert job.action_drift() == ""


def test_suite_counts_a_run_in_the_repeat_it_was_trained_with(tmp_path, monkeypatch):
    """A table read without the training's overrides still converts policy steps with the run's saved
    action repeat; a bare domain-task means dmc/, and a misspelt task fails in one line before any run."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import dmc_suite

    args = dmc_suite.parse_args(["--tasks", "dmc/finger-spin", "--outdir", str(tmp_path)])
    assert dmc_suite.Job(args, "dmc/finger-spin", 0).repeat == 2  # the preset's, for a run not started
    logdir = tmp_path / "dmc_finger-spin" / "dreamerv3-dmc_proprio_cpu" / "0"
    logdir.mkdir(parents=True)
    (logdir / "config.yaml").write_text("env:\n  name: dmc/finger-spin\n  repeat: 4\n")
    (logdir / "metrics.jsonl").write_text('{"step": 6250, "eval/return": 1.5}\n')
    late = {"critic/value": 1.0, "imagine/return": 1.0, "wm/loss_reward": 0.1, "actor/saturated": 0.25}
    with (logdir / "metrics.jsonl").open("a") as metrics:
        metrics.write(json.dumps({"step": 7000, **late}) + "\n")
    job = dmc_suite.Job(args, "dmc/finger-spin", 0)
    assert job.repeat == 4 and job.returns() == {25000: 1.5}
    assert "imagined means beyond the squash's range 25%" in job.diagnosis()

    script = [sys.executable, str(ROOT / "benchmarks" / "dmc_suite.py"), "--table", "--outdir", str(tmp_path)]
    done = subprocess.run([*script, "--tasks", "finger-spn"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert (
        done.stderr.strip() == "dmc_suite: unknown dm_control task 'finger-spn'; did you mean 'finger-spin'?"
    )
    done = subprocess.run(
        [*script, "--tasks", "finger-spin", "--seeds", "0", "--at", "25000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert any(line.split()[:3] == ["dmc/finger-spin", "0", "1.5"] for line in done.stdout.splitlines())


def test_suite_archives_its_runs_records_where_the_table_reads_them(tmp_path, monkeypatch):
    """--archive copies a run's config, metrics and scores (not its checkpoint, replay or episodes);
    the table of the archive equals the table of the runs; a run archived further along is kept."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import dmc_suite

    outdir, into = tmp_path / "runs", tmp_path / "archive"
    logdir = outdir / "dmc_finger-spin" / "dreamerv3-dmc_proprio_cpu" / "0"
    (logdir / "episodes").mkdir(parents=True)
    (logdir / "config.yaml").write_text("env:\n  name: dmc/finger-spin\n  repeat: 2\n")
    rows = [{"step": 6250, "eval/return": 1.5}, {"step": 6300, "time/cpu_hours": 0.5}]
    (logdir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (logdir / "scores.jsonl").write_text('{"step": 500, "score": 3.0}\n')
    (logdir / "checkpoint.pt").write_bytes(b"weights")
    jobs = [dmc_suite.Job(dmc_suite.parse_args(["--outdir", str(outdir)]), "dmc/finger-spin", 0)]
    copied = dmc_suite.archive(jobs, outdir, into)
    target = into / "dmc_finger-spin" / "dreamerv3-dmc_proprio_cpu" / "0"
    assert copied == [target]
    assert sorted(path.name for path in target.iterdir()) == ["config.yaml", "metrics.jsonl", "scores.jsonl"]
    archived = [dmc_suite.Job(dmc_suite.parse_args(["--outdir", str(into)]), "dmc/finger-spin", 0)]
    at = [12500, 25000]
    assert dmc_suite.table(archived, at, [])[1:] == dmc_suite.table(jobs, at, [])[1:]
    assert archived[0].cpu_hours() == 0.5 and archived[0].scores() == [(1000, 3.0)]

    further = [*rows, {"step": 12500, "eval/return": 9.0}]
    (target / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in further))
    assert dmc_suite.archive(jobs, outdir, into) == []
    assert '"eval/return": 9.0' in (target / "metrics.jsonl").read_text()
    assert dmc_suite.archive(archived, into, into) == []  # archiving the archive into itself: nothing

    with (logdir / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"step": 7000, "eval/ret')  # a run stopped mid-write
    stopped = dmc_suite.Job(dmc_suite.parse_args(["--outdir", str(outdir)]), "dmc/finger-spin", 0)
    with pytest.warns(UserWarning, match="skipped 1 malformed line"):
        assert stopped.returns() == {12500: 1.5}


def test_suite_table_of_a_suite_still_running_says_how_many_runs_it_counts(tmp_path, monkeypatch):
    """A seed not started shows '-' and says so in its diagnosis; the mean row averages the seeds that
    reached each step and marks how many did; the summary counts the runs behind it."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import dmc_suite

    args = dmc_suite.parse_args(["--outdir", str(tmp_path), "--seeds", "0", "1"])
    logdir = tmp_path / "dmc_finger-spin" / "dreamerv3-dmc_proprio_cpu" / "0"
    logdir.mkdir(parents=True)
    (logdir / "config.yaml").write_text("env:\n  name: dmc/finger-spin\n  repeat: 2\n")
    rows = [{"step": 6250, "eval/return": 300.0}, {"step": 50000, "eval/return": 900.0}]
    (logdir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    jobs = [dmc_suite.Job(args, "dmc/finger-spin", seed) for seed in (0, 1)]
    references = dmc_suite.load_reference("dreamerv3_dmc_proprio")
    lines = dmc_suite.table(jobs, [12500, 100000], references)
    assert lines[2].split() == ["dmc/finger-spin", "1", "-", "-", "-"]
    assert lines[3].split() == ["mean", "300.0", "(1/2)", "900.0", "(1/2)"]
    assert lines[-1] == (
        "at 100k: 1 of 1 tasks at or above the reference; "
        "mean over tasks 900.0 against 768.0 (1 of 2 runs there)"
    )
    assert jobs[1].diagnosis().startswith("dmc/finger-spin seed 1: not started (no records in ")


def test_finger_spin_motion_tells_a_spin_from_strokes_back_and_forth(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import finger_spin

    spin = np.full(100, -20.0)
    strokes = np.tile([-20.0, -10.0, 0.5, 10.0, 20.0, 10.0], 10)  # still (0.5) does not count as reversing
    assert finger_spin.motion(spin) == {"rewarded": 1.0, "other": 0.0, "reversals": 0}
    assert finger_spin.motion(strokes) == {"rewarded": 10 / 60, "other": 10 / 60, "reversals": 19}
    run = tmp_path / "run"
    (run / "episodes").mkdir(parents=True)
    vector = np.zeros((6, 9), np.float32)
    vector[:, -1] = strokes[:6]
    np.savez(run / "episodes" / "a.npz", vector=vector, reward=np.ones(6, np.float32))
    assert finger_spin.main([str(run)]) == 0
    assert finger_spin.main([str(tmp_path / "missing")]) == 2 and not (tmp_path / "missing").exists()
