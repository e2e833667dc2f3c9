"""Data collection end to end: the driver, `dreamworld collect`, resuming, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dreamworld.cli import main
from dreamworld.config import load_config
from dreamworld.data import EpisodeStore, Replay
from dreamworld.envs import make_vector_env
from dreamworld.errors import DreamworldError
from dreamworld.run.collect import collect
from dreamworld.run.driver import Driver
from dreamworld.run.policies import RandomPolicy


def cartpole(logdir, **overrides):
    base = {
        "logdir": str(logdir),
        "env.name": "gym/CartPole-v1",
        "env.parallel": "serial",
        "log.progress": "false",
        "collect.episodes": "3",
    }
    return load_config(overrides={**base, **overrides})


def test_driver_hands_out_whole_episodes_and_every_step():
    env = make_vector_env("gym/CartPole-v1", 2, parallel="serial", time_limit=15)
    driver = Driver(env, seed=0)
    steps, episodes = [], []
    driver.on_step(steps.append)
    driver.on_episode(lambda episode, index: episodes.append((index, episode)))
    with env:
        driver.run(RandomPolicy(env.act_space, 2, seed=0), episodes=6)
    assert len(episodes) >= 6 and driver.episodes == len(episodes)
    for _, episode in episodes:
        assert episode["is_first"][0] and not episode["is_first"][1:].any()
        assert episode["is_last"][-1] and not episode["is_last"][:-1].any()
        assert episode["reward"][0] == 0
        assert len(episode["action"]) == len(episode["reward"]) <= 16  # reset + at most 15 steps
    assert driver.steps == 2 * len(steps)
    assert steps[0]["vector"].shape == (2, 4) and steps[0]["action"].shape == (2,)


def test_collect_writes_episodes_logs_and_a_video(tmp_path):
    config = cartpole(tmp_path / "run", **{"env.obs": "image", "env.size": "32"})
    result = collect(config)
    assert result.episodes == 3 and len(EpisodeStore(result.episode_dir)) == 3
    assert (tmp_path / "run" / "config.yaml").exists()
    scores = [json.loads(line) for line in (tmp_path / "run" / "scores.jsonl").read_text().splitlines()]
    assert [s["score"] for s in scores] == result.returns
    assert len(result.videos) == 1 and result.videos[0].exists()
    episode = next(EpisodeStore(result.episode_dir).episodes())
    assert episode["image"].shape[1:] == (32, 32, 3) and episode["image"].dtype == np.uint8
    assert list(tmp_path.glob("run/events.out.tfevents.*"))


def test_collect_resumes_and_only_adds_missing_episodes(tmp_path):
    collect(cartpole(tmp_path))
    again = collect(cartpole(tmp_path))
    assert again.episodes == 0 and len(EpisodeStore(tmp_path / "episodes")) == 3
    more = collect(cartpole(tmp_path, **{"collect.episodes": "5"}))
    assert more.episodes == 2
    stored = list(EpisodeStore(tmp_path / "episodes").episodes())
    firsts = {ep["vector"][0].tobytes() for ep in stored}
    assert len(firsts) == 5, "a resumed collection repeated an episode"


def test_same_seed_same_data_and_config_file_reproduces_the_run(tmp_path):
    collect(cartpole(tmp_path / "a", **{"env.envs": "2", "collect.policy": "brownian"}))
    assert (
        main(["collect", "--config", str(tmp_path / "a" / "config.yaml"), "--logdir", str(tmp_path / "b")])
        == 0
    )
    collect(cartpole(tmp_path / "c", **{"env.envs": "2", "collect.policy": "brownian", "seed": "1"}))
    a, b, c = (list(EpisodeStore(tmp_path / name / "episodes").episodes()) for name in "abc")
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert not all(np.array_equal(x["vector"], z["vector"]) for x, z in zip(a, c, strict=True))


def test_worker_processes_collect_their_shares_reproducibly(tmp_path):
    """With environments in processes, each worker collects its share on its own: the same episodes
    for the same seed (in whatever order they finish), all scores logged, worker 0's video kept."""
    options = {"env.envs": "2", "env.parallel": "process", "collect.episodes": "5", "env.time_limit": "30"}
    first = collect(cartpole(tmp_path / "a", **options))
    assert first.episodes == 5 and len(first.returns) == 5 and len(first.videos) == 1
    scores = (tmp_path / "a" / "scores.jsonl").read_text().splitlines()
    assert len(scores) == 5 and first.steps == sum(json.loads(line)["length"] for line in scores)
    collect(cartpole(tmp_path / "b", **options))

    def contents(name):
        episodes = EpisodeStore(tmp_path / name / "episodes").episodes()
        return sorted(b"".join(episode[key].tobytes() for key in sorted(episode)) for episode in episodes)

    assert contents("a") == contents("b")
    assert len(set(contents("a"))) == 5, "two workers collected the same episode"
    more = collect(cartpole(tmp_path / "a", **{**options, "collect.episodes": "6"}))
    assert more.episodes == 1 and len(EpisodeStore(tmp_path / "a" / "episodes")) == 6


def test_a_failing_collection_worker_is_one_line_error(tmp_path):
    config = cartpole(tmp_path, **{"env.envs": "2", "env.parallel": "process", "env.kwargs": {"bogus": 1}})
    # both workers fail; whichever reports first names itself
    with pytest.raises(DreamworldError, match=r"^collection worker [01]: .*bogus"):
        collect(config)


def test_collected_episodes_fill_a_replay(tmp_path):
    collect(cartpole(tmp_path, **{"collect.episodes": "4"}))
    replay = Replay(capacity=10_000, length=8)
    steps = replay.restore(EpisodeStore(tmp_path / "episodes"))
    assert steps == EpisodeStore(tmp_path / "episodes").num_steps() == len(replay)
    batch = replay.sample(16)
    assert batch["vector"].shape == (16, 8, 4) and batch["action"].shape == (16, 8)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["collect", "--env", "gym/CartPol-v1"], "CartPole-v1"),
        (["collect", "--replay.capacty", "5"], "replay.capacity"),
        (["collect", "--preset", "nope"], "unknown preset"),
        (["collect", "stray"], "overrides are written"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--logdir", str(tmp_path), "--log.progress", "false"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert "Traceback" not in err


def test_cli_collect_carracing_brownian_in_worker_processes(tmp_path, capsys):
    argv = ["collect", "--env", "carracing", "--policy", "brownian", "--episodes", "2"]
    argv += ["--workers", "2", "--env.time_limit", "40", "--logdir", str(tmp_path)]
    assert main([*argv, "--log.progress", "false"]) == 0
    out = capsys.readouterr().out
    assert "collected 2 episodes (80 steps)" in out and "video:" in out
    episode = next(EpisodeStore(tmp_path / "episodes").episodes())
    assert episode["image"].shape == (41, 64, 64, 3)
    assert episode["action"].shape == (41, 3) and np.abs(episode["action"]).max() <= 1
    assert not episode["is_terminal"].any() and episode["is_last"][-1]


def test_cli_envs_and_config(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    for suite in ("gym", "dmc", "atari", "carracing"):
        assert suite in out
    assert main(["config", "--preset", "atari100k", "--env.name", "atari/breakout"]) == 0
    out = capsys.readouterr().out
    assert "name: atari/breakout" in out and "repeat: 4" in out
    assert main(["config", "--keys"]) == 0
    assert "replay.capacity" in capsys.readouterr().out
