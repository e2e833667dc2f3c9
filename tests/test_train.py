"""The training loop on real environments: updates, evaluation, reports, checkpoints, resuming."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import yaml

from dreamworld.algos.dreamer.loop import train
from dreamworld.cli import main
from dreamworld.config import available_presets, load_config
from dreamworld.config.loader import _preset_path
from dreamworld.run.checkpoint import load_checkpoint
from tiny import TINY


def overrides(argv: list[str]) -> dict[str, str]:
    return {argv[i][2:]: argv[i + 1] for i in range(0, len(argv), 2)}


def test_training_writes_metrics_checkpoint_and_evaluation(tmp_path):
    config = load_config(
        ["dreamerv3"], overrides={**overrides(TINY), "logdir": str(tmp_path), "dreamer.steps": "300"}
    )
    result = train(config)
    assert result.steps >= 300 and result.updates == pytest.approx((300 - 100) * 32 / 64, abs=2)
    assert len(result.eval_returns) == 2 and result.eval_return is not None
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*lines)
    for key in (
        "wm/loss_vector",
        "wm/loss_dyn",
        "actor/entropy",
        "critic/loss",
        "eval/return",
        "replay/size",
        "time/hours",
        "time/cpu_hours",
        "time/steps_per_second",
        "time/updates_per_second",
    ):
        assert key in keys, key
    state = load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer")
    assert state["counters"]["updates"] == result.updates


def test_a_second_run_resumes_from_the_checkpoint(tmp_path, capsys):
    argv = ["train", "--env", "gym/CartPole-v1", "--logdir", str(tmp_path), *TINY]
    argv += ["--dreamer.eval_every", "150"]
    assert main([*argv, "--steps", "200"]) == 0
    first = load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer")
    assert main([*argv, "--steps", "400"]) == 0
    second = load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer")
    before, after = first["counters"], second["counters"]
    assert after["steps"] >= 400 and after["updates"] > before["updates"] > 0
    assert second["seconds"] > first["seconds"] > 0  # the run's clocks go on across resumes
    assert second["cpu"] > first["cpu"] > 0
    records = map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
    hours = [record["time/hours"] for record in records if "time/hours" in record]
    assert hours == sorted(hours) and hours[-1] * 3600 >= first["seconds"]
    records = map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
    evaluated = [record["step"] for record in records if "eval/return" in record]
    assert evaluated == [150, 200, 300, 400]  # on the eval_every grid after the resume, plus each run's end
    out = capsys.readouterr().out
    assert "evaluation return" in out and "random policy" in out
    assert main([*argv, "--steps", "150", "--fresh"]) == 0
    assert "moved the previous run" in capsys.readouterr().out
    assert list(tmp_path.parent.glob(f"{tmp_path.name}.old-*"))


def task_presets() -> list[str]:
    """Every shipped Dreamer preset that names its task (``env.name``): a new one joins the test below."""
    presets = []
    for name in available_presets():
        layer = yaml.safe_load(_preset_path(name).read_text()) or {}
        if (
            "name" in (layer.get("env") or {})
            and "worldmodels" not in layer
            and not name.startswith("worldmodels")
        ):
            presets.append(name)
    return presets


TASK_PRESETS = task_presets()


def test_the_task_presets_are_found():
    assert {"atari100k", "carracing", "classic", "dmc_proprio_cpu", "fetch", "pyflyt"} <= set(TASK_PRESETS)


@pytest.mark.parametrize("preset", TASK_PRESETS)
def test_every_task_preset_trains_on_its_own_environment(preset, tmp_path):
    """Each task preset's environment and options (repeat, vector_norm, actor gradient, ...) train
    together for real, at tiny sizes and with 40-step episodes."""
    config = load_config(["dreamerv3", preset])
    argv = ["train", "--preset", preset, "--logdir", str(tmp_path), *TINY, "--steps", "130"]
    assert main([*argv, "--env.time_limit", "40", "--dreamer.eval_episodes", "1"]) == 0
    saved = load_config(files=[tmp_path / "config.yaml"])
    assert saved.env == dataclasses.replace(config.env, time_limit=40, parallel="serial")
    assert saved.dreamer.world_model.vector_norm == config.dreamer.world_model.vector_norm
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("wm/loss_reward" in line for line in lines) and any("eval/return" in line for line in lines)
    assert load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer")["counters"]["steps"] >= 130


def test_a_time_budget_stops_the_run_with_a_checkpoint_and_a_final_evaluation(tmp_path, capsys):
    argv = ["train", "--env", "gym/CartPole-v1", "--logdir", str(tmp_path), *TINY, "--steps", "100000"]
    assert main([*argv, "--dreamer.max_hours", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "dreamer.max_hours" in err
    assert main([*argv, "--dreamer.max_hours", "1e-5"]) == 0  # 36 ms: spent during the prefill
    out = capsys.readouterr().out
    assert "stopped at the 1e-05-hour budget" in out and "evaluation return" in out
    steps = load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer")["counters"]["steps"]
    assert 0 < steps < 100000
    # The budget counts the run's hours over resumes: a larger one lets the same run go on.
    assert main([*argv[:-1], str(steps + 60), "--dreamer.max_hours", "1"]) == 0
    resumed = load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer")["counters"]
    assert resumed["steps"] >= steps + 60 and "stopped at" not in capsys.readouterr().out


def test_image_task_writes_open_loop_and_evaluation_videos(tmp_path):
    argv = ["train", "--env", "gym/CartPole-v1", "--logdir", str(tmp_path), *TINY, "--steps", "250"]
    argv += ["--env.obs", "image", "--env.size", "16", "--dreamer.report_every", "10"]
    assert main(argv) == 0
    videos = {
        path.name.split("_")[0] + "_" + path.name.split("_")[1] for path in (tmp_path / "videos").iterdir()
    }
    assert any(name.startswith("wm_open") for name in videos) and any(
        name.startswith("eval_video") for name in videos
    )


def test_a_corrupt_checkpoint_is_a_one_line_error_and_is_kept(tmp_path, capsys):
    tmp_path.joinpath("checkpoint.pt").write_bytes(b"garbage")
    argv = ["train", "--env", "gym/CartPole-v1", "--logdir", str(tmp_path), *TINY, "--steps", "150"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "checkpoint" in err
    assert tmp_path.joinpath("checkpoint.pt").read_bytes() == b"garbage"


@pytest.mark.parametrize(
    "task",
    [
        {"env.name": "gym/CartPole-v1"},
        # Continuous actions with colored noise: each environment's sequence resumes where it was.
        {"env.name": "gym/Pendulum-v1", "env.time_limit": "20", "dreamer.actor.noise_color": "1.0"},
    ],
)
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, task):
    """Stopping at 180 steps and resuming to 260 gives bit-identical weights, replay and scores."""
    import numpy as np
    import torch

    base = {
        **overrides(TINY),
        **task,
        "env.envs": "2",
        "dreamer.eval_episodes": "0",
        "dreamer.report_every": "7",
    }
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(load_config(["dreamerv3"], overrides={**base, "logdir": str(whole), "dreamer.steps": "260"}))
    for steps in ("180", "260"):
        train(load_config(["dreamerv3"], overrides={**base, "logdir": str(parts), "dreamer.steps": steps}))
    a = load_checkpoint(whole / "checkpoint.pt", kind="dreamer")
    b = load_checkpoint(parts / "checkpoint.pt", kind="dreamer")
    assert a["counters"] == b["counters"] and a["counters"]["updates"] > 40
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["replay"]["rng"] == b["replay"]["rng"] and a["replay"]["count"] == b["replay"]["count"]
    for chunk, name in a["replay"]["files"].items():
        with (
            np.load(whole / "replay" / name) as x,
            np.load(parts / "replay" / b["replay"]["files"][chunk]) as y,
        ):
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    scores = [(p / "scores.jsonl").read_text().splitlines() for p in (whole, parts)]
    strip = [[{k: v for k, v in json.loads(line).items() if k != "time"} for line in s] for s in scores]
    assert strip[0] == strip[1] and len(strip[0]) > 5


def test_kill_9_during_training_leaves_a_resumable_run(tmp_path):
    """SIGKILL at arbitrary moments (checkpoints every 0.3 s): the last checkpoint always loads."""
    import random
    import signal
    import subprocess
    import sys
    import time

    argv = [sys.executable, "-m", "dreamworld.cli", "train", "--env", "gym/CartPole-v1"]
    argv += ["--logdir", str(tmp_path), *TINY, "--dreamer.save_every", "0.3", "--steps", "100000"]
    pace = random.Random(0)
    steps = []
    for _ in range(3):
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        checkpoint = tmp_path / "checkpoint.pt"
        written = checkpoint.stat().st_mtime if checkpoint.exists() else 0.0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:  # until it saves once more
            if checkpoint.exists() and checkpoint.stat().st_mtime > written:
                break
            time.sleep(0.1)
        time.sleep(pace.uniform(0.0, 1.5))
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        process.send_signal(signal.SIGKILL)
        process.wait()
        steps.append(_steps(tmp_path))
    assert steps[0] > 0 and steps == sorted(steps)
    final = steps[-1] + 30
    assert (
        main(["train", "--env", "gym/CartPole-v1", "--logdir", str(tmp_path), *TINY, "--steps", str(final)])
        == 0
    )
    assert _steps(tmp_path) >= final


def _steps(logdir) -> int:
    """Steps of the checkpoint in ``logdir``, checking that it and its replay files load."""
    from dreamworld.data import Replay

    state = load_checkpoint(logdir / "checkpoint.pt", kind="dreamer")
    Replay(state["replay"]["capacity"], state["replay"]["length"]).load(logdir / "replay", state["replay"])
    return state["counters"]["steps"]


def test_episode_stats_take_log_keys_at_the_last_step():
    import numpy as np

    from dreamworld.run.episodes import episode_stats

    episode = {
        "reward": np.ones(3),
        "log_success": np.array([0.0, 1.0, 0.0]),
        "log_dist": np.array([3.0, 2.0, 1.0]),
    }
    assert episode_stats(episode) == {"success": 0.0, "dist": 1.0}


def test_success_of_a_robotics_task_reaches_the_logs(tmp_path):
    """FetchReach reports is_success: it becomes episode/success and eval/success.

    Its episodes are 50 steps long (truncation), which eval/length counts in policy steps.
    """
    pytest.importorskip("gymnasium_robotics")
    argv = ["train", "--env", "fetch/reach-dense", "--logdir", str(tmp_path), *TINY, "--steps", "160"]
    assert main(argv) == 0
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*lines)
    assert "episode/success" in keys and "eval/success" in keys
    assert [line["eval/length"] for line in lines if "eval/length" in line] == [50.0]
    scores = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert all(score["success"] in (0.0, 1.0) for score in scores) and len(scores) >= 2


def test_step_clocks_write_metrics_and_checkpoints(tmp_path):
    """With the wall-clock periods out of reach, log_steps and save_steps alone trigger writes."""
    values = {**overrides(TINY), "logdir": str(tmp_path), "dreamer.steps": "300"}
    values.update({"dreamer.log_every": "1e9", "dreamer.save_every": "1e9"})
    values.update({"dreamer.log_steps": "50", "dreamer.save_steps": "100"})
    train(load_config(["dreamerv3"], overrides=values))
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    written = sorted({line["step"] for line in lines if "train/updates" in line})
    # On the grid of multiples of 50 (the first after the prefill), whatever step a run resumed at;
    # the last write is the final one, at the end of training.
    assert written[:-1] == [101, 150, 200, 250]
    state = load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer")
    # after the new run's step 0, steps 101 and 200, and the final save at 300
    assert state["replay"]["generation"] == 4


def test_trains_without_imageio_ffmpeg_writing_gifs(tmp_path):
    """GPU machines with a preinstalled torch often lack imageio-ffmpeg: the package imports, trains
    and writes its videos as GIFs, with one warning."""
    script = (
        "import sys, warnings; sys.modules['imageio_ffmpeg'] = None\n"
        "from dreamworld.cli import main\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    code = main(['train', '--logdir', {str(tmp_path)!r}, '--steps', '200', *{TINY!r}])\n"
        "print('warnings', sum('imageio-ffmpeg' in str(w.message) for w in caught))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warnings 1" in done.stdout
    assert list((tmp_path / "videos").glob("eval_video_*.gif")) and not list(
        (tmp_path / "videos").glob("*.mp4")
    )


def test_a_compiled_agent_is_warmed_up_before_its_first_update(tmp_path, monkeypatch, capsys):
    from dreamworld.algos.dreamer import compiled

    options = compiled.compile_options
    monkeypatch.setattr(compiled, "compile_options", lambda mode: {**options(mode), "backend": "eager"})
    values = {
        **overrides(TINY),
        "logdir": str(tmp_path),
        "dreamer.steps": "200",
        "dreamer.compile": "compile",
    }
    result = train(load_config(["dreamerv3"], overrides=values))
    assert result.updates > 0 and result.eval_return is not None
    assert "compiled the update (compile) in" in capsys.readouterr().out
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(line.get("time/compile_seconds", 0) > 0 for line in lines)
    assert any("wm/loss_vector" in line for line in lines)


def test_patience_ends_training_episodes_and_never_evaluation_ones(tmp_path):
    """Pendulum never pays a positive reward: with ``env.patience 7`` every training episode is 7
    steps long, while the evaluation runs its 200."""
    argv = ["train", "--env", "gym/Pendulum-v1", "--logdir", str(tmp_path), *TINY, "--steps", "130"]
    assert main([*argv, "--env.patience", "7", "--dreamer.eval_episodes", "1"]) == 0
    scores = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(scores) >= 10 and {score["length"] for score in scores} == {7}
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval/length"] for r in records if "eval/length" in r] == [200.0]
