"""Data-parallel Dreamer on torch.distributed (gloo, on the CPU): N ranks of batch B take the update of
one rank of batch N x B, keep identical parameters, and one failing rank ends the run."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from dreamworld.run.distributed import _free_port

# One update of a tiny CartPole agent on a fixed batch, the batch's rows split over the ranks. Latent
# and action samples are made deterministic (the mean, the most likely class), so that the update
# does not depend on how the random numbers fall on the ranks.
UPDATE = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import torch
    from dreamworld.algos.dreamer.agent import Dreamer
    from dreamworld.config import load_config
    from dreamworld.envs import make_vector_env
    from dreamworld.run import distributed

    import dreamworld.nn.functional as functional
    import dreamworld.models.rssm as rssm

    torch.randn_like = torch.zeros_like
    functional.sample_index = rssm.sample_index = lambda probs: probs.argmax(-1)
    ranks = distributed.setup()
    torch.manual_seed(0)
    config = load_config(["dreamerv3", "classic"], overrides={"dreamer.world_model.vector_norm": "true"})
    with make_vector_env("gym/CartPole-v1", 1, parallel="serial") as env:
        agent = Dreamer(config.dreamer, env.obs_space, env.act_space, "cpu")
    rng = np.random.default_rng(0)
    batch, length = 16, 16
    data = {
        "vector": rng.normal(size=(batch, length, 4)).astype(np.float32),
        "action": rng.integers(0, 2, (batch, length)),
        "reward": rng.normal(size=(batch, length)).astype(np.float32),
        "is_first": rng.random((batch, length)) < 0.05,
        "is_last": np.zeros((batch, length), bool),
        "is_terminal": rng.random((batch, length)) < 0.05,
    }
    share = batch // ranks.world
    rows = slice(ranks.rank * share, (ranks.rank + 1) * share)
    for _ in range(2):
        agent.train_step({key: value[rows] for key, value in data.items()})
    torch.save(agent.state_dict(), f"{sys.argv[1]}/rank{ranks.rank}-of-{ranks.world}.pt")
    """
)


def _run_ranks(script: Path, out: Path, world: int) -> None:
    port = _free_port()
    processes = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)}
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        command = [sys.executable, str(script), str(out)]
        processes.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True))
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]


def test_two_ranks_of_batch_8_take_the_update_of_one_rank_of_batch_16(tmp_path):
    script = tmp_path / "update.py"
    script.write_text(UPDATE)
    _run_ranks(script, tmp_path, 1)
    _run_ranks(script, tmp_path, 2)
    single = torch.load(tmp_path / "rank0-of-1.pt")
    first, second = torch.load(tmp_path / "rank0-of-2.pt"), torch.load(tmp_path / "rank1-of-2.pt")
    for key, value in single.items():
        assert torch.equal(first[key], second[key]), key  # the ranks hold identical parameters
        if value.is_floating_point():
            torch.testing.assert_close(first[key], value, rtol=1e-4, atol=1e-5, msg=key)
        else:
            assert torch.equal(first[key], value), key


TINY_RUN = [
    "--dreamer.world_model.deter", "32", "--dreamer.world_model.hidden", "32",
    "--dreamer.world_model.units", "32", "--dreamer.world_model.stoch", "4",
    "--dreamer.world_model.classes", "4", "--dreamer.actor.units", "32", "--dreamer.critic.units", "32",
    "--replay.batch", "4", "--replay.length", "16", "--dreamer.train_ratio", "32",
    "--dreamer.prefill", "100", "--dreamer.eval_episodes", "1", "--dreamer.eval_every", "0",
    "--log.progress", "false", "--dreamer.threads", "1", "--dreamer.save_steps", "100",
]  # fmt: skip


def test_a_two_rank_run_trains_with_identical_parameters_and_only_rank_0_writes(tmp_path):
    from dreamworld.run.checkpoint import load_checkpoint

    argv = [sys.executable, "-m", "dreamworld.cli", "train", "--nproc", "2", "--logdir", str(tmp_path)]
    done = subprocess.run([*argv, *TINY_RUN, "--steps", "300"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # Parameters are compared at every checkpoint (every 100 steps and at the end): a difference
    # would have failed the run.
    state = load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer")
    assert state["counters"]["steps"] == 300 and state["counters"]["updates"] == 50  # half per rank
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    evaluation = [sys.executable, "-m", "dreamworld.cli", "eval", "--logdir", str(tmp_path)]
    evaluation += ["--episodes", "2"]
    done_eval = subprocess.run(evaluation, capture_output=True, text=True, timeout=300)
    assert done_eval.returncode == 0 and "over 2 episodes" in done_eval.stdout, done_eval.stderr[-2000:]
    (tmp_path / "eval").rename(tmp_path.parent / f"{tmp_path.name}-eval")  # out of the listing below
    assert done.stdout.count("training gym/CartPole-v1") == 1
    # Rank 1 writes only its replay's chunks, part of the checkpoint (what it needs to resume).
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "checkpoint.pt", "config.yaml", "episodes", next(tmp_path.glob("events*")).name, "metrics.jsonl",
        "replay", "replay-rank1", "scores.jsonl", "videos",
    ]  # fmt: skip


def test_a_failing_rank_ends_the_run_with_one_line_naming_it(tmp_path, toy_envs):
    folder = next(path for path in sys.path if Path(path, f"{toy_envs}.py").exists())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([folder, os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "dreamworld.cli", "train", "--nproc", "2", "--logdir", str(tmp_path)]
    argv += ["--env", f"gym/{toy_envs}:DwCount-v0", "--env.kwargs", "{crash_at: 30}", *TINY_RUN]
    done = subprocess.run([*argv, "--steps", "600"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()[-1]
    assert err.startswith("error: rank 1 of 2 failed") and "simulated crash" in err, done.stderr[-2000:]


def test_a_killed_two_rank_run_resumes_every_rank_from_the_checkpoint(tmp_path):
    import signal
    import time

    from dreamworld.run.checkpoint import load_checkpoint

    argv = [sys.executable, "-m", "dreamworld.cli", "train", "--nproc", "2", "--logdir", str(tmp_path)]
    argv += [*TINY_RUN, "--dreamer.save_steps", "60"]
    process = subprocess.Popen(
        [*argv, "--steps", "100000"], start_new_session=True, stdout=subprocess.DEVNULL
    )
    checkpoint, steps = tmp_path / "checkpoint.pt", 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and steps < 240:
        with contextlib.suppress(Exception):  # not written yet, or being replaced
            steps = load_checkpoint(checkpoint, kind="dreamer")["counters"]["steps"]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and both ranks, at once
    process.wait()
    state = load_checkpoint(checkpoint, kind="dreamer")
    before = state["counters"]
    assert before["steps"] >= 240 and len(state["ranks"]) == 1  # rank 1's replay, random state, envs
    assert state["ranks"][0]["replay"]["files"] and (tmp_path / "replay-rank1").is_dir()
    done = subprocess.run([*argv, "--steps", str(before["steps"] + 60)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "goes on from rank 0" not in done.stdout  # the same number of ranks: each its own state
    resumed = load_checkpoint(checkpoint, kind="dreamer")
    after = resumed["counters"]
    assert after["steps"] == before["steps"] + 60 and after["updates"] > before["updates"]
    # ... exactly as a run of two ranks that was never stopped.
    twin = [a if a != str(tmp_path) else str(tmp_path / "twin") for a in argv]
    done = subprocess.run([*twin, "--steps", str(after["steps"])], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    uninterrupted = load_checkpoint(tmp_path / "twin" / "checkpoint.pt", kind="dreamer")
    assert uninterrupted["counters"] == after
    for key, value in uninterrupted["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    # Another number of ranks goes on from rank 0's state, and says so.
    done = subprocess.run(
        [*[a for a in argv if a not in ("--nproc", "2")], "--steps", str(after["steps"] + 20)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0 and "the checkpoint is of 2 rank(s), this run has 1" in done.stdout
