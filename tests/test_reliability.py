"""A failed or interrupted command loses nothing and changes nothing (real runs on CartPole and the
toy environments of conftest.py): non-finite numbers, failed starts, shared run directories, Ctrl-C
and SIGTERM, resuming after a kill, unwritable paths, crashes in the user's environment, --steps 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamworld.cli import main
from dreamworld.run.checkpoint import load_checkpoint
from dreamworld.run.rundir import LOCK_FILE, RunDirectory
from tiny import TINY

CARTPOLE = ["--env", "gym/CartPole-v1", *TINY, "--dreamer.threads", "1"]


def one_line(err: str) -> str:
    err = err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "dreamworld.cli", *argv]


def toy_env(module: str, **kwargs: int) -> list[str]:
    options = ", ".join(f"{key}: {value}" for key, value in kwargs.items())
    return ["--env", f"gym/{module}:DwCount-v0", "--env.kwargs", f"{{{options}}}"]


def subprocess_env(toy_envs: str) -> dict[str, str]:
    """The environment of a child process that can import the toy environments' module."""
    folder = next(path for path in sys.path if Path(path, f"{toy_envs}.py").exists())
    return {**os.environ, "PYTHONPATH": os.pathsep.join([folder, os.environ.get("PYTHONPATH", "")])}


# 1. Non-finite observations and gradients -------------------------------------------------------


def test_a_nan_observation_stops_the_run_naming_environment_key_and_step(tmp_path, toy_envs, capsys):
    argv = ["train", "--logdir", str(tmp_path / "run"), *TINY, *toy_env(toy_envs, nan_at=7)]
    assert main([*argv, "--steps", "300"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "DwCount-v0" in err and "'vector'" in err and "step 7" in err and "nonfinite" in err
    assert _checkpoint_steps(tmp_path / "run") == 0  # only the new run's own, from before step 1
    # Asked for, the values are replaced and the run trains on, finite throughout.
    assert main([*argv, "--steps", "300", "--env.nonfinite", "replace"]) == 0
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt", kind="dreamer")
    assert all(torch.isfinite(value).all() for value in state["model"].values() if value.is_floating_point())


def test_non_finite_updates_are_skipped_counted_and_stop_the_run_keeping_the_checkpoint(
    tmp_path, monkeypatch, capsys
):
    from dreamworld.algos.dreamer.agent import Dreamer

    argv = ["train", "--logdir", str(tmp_path), *CARTPOLE, "--dreamer.max_nonfinite", "5"]
    assert main([*argv, "--steps", "200"]) == 0
    good = (tmp_path / "checkpoint.pt").read_bytes()
    before = load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer")["model"]
    preprocess = Dreamer.preprocess

    def poisoned(self, data, fit=False):  # what an overflowing model would produce
        batch = preprocess(self, data, fit)
        batch["reward"] = batch["reward"] * float("nan")
        return batch

    seen: list[Dreamer] = []
    train_step = Dreamer.train_step

    def counting(self, data):
        seen.append(self)
        return train_step(self, data)

    monkeypatch.setattr(Dreamer, "preprocess", poisoned)
    monkeypatch.setattr(Dreamer, "train_step", counting)
    capsys.readouterr()
    assert main([*argv, "--steps", "400"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "5 updates in a row" in err and "NaN" in err
    assert (tmp_path / "checkpoint.pt").read_bytes() == good
    agent = seen[-1]
    assert len(seen) == 5 and int(agent.nonfinite_streak) == 5
    # Each optimiser skips its own step: the world model's gradients were NaN (its reward loss), the
    # actor and critic learned on in the unchanged model.
    for key, value in agent.state_dict().items():
        if key.startswith("wm."):
            assert torch.equal(value.cpu(), before[key]), key


def test_an_update_with_non_finite_gradients_changes_no_weight(tmp_path):
    from dreamworld.algos.dreamer.agent import Dreamer
    from dreamworld.config import load_config
    from dreamworld.envs import make_vector_env

    config = load_config(
        ["dreamerv3"], overrides={key[2:]: value for key, value in zip(TINY[::2], TINY[1::2], strict=True)}
    )
    with make_vector_env("gym/CartPole-v1", 1, parallel="serial") as env:
        agent = Dreamer(config.dreamer, env.obs_space, env.act_space, "cpu")
    rng = np.random.default_rng(0)
    data = {
        "vector": rng.normal(size=(4, 16, 4)).astype(np.float32),
        "action": rng.integers(0, 2, (4, 16)),
        "reward": np.ones((4, 16), np.float32),
        "is_first": np.zeros((4, 16), bool),
        "is_last": np.zeros((4, 16), bool),
        "is_terminal": np.zeros((4, 16), bool),
    }
    metrics = agent.train_step(data)
    assert float(metrics["train/skipped"]) == 0.0
    before = {key: value.clone() for key, value in agent.state_dict().items()}
    moments = [m.clone() for opt in agent.opts.values() for m in opt.moment1 + opt.moment2]
    counts = [opt.count.clone() for opt in agent.opts.values()]
    data["vector"][1, 3, 2] = np.inf
    metrics = agent.train_step(data)
    assert float(metrics["train/skipped"]) == 1.0 and int(agent.nonfinite_streak) == 1
    assert not torch.isfinite(metrics["wm/grad_norm"])
    for key, value in agent.state_dict().items():
        # The slow critic keeps its schedule; the return statistics take the finite returns.
        if "slow" not in key and not key.endswith("updates") and not key.startswith("return_norm"):
            assert torch.equal(value, before[key]), key
    after = [m for opt in agent.opts.values() for m in opt.moment1 + opt.moment2]
    assert all(torch.equal(a, b) for a, b in zip(moments, after, strict=True))
    assert all(torch.equal(opt.count, c) for opt, c in zip(agent.opts.values(), counts, strict=True))
    assert agent.is_finite()
    data["vector"][1, 3, 2] = 0.0
    agent.train_step(data)
    assert int(agent.nonfinite_streak) == 0


# 2. A failed start changes nothing -------------------------------------------------------------


def test_failed_starts_leave_config_yaml_as_it_was(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--logdir", str(run), *CARTPOLE]
    assert main([*argv, "--steps", "150"]) == 0
    config = (run / "config.yaml").read_bytes()
    files = sorted(path.name for path in run.iterdir())
    assert main([*argv, "--steps", "300", "--env", "gym/NoSuchEnv-v9"]) == 2
    assert main([*argv, "--steps", "300", "--dreamer.world_model.deter", "48"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert "NoSuchEnv" in errors[0] and "dreamer.world_model.deter is 48 here but 32" in errors[1]
    assert (run / "config.yaml").read_bytes() == config
    assert sorted(path.name for path in run.iterdir()) == files
    assert main([*argv, "--steps", "300"]) == 0  # the run goes on as it was
    # A directory that the failed command created is removed again.
    assert main(["train", "--logdir", str(tmp_path / "new"), *TINY, "--env", "gym/NoSuchEnv-v9"]) == 2
    assert not (tmp_path / "new").exists()
    assert main(["collect", "--logdir", str(tmp_path / "new"), "--env", "gym/NoSuchEnv-v9"]) == 2
    assert not (tmp_path / "new").exists()


# 3. One process per run directory -------------------------------------------------------------


def test_a_second_process_on_a_run_directory_exits_naming_the_first(tmp_path, capsys):
    process = subprocess.Popen(
        cli("train", "--logdir", str(tmp_path), *CARTPOLE, "--steps", "100000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "metrics.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert main(["train", "--logdir", str(tmp_path), *CARTPOLE, "--steps", "100"]) == 2
        err = one_line(capsys.readouterr().err)
        assert "in use by" in err and f"pid {process.pid}" in err
        assert main(["collect", "--logdir", str(tmp_path), "--env", "gym/CartPole-v1"]) == 2
        assert "in use by" in one_line(capsys.readouterr().err)
    finally:
        process.kill()
        process.wait()
    # The lock of a killed process is stale: the next command takes it over and removes it at the end.
    assert (tmp_path / LOCK_FILE).exists()
    assert main(["train", "--logdir", str(tmp_path), *CARTPOLE, "--steps", "150"]) == 0
    assert not (tmp_path / LOCK_FILE).exists()


def test_world_models_stages_take_the_lock_too(tmp_path, capsys):
    with RunDirectory(tmp_path):
        assert main(["worldmodels", "train-vae", "--logdir", str(tmp_path)]) == 2
        assert "in use by" in one_line(capsys.readouterr().err)
        argv = ["worldmodels", "collect", "--logdir", str(tmp_path), "--env", "gym/CartPole-v1"]
        assert main([*argv, "--rollouts", "1"]) == 2
        assert "in use by" in one_line(capsys.readouterr().err)


# 4. Ctrl-C and SIGTERM save a checkpoint --------------------------------------------------------


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_writes_a_checkpoint_and_the_run_resumes_from_it(tmp_path, signum, status):
    argv = ["train", "--logdir", str(tmp_path), *CARTPOLE, "--env.parallel", "process"]
    process = subprocess.Popen(
        cli(*argv, "--steps", "100000"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:  # until it is past the prefill
        lines = (
            (tmp_path / "scores.jsonl").read_text().splitlines()
            if (tmp_path / "scores.jsonl").exists()
            else []
        )
        if lines and json.loads(lines[-1])["step"] > 150:
            break
        time.sleep(0.2)
    assert _checkpoint_steps(tmp_path) == 0  # step 0's; the first periodic one is 10 minutes away
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    lines = err.decode().strip().splitlines()
    assert process.returncode == status, err.decode()[-2000:]
    assert lines[-1].startswith(signal.Signals(signum).name) and "checkpoint" in lines[-1]
    steps = load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer")["counters"]["steps"]
    assert steps > 150 and not (tmp_path / LOCK_FILE).exists()
    assert main([*argv, "--steps", str(steps + 40)]) == 0
    assert load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer")["counters"]["steps"] >= steps + 40


# 5. A killed and resumed run's directory equals an uninterrupted one's ---------------------------

STEP_CLOCKS = [
    "--dreamer.log_every", "1e9", "--dreamer.log_steps", "50", "--dreamer.save_every", "1e9",
    "--dreamer.save_steps", "60", "--dreamer.eval_every", "150", "--dreamer.eval_episodes", "1",
]  # fmt: skip


def test_a_killed_and_resumed_run_directory_equals_an_uninterrupted_one(tmp_path):
    steps = "420"
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["train", "--logdir", str(whole), *CARTPOLE, *STEP_CLOCKS, "--steps", steps]) == 0
    argv = cli("train", "--logdir", str(parts), *CARTPOLE, *STEP_CLOCKS, "--steps", steps)
    for kill_after in (1, 3):  # checkpoints; each kill lands between two of them
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen = _checkpoint_steps(parts)
        deadline = time.monotonic() + 90
        while process.poll() is None and time.monotonic() < deadline:
            if _checkpoint_steps(parts) >= seen + 60 * kill_after:
                time.sleep(0.3)  # well past it: episodes, scores and metrics follow
                break
            time.sleep(0.05)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert main(["train", "--logdir", str(parts), *CARTPOLE, *STEP_CLOCKS, "--steps", steps]) == 0
    assert _episodes(whole) == _episodes(parts) and len(_episodes(whole)) > 10
    for name in ("scores.jsonl", "metrics.jsonl"):
        assert _lines(whole / name) == _lines(parts / name), name
    assert sorted(os.listdir(whole / "videos")) == sorted(os.listdir(parts / "videos"))
    assert sorted(os.listdir(whole / "replay")) == sorted(os.listdir(parts / "replay"))


def test_a_run_killed_before_its_first_periodic_checkpoint_resumes_from_step_0(tmp_path):
    """It does not start over on top of what it wrote (scores and episodes twice over)."""
    clocks = ["--dreamer.save_every", "1e9", "--dreamer.eval_every", "0", "--dreamer.log_steps", "50"]
    argv = ["train", *CARTPOLE, *clocks, "--steps", "200"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main([*argv, "--logdir", str(whole)]) == 0
    process = subprocess.Popen(
        cli(*argv, "--logdir", str(parts)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 90
    while process.poll() is None and time.monotonic() < deadline:
        scores = parts / "scores.jsonl"
        if scores.exists() and len(scores.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (parts / "checkpoint.pt").exists() and _checkpoint_steps(parts) == 0
    assert main([*argv, "--logdir", str(parts)]) == 0
    assert _episodes(whole) == _episodes(parts)
    for name in ("scores.jsonl", "metrics.jsonl"):
        assert _lines(whole / name) == _lines(parts / name), name


def _checkpoint_steps(logdir: Path) -> int:
    try:
        return int(load_checkpoint(logdir / "checkpoint.pt", kind="dreamer")["counters"]["steps"])
    except Exception:
        return 0


def _episodes(logdir: Path) -> list[dict[str, list]]:
    episodes = []
    for path in sorted((logdir / "episodes").glob("*.npz")):
        with np.load(path) as data:
            episodes.append({key: data[key].tolist() for key in data.files})
    return episodes


def _lines(path: Path) -> list[dict]:
    """The records of a JSON-lines file without what depends on the wall clock."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.startswith("time/") and k != "time"} for row in rows]


# 6. Unwritable log directories ----------------------------------------------------------------


def test_unusable_log_directories_are_one_line_errors(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    for logdir, words in [
        ("/proc/dreamworld-run", "does not allow new directories"),
        (str(a_file), "is a file"),
        (str(a_file / "run"), "is a file"),
    ]:
        assert main(["train", "--logdir", logdir, *CARTPOLE, "--steps", "10"]) == 2
        assert words in one_line(capsys.readouterr().err)
        assert main(["collect", "--logdir", logdir, "--env", "gym/CartPole-v1"]) == 2
        assert words in one_line(capsys.readouterr().err)
        assert main(["worldmodels", "train-vae", "--logdir", logdir]) == 2
        assert words in one_line(capsys.readouterr().err)
    assert a_file.read_text() == "not a directory"


# 7. A crash in the user's environment ---------------------------------------------------------


def test_a_crash_in_the_users_environment_names_its_file_and_line(tmp_path, toy_envs):
    argv = cli("train", "--logdir", str(tmp_path), *TINY, *toy_env(toy_envs, crash_at=30), "--steps", "300")
    for parallel in ("serial", "process"):
        done = subprocess.run(
            [*argv, "--env.parallel", parallel], capture_output=True, text=True, env=subprocess_env(toy_envs)
        )
        assert done.returncode == 2
        err = one_line(done.stderr)
        assert "RuntimeError: simulated crash" in err and f"{toy_envs}.py:" in err and "in _crash" in err
        assert "errors.log" in err
    log = (tmp_path / "errors.log").read_text()
    assert log.count("simulated crash") >= 2 and "Traceback" in log
    debug = subprocess.run([*argv, "--debug"], capture_output=True, text=True, env=subprocess_env(toy_envs))
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "_crash" in debug.stderr


# 8. The learner's threads follow the free cores ------------------------------------------------


def test_the_learner_takes_the_cores_that_are_free(monkeypatch):
    from dreamworld.run import system

    cores = len(os.sched_getaffinity(0))
    assert system.learner_threads(3) == 3
    monkeypatch.setattr(system, "free_cores", lambda seconds=0.3: 0.2)
    assert system.learner_threads(0) == 1
    monkeypatch.setattr(system, "free_cores", lambda seconds=0.3: cores - 0.3)
    assert system.learner_threads(0) == cores
    monkeypatch.setattr(system, "free_cores", lambda seconds=0.3: 64.0)
    assert system.learner_threads(0) == cores
    monkeypatch.undo()
    free = system.free_cores(0.05)
    assert free is None or 0.0 <= free <= cores


# 9. --steps 0, and config takes --env and --algo ----------------------------------------------


def test_zero_steps_trains_nothing_and_evaluates(tmp_path, capsys):
    assert main(["train", "--logdir", str(tmp_path), *CARTPOLE, "--steps", "0"]) == 0
    out = capsys.readouterr().out
    assert "trained 0 steps with 0 updates" in out and "evaluation return" in out
    assert load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer")["counters"]["steps"] == 0
    assert not list((tmp_path / "episodes").glob("*.npz"))


def test_config_takes_env_and_algo_like_train(capsys):
    assert main(["config", "--env", "dmc/walker-walk", "--env.repeat", "1", "--algo", "dreamerv1"]) == 0
    out = capsys.readouterr().out
    assert "name: dmc/walker-walk" in out and "repeat: 1" in out
    assert main(["config", "--algo", "dreamerv1"]) == 0
    v1 = capsys.readouterr().out
    assert main(["config"]) == 0
    assert v1 != capsys.readouterr().out
