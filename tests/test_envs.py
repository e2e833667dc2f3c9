"""Every suite steps for real and meets the observation contract of dreamworld.envs.base."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from dreamworld.envs import make_env, suite_table
from dreamworld.envs.base import Env
from dreamworld.envs.wrappers import action_converter, resize_image
from dreamworld.errors import EnvError, MissingDependencyError

FLAGS = {"reward", "is_first", "is_last", "is_terminal"}

CASES = [
    ("gym/CartPole-v1", {}, {"vector": (4,)}),
    ("gym/CartPole-v1", {"obs": "image", "size": 32}, {"image": (32, 32, 3)}),
    ("dmc/cartpole-swingup", {}, {"vector": (5,)}),
    ("dmc/cartpole-swingup", {"obs": "image"}, {"image": (64, 64, 3)}),
    ("dmc/cartpole-swingup", {"obs": "both", "gray": True}, {"image": (64, 64, 1), "vector": (5,)}),
    ("atari/pong", {}, {"image": (64, 64, 3)}),
    ("atari/pong", {"gray": True}, {"image": (64, 64, 1)}),
    ("carracing", {}, {"image": (64, 64, 3)}),
    ("carracing", {"discrete": True}, {"image": (64, 64, 3)}),
    ("vizdoom/take-cover", {}, {"image": (64, 64, 3)}),
    ("vizdoom/take-cover", {"gray": True, "size": 32}, {"image": (32, 32, 1)}),
    ("highway/merge", {}, {"vector": (25,), "log_crashed": ()}),
    (
        "highway/parking",
        {"obs": "both"},
        {"image": (64, 64, 3), "vector": (18,), "log_crashed": (), "log_success": ()},
    ),
    ("highway/racetrack", {"obs": "image", "gray": True}, {"image": (64, 64, 1), "log_crashed": ()}),
    ("pyflyt/quadx-hover", {"obs": "both", "size": 32}, {"image": (32, 32, 3), "vector": (21,)}),
    (
        "pyflyt/quadx-waypoints",
        {"obs": "both"},
        {"image": (64, 64, 3), "vector": (37,), "log_success": (), "log_targets_reached": ()},
    ),
    ("fetch/reach", {}, {"vector": (16,), "log_success": ()}),
    ("fetch/push", {"obs": "both", "gray": True}, {"image": (64, 64, 1), "vector": (31,), "log_success": ()}),
    ("panda/push", {}, {"vector": (24,), "log_success": ()}),
    ("panda/reach", {"obs": "image", "size": 32}, {"image": (32, 32, 3), "log_success": ()}),
]


def check_obs(env: Env, obs: dict[str, np.ndarray], first: bool) -> None:
    assert set(obs) == set(env.obs_space)
    for key, value in obs.items():
        space = env.obs_space[key]
        assert value.shape == space.shape and value.dtype == space.dtype, key
        assert space.contains(np.asarray(value)), key
    assert bool(obs["is_first"]) == first
    if first:
        assert obs["reward"] == 0 and not obs["is_last"]


def actions(env: Env, count: int) -> list[Any]:
    """Valid actions in every accepted form: indices and one-hots, or vectors in [-1, 1]."""
    space = env.act_space
    if isinstance(space, gym.spaces.Discrete):
        indices = [i % int(space.n) for i in range(count)]
        return [index if i % 2 else np.eye(int(space.n))[index] for i, index in enumerate(indices)]
    assert isinstance(space, gym.spaces.Box)
    assert (space.low == -1).all() and (space.high == 1).all() and space.dtype == np.float32
    corners = [-np.ones(space.shape, np.float32), np.ones(space.shape, np.float32)]
    return [corners[i % 2] if i < 2 else space.sample() for i in range(count)]


def rollout(env: Env, seed: int, steps: int) -> list[dict[str, np.ndarray]]:
    stream = [env.reset(seed=seed)]
    for action in actions(env, steps):
        stream.append(env.step(action))
        if stream[-1]["is_last"]:
            break
    return stream


@pytest.mark.parametrize(("name", "options", "payload"), CASES)
def test_suite_meets_contract(name: str, options: dict[str, Any], payload: dict) -> None:
    env = make_env(name, **options)
    try:
        assert set(env.obs_space) == FLAGS | set(payload)
        assert {key: env.obs_space[key].shape for key in payload} == payload
        stream = rollout(env, seed=0, steps=6)
        assert len(stream) == 7
        for index, obs in enumerate(stream):
            check_obs(env, obs, first=index == 0)
        frame = env.render()
        assert frame is not None and frame.dtype == np.uint8 and frame.shape[2] == 3
    finally:
        env.close()


def test_vector_only_env_renders_frames_at_size() -> None:
    env = make_env("gym/CartPole-v1", size=48)
    env.reset(seed=0)
    frame = env.render()
    assert frame is not None and frame.shape == (48, 48, 3) and frame.std() > 0


def test_termination_is_terminal() -> None:
    env = make_env("gym/CartPole-v1")
    env.reset(seed=0)
    for _ in range(100):  # pushing one way topples the pole in about ten steps
        obs = env.step(0)
        if obs["is_last"]:
            break
    assert obs["is_last"] and obs["is_terminal"]


@pytest.mark.parametrize("name", ["gym/Pendulum-v1", "dmc/cartpole-swingup"])
def test_time_limit_truncates_after_exactly_that_many_steps(name: str) -> None:
    env = make_env(name, time_limit=5)
    env.reset(seed=0)
    flags = [env.step(np.zeros(1, np.float32)) for _ in range(5)]
    assert [bool(obs["is_last"]) for obs in flags] == [False] * 4 + [True]
    assert not any(obs["is_terminal"] for obs in flags)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(1, np.float32))
    assert env.reset()["is_first"]


def test_own_time_limit_is_a_truncation(toy_envs: str) -> None:
    env = make_env(f"gym/{toy_envs}:DwCount-v0")  # registered with max_episode_steps=50
    stream = rollout(env, seed=0, steps=60)
    assert len(stream) == 51 and stream[-1]["is_last"] and not stream[-1]["is_terminal"]


def test_action_repeat_sums_rewards_and_stops_at_the_end(toy_envs: str) -> None:
    env = make_env(f"gym/{toy_envs}:DwCount-v0", repeat=3, length=7)
    env.reset(seed=0)
    steps = [env.step(0) for _ in range(3)]
    assert [float(obs["vector"][0]) for obs in steps] == [3, 6, 7]
    assert [float(obs["reward"]) for obs in steps] == [3, 3, 1]
    assert steps[-1]["is_terminal"]


def test_time_limit_counts_agent_steps_after_repeat(toy_envs: str) -> None:
    env = make_env(f"gym/{toy_envs}:DwCount-v0", repeat=4, time_limit=3)
    stream = rollout(env, seed=0, steps=10)
    assert len(stream) == 4 and float(stream[-1]["vector"][0]) == 12


def test_dmc_default_repeat_and_limit() -> None:
    env = make_env("dmc/cartpole-swingup")  # 1000 simulator steps at repeat 2
    stream = rollout(env, seed=0, steps=600)
    assert len(stream) == 501 and stream[-1]["is_last"] and not stream[-1]["is_terminal"]


@pytest.mark.parametrize(
    ("name", "options", "steps"),
    [
        ("gym/CartPole-v1", {}, 20),
        ("gym/CartPole-v1", {"obs": "image", "size": 16}, 5),
        ("dmc/cartpole-swingup", {"obs": "both"}, 5),
        ("atari/pong", {}, 30),  # Pong shows no ball for its first ~60 frames
    ],
)
def test_seeding(name: str, options: dict[str, Any], steps: int) -> None:
    def stream(seed: int) -> list[np.ndarray]:
        env = make_env(name, **options)
        env.act_space.seed(0)  # the same actions whatever the environment's seed
        observations = rollout(env, seed, steps)
        env.close()
        return [
            np.concatenate([v.reshape(-1).astype(np.float64) for v in obs.values()]) for obs in observations
        ]

    first, again, other = stream(1), stream(1), stream(2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=False))


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("dcm/walker-walk", "dmc"),
        ("carracin", "carracing"),
        ("gym/CartPol-v1", "CartPole-v1"),
        ("dmc/walker-wlak", "walker-walk"),
        ("dmc/ball_in_cup-cach", "ball_in_cup-catch"),
        ("atari/pongg", "pong"),
    ],
)
def test_unknown_id_suggests_the_closest(name: str, suggestion: str) -> None:
    with pytest.raises(EnvError, match=f"did you mean '{suggestion}'") as info:
        make_env(name)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("gym/CartPole-v1", {"obs": "pixels"}, "obs must be one of"),
        ("gym/CartPole-v1", {"camera": 1}, "does not accept the option 'camera'"),
        ("dmc/walker-walk", {"flat": True}, r"does not accept extra keyword arguments \(flat\)"),
        ("gym/CartPole-v1", {"size": 0}, "size must be a positive integer"),
        ("dmc/walker-walk", {"camera": 7}, "cameras -1..1"),
        ("atari/pong", {"obs": "vector"}, "image observations only"),
        ("carracing/fast", {}, "has no tasks"),
        ("gym/no_such_module_here:Foo-v0", {}, "cannot import module"),
    ],
)
def test_bad_options_raise_env_error(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(EnvError, match=message):
        make_env(name, **options)


@pytest.mark.parametrize(
    ("hidden", "name", "extra"),
    [
        (("dm_control", "dm_control.suite"), "dmc/walker-walk", "dmc"),
        (("ale_py",), "atari/pong", "atari"),
        (("Box2D",), "carracing", "box2d"),
        (("vizdoom",), "vizdoom/take-cover", "vizdoom"),
        (("highway_env",), "highway/highway-fast", "highway"),
        (("PyFlyt", "PyFlyt.gym_envs"), "pyflyt/quadx-hover", "pyflyt"),
        (("gymnasium_robotics",), "fetch/reach", "fetch"),
        (("panda_gym",), "panda/reach", "panda"),
    ],
)
def test_missing_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, hidden: tuple[str, ...], name: str, extra: str
) -> None:
    for module in hidden:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingDependencyError, match=rf"dreamworld\[{extra}\]") as info:
        make_env(name)
    assert hidden[0] in str(info.value)
    suite = name.split("/")[0]
    assert [row.installed for row in suite_table() if row.name == suite] == [False]


def test_suite_table_lists_every_suite_installed_here() -> None:
    rows = {row.name: row for row in suite_table()}
    assert set(rows) == {"gym", "dmc", "atari", "carracing", "vizdoom", "highway", "pyflyt", "fetch", "panda"}
    assert all(row.installed and row.examples and row.description for row in rows.values())
    assert rows["dmc"].install == "pip install 'dreamworld[dmc]'"


def test_users_own_env_and_kwargs(toy_envs: str) -> None:
    env = make_env(f"gym/{toy_envs}:DwCount-v0", length=2, size=10)
    stream = rollout(env, seed=0, steps=5)
    assert [float(obs["vector"][0]) for obs in stream] == [0, 1, 2]
    assert stream[-1]["is_terminal"]
    frame = env.render()
    assert frame is not None and frame.shape == (10, 10, 3) and (frame == 2).all()
    with pytest.raises(EnvError, match="rejected kwargs"):
        make_env(f"gym/{toy_envs}:DwCount-v0", speed=3)


def test_dict_observation_is_split_into_image_and_vector(toy_envs: str) -> None:
    env = make_env(f"gym/{toy_envs}:DwDict-v0", size=4)
    obs = env.reset(seed=0)
    check_obs(env, obs, first=True)
    assert obs["image"].shape == (4, 4, 3) and (obs["image"] == 200).all()
    # Sorted keys: mode (one-hot of 2), then position.
    np.testing.assert_array_equal(obs["vector"], [0, 0, 1, 0.5, -0.5])
    assert float(env.step(np.array([0.5], np.float32))["reward"]) == 1.0  # rescaled to [-2, 2]
    assert set(make_env(f"gym/{toy_envs}:DwDict-v0", obs="vector").obs_space) == FLAGS | {"vector"}


def test_action_converter() -> None:
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)
    act_space, convert = action_converter(gym.spaces.Box(low, high))
    assert act_space == gym.spaces.Box(-1, 1, (2,), np.float32)
    np.testing.assert_allclose(convert(np.array([-1.0, 1.0])), [-2.0, 1.0])
    np.testing.assert_allclose(convert(np.array([0.0, 0.0])), [0.0, 0.5])
    np.testing.assert_allclose(convert(np.array([5.0, -5.0])), [2.0, 0.0])  # clipped
    with pytest.raises(ValueError, match="shape"):
        convert(np.zeros(3))
    act_space, convert = action_converter(gym.spaces.Discrete(4, start=1))
    assert act_space == gym.spaces.Discrete(4)
    assert convert(2) == 3 and convert(np.eye(4)[2]) == 3
    with pytest.raises(EnvError, match="not supported"):
        action_converter(gym.spaces.Box(-np.inf, np.inf, (2,)))


def test_resize_image_averages_areas_and_converts_to_gray() -> None:
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[:2, :2] = 200
    small = resize_image(frame, 2)
    np.testing.assert_array_equal(small[..., 0], [[200, 0], [0, 0]])
    gray = resize_image(np.full((2, 2, 3), [255, 0, 0], np.uint8), 2, gray=True)
    assert gray.shape == (2, 2, 1) and gray[0, 0, 0] == 76  # 0.299 * 255
    assert resize_image(frame, 4) is not frame


def test_importing_envs_imports_no_torch_and_no_simulator() -> None:
    code = (
        "import sys, dreamworld.envs; "
        "print(sorted({'torch', 'dm_control', 'mujoco', 'ale_py', 'Box2D'} & set(sys.modules)))"
    )
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environ
    )
    assert result.stdout.strip() == "[]"


def test_pygame_rendering_gets_a_runtime_directory(monkeypatch):
    """SDL prints an error on every render without XDG_RUNTIME_DIR; make_env provides one."""
    import os

    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    env = make_env("gym/CartPole-v1", obs="image", size=16)
    env.reset(seed=0)
    assert os.path.isdir(os.environ["XDG_RUNTIME_DIR"])
    env.close()


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("gym/CartPole-v1", {}),
        ("gym/Pendulum-v1", {"time_limit": 30}),
        ("gym/InvertedPendulum-v5", {}),
        ("dmc/cartpole-swingup", {"time_limit": 40}),
        ("dmc/reacher-easy", {"obs": "both", "size": 16, "time_limit": 40}),
    ],
)
def test_snapshot_continues_the_episode_exactly(name: str, options: dict[str, Any]) -> None:
    """A fresh environment given a snapshot steps on as the original, across the next reset."""
    from dreamworld.envs import make_vector_env

    rng = np.random.default_rng(0)
    with make_vector_env(name, 2, parallel="serial", **options) as original:
        act_space = original.act_space
        sample = (
            (lambda: rng.integers(0, act_space.n, 2))
            if isinstance(act_space, gym.spaces.Discrete)
            else (lambda: rng.uniform(-1, 1, (2, *act_space.shape)).astype(np.float32))
        )
        original.reset(seed=3)
        for _ in range(25):
            original.step(sample())
        states = original.get_states()
        assert states is not None
        with make_vector_env(name, 2, parallel="process", **options) as copy:
            copy.set_states(states)
            for _ in range(60):  # past the end of the episode: the reset draws the same start
                action = sample()
                expected, got = original.step(action), copy.step(action)
                for key in expected:
                    np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_box2d_has_no_snapshot() -> None:
    from dreamworld.envs import make_vector_env

    with make_vector_env("carracing", 1, parallel="serial") as env:
        env.reset(seed=0)
        assert env.get_states() is None


def test_vizdoom_take_cover_ends_at_death_or_the_2100_step_cap() -> None:
    env = make_env("vizdoom/take-cover")
    assert env.act_space == gym.spaces.Discrete(3)  # stay, left, right
    obs, steps = env.reset(seed=1), 0
    while not obs["is_last"]:
        obs = env.step(steps % 3)
        steps += 1
        assert obs["reward"] == 1.0
    assert obs["is_terminal"] and steps < 2100  # standing around gets the player killed
    env.close()
    capped = make_env("vizdoom/take-cover", time_limit=5)
    obs = capped.reset(seed=1)
    for _ in range(5):
        obs = capped.step(0)
    assert obs["is_last"] and not obs["is_terminal"]
    capped.close()


@pytest.mark.parametrize("kwargs", [{}, {"domain_randomize": True}])
def test_carracing_fast_road_renders_gymnasiums_frames(kwargs: dict[str, Any]) -> None:
    """The vectorised road renderer draws exactly Gymnasium's pixels, visited tiles included."""
    import dataclasses

    pytest.importorskip("Box2D")
    from dreamworld.envs.carracing import ENTRY_POINT, GYM_ID

    reference = gym.make(GYM_ID, **kwargs)
    fast = gym.make(dataclasses.replace(gym.spec(GYM_ID), entry_point=ENTRY_POINT), **kwargs)
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        frames = [reference.reset(seed=seed)[0], fast.reset(seed=seed)[0]]
        np.testing.assert_array_equal(*frames)
        for _ in range(120):
            # Mostly gas: the car crosses tiles, which change colour once visited.
            action = rng.uniform([-1, 0.3, 0], [1, 1, 0.2]).astype(np.float32)
            np.testing.assert_array_equal(reference.step(action)[0], fast.step(action)[0])
    assert fast.unwrapped.tile_visited_count > 0
    reference.close()
    fast.close()


def test_patience_truncates_after_that_many_steps_without_reward(toy_envs: str) -> None:
    """Pendulum never pays a positive reward: ``patience`` steps end its episode as a truncation, and
    snapshots carry the count; DwCount pays every step and runs to its own end."""
    zero = np.zeros(1, np.float32)
    env = make_env("gym/Pendulum-v1", patience=4)
    env.reset(seed=0)
    flags = [env.step(zero) for _ in range(4)]
    assert [bool(obs["is_last"]) for obs in flags] == [False] * 3 + [True]
    assert not any(obs["is_terminal"] for obs in flags)
    env.reset(seed=1)
    env.step(zero), env.step(zero)
    copy = make_env("gym/Pendulum-v1", patience=4)
    copy.reset(seed=5)
    copy.set_state(env.get_state())  # type: ignore[attr-defined]
    assert [bool(copy.step(zero)["is_last"]) for _ in range(2)] == [False, True]
    assert len(rollout(make_env(f"gym/{toy_envs}:DwCount-v0", patience=2), seed=0, steps=60)) == 51
    with pytest.raises(EnvError, match="patience must be a positive integer"):
        make_env("gym/Pendulum-v1", patience=0)


def test_carracing_throttle_is_one_axis_of_gas_and_brake() -> None:
    """Throttle actions drive exactly as the three-action version with the same gas and brake."""
    pytest.importorskip("Box2D")
    from dreamworld.envs.carracing import Throttle

    assert Throttle.native(np.array([-0.5, 1.0])).tolist() == [-0.5, 1.0, 0.0]
    assert Throttle.native(np.array([0.25, -0.5])).tolist() == [0.25, 0.0, 0.4000000059604645]
    assert Throttle.native(np.zeros(2)).tolist() == [0.0, 0.0, 0.0]  # the middle action coasts
    throttle, pedals = make_env("carracing", throttle=True), make_env("carracing")
    assert throttle.act_space.shape == (2,) and pedals.act_space.shape == (3,)
    np.testing.assert_array_equal(throttle.reset(seed=3)["image"], pedals.reset(seed=3)["image"])
    rng = np.random.default_rng(0)
    for step in range(150):  # held for 10 steps each: the wheels turn and the pedals move gradually
        if step % 10 == 0:
            action = rng.uniform([-0.6, -0.5], [0.6, 1.0]).astype(np.float32)
        native = Throttle.native(action)
        frame = throttle.step(action)["image"]
        # Gas and brake in [0, 1] are 2 x - 1 in the three-action version's [-1, 1].
        np.testing.assert_array_equal(frame, pedals.step(native * [1, 2, 2] - [0, 1, 1])["image"])
    with pytest.raises(EnvError, match="discrete or throttle"):
        make_env("carracing", throttle=True, discrete=True)
    with pytest.raises(EnvError, match="does not accept the option 'throttle'"):
        make_env("gym/Pendulum-v1", throttle=True)


def test_carracing_draws_only_the_frames_the_agent_sees() -> None:
    """Under an action repeat only the last frame is drawn: observations and summed rewards are
    those of Gymnasium's CarRacing stepped three times and resized."""
    pytest.importorskip("Box2D")
    from dreamworld.envs.carracing import GYM_ID

    reference = gym.make(GYM_ID)
    env = make_env("carracing", repeat=3)
    frame = reference.reset(seed=4)[0]
    np.testing.assert_array_equal(env.reset(seed=4)["image"], resize_image(frame, 64))
    rng = np.random.default_rng(1)
    for _ in range(40):
        # Values that [-1, 1] -> [0, 1] maps exactly (the same float32 gas and brake).
        action = np.array([rng.choice([-0.5, 0, 0.5]), rng.choice([0.5, 1.0]), 0.0], np.float32)
        rewards = []
        for _ in range(3):
            frame, reward, *_ = reference.step(action)
            rewards.append(reward)
        obs = env.step(action * [1, 2, 2] - [0, 1, 1])
        np.testing.assert_array_equal(obs["image"], resize_image(frame, 64))
        assert float(obs["reward"]) == pytest.approx(sum(rewards), abs=1e-4)
    reference.close()
