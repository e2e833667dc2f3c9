"""VectorEnv: identical results across backends, automatic resets, and failing workers."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest

from dreamworld.envs import make_env, make_vector_env
from dreamworld.envs.parallel import VectorEnv
from dreamworld.errors import EnvError


def stream(envs: VectorEnv, steps: int) -> list[dict[str, np.ndarray]]:
    observations = [envs.reset(seed=3)]
    for step in range(steps):
        # A fixed pattern that topples CartPole's pole now and then, so resets happen.
        observations.append(envs.step(np.array([(step // 4) % 2, 1], np.int64)))
    return observations


def test_backends_give_identical_streams() -> None:
    results = {}
    for parallel in ("serial", "thread", "process"):
        with make_vector_env("gym/CartPole-v1", 2, parallel=parallel) as envs:
            assert envs.num_envs == 2 and envs.act_space.n == 2
            results[parallel] = stream(envs, 60)
    serial = results["serial"]
    assert serial[0]["vector"].shape == (2, 4) and serial[0]["is_first"].all()
    assert not np.array_equal(serial[0]["vector"][0], serial[0]["vector"][1])  # seeds 3 and 4
    assert serial[1:] and any(obs["is_first"].any() for obs in serial[1:])  # auto-resets happened
    for parallel in ("thread", "process"):
        for a, b in zip(serial, results[parallel], strict=True):
            assert a.keys() == b.keys()
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{parallel} {key}")


@pytest.mark.parametrize("parallel", ["serial", "process"])
def test_automatic_reset_after_is_last(parallel: str) -> None:
    with make_vector_env("gym/CartPole-v1", 2, parallel=parallel, time_limit=3) as envs:
        first = envs.reset(seed=0)
        steps = [envs.step(np.zeros(2, np.int64)) for _ in range(4)]
        assert first["is_first"].all()
        assert [bool(obs["is_last"][0]) for obs in steps] == [False, False, True, False]
        assert not steps[2]["is_terminal"].any()
        assert steps[3]["is_first"].all() and (steps[3]["reward"] == 0).all()
        assert steps[3]["reward"].dtype == np.float32 and steps[3]["is_first"].dtype == bool


def test_pixels_in_threads_and_render() -> None:
    # Rendering contexts are bound to a thread: each environment keeps one thread for its calls.
    with make_vector_env("dmc/cartpole-swingup", 2, parallel="thread", obs="image", size=32) as envs:
        obs = envs.reset(seed=0)
        obs = envs.step(np.zeros((2, 1), np.float32))
        assert obs["image"].shape == (2, 32, 32, 3) and obs["image"].dtype == np.uint8
        frame = envs.render(1)
        assert frame is not None and frame.shape == (32, 32, 3)


def test_worker_error_is_one_line_naming_worker_and_env() -> None:
    with make_vector_env("gym/CartPole-v1", 2, parallel="process") as envs:
        envs.reset(seed=0)
        with pytest.raises(EnvError, match=r"worker 1 \(gym/CartPole-v1\)") as info:
            envs.step(np.array([0, 5]))  # 5 is no CartPole action: the environment asserts
        assert "\n" not in str(info.value)
        envs.step(np.array([0, 1]))  # the pipes stay in step after an error
        with pytest.raises(ValueError, match="3 actions for 2"):
            envs.step(np.array([0, 1, 0]))
        assert envs.step(np.array([0, 1]))["vector"].shape == (2, 4)


def test_worker_that_fails_to_start_reraises_the_dreamworld_error() -> None:
    with pytest.raises(EnvError, match=r"worker 0 \(dmc/walker-wlak\).*did you mean"):
        make_vector_env("dmc/walker-wlak", 1, parallel="process")


def test_dead_worker_is_reported_not_waited_for(toy_envs: str) -> None:
    start = time.monotonic()
    with make_vector_env(f"gym/{toy_envs}:DwCount-v0", 2, parallel="process", die_at=2) as envs:
        envs.reset(seed=0)
        envs.step([0, 0])
        with pytest.raises(EnvError, match=r"worker 0 .*died \(exit code 3\)"):
            envs.step([0, 0])
    assert time.monotonic() - start < 30


def test_unpicklable_factory_and_bad_mode() -> None:
    with pytest.raises(EnvError, match="picklable"):
        VectorEnv([lambda: make_env("gym/CartPole-v1")], parallel="process")
    with pytest.raises(EnvError, match="parallel must be one of"):
        VectorEnv([functools.partial(make_env, "gym/CartPole-v1")], parallel="fork")


def test_close_is_idempotent() -> None:
    envs = make_vector_env("gym/CartPole-v1", 1, parallel="process")
    envs.close()
    envs.close()
    with pytest.raises(RuntimeError, match="closed"):
        envs.reset()
