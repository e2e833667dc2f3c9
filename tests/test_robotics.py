"""The robotics suites (highway, pyflyt, fetch, panda) and success reporting as ``log_success``.

The contract rows of these suites are in ``CASES`` of test_envs.py; here is what is particular to
them. highway-env steps at tens of steps per second: its tests take few steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from dreamworld.envs import make_env, make_vector_env, suite_table
from dreamworld.errors import EnvError, MissingDependencyError
from test_envs import check_obs, rollout


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("highway/highway-fast", {}),
        ("highway/parking", {"size": 32}),
        ("pyflyt/quadx-hover", {}),
        ("fetch/push", {}),
        ("panda/reach", {"size": 48}),
    ],
)
def test_rendered_frames_show_the_scene(name: str, options: dict[str, Any]) -> None:
    env = make_env(name, obs="image", **options)
    try:
        size = options.get("size", 64)
        assert env.obs_space["image"].shape == (size, size, 3)
        stream = rollout(env, seed=0, steps=3)
        for index, obs in enumerate(stream):
            check_obs(env, obs, first=index == 0)
            assert obs["image"].std() > 8, "a blank frame"  # scenes here measure 15-95
        frame = env.render()
        assert frame is not None and frame.std() > 8
    finally:
        env.close()


def test_every_highway_scene_steps() -> None:
    from dreamworld.envs.highway import TASKS

    for task in TASKS:
        env = make_env(f"highway/{task}")
        stream = rollout(env, seed=0, steps=1)
        for index, obs in enumerate(stream):
            check_obs(env, obs, first=index == 0)
        assert "log_crashed" in env.obs_space
        assert ("log_success" in env.obs_space) == TASKS[task].success
        env.close()


def test_highway_crash_is_a_logged_termination() -> None:
    env = make_env("highway/highway-fast")
    stream = rollout(env, seed=0, steps=6)  # these actions run into a car on the third step
    assert len(stream) == 4 and stream[-1]["is_terminal"]
    assert [float(obs["log_crashed"]) for obs in stream] == [0, 0, 0, 1]
    env.close()


def test_highway_action_spaces() -> None:
    assert make_env("highway/merge").act_space == gym.spaces.Discrete(5)  # meta-actions
    assert make_env("highway/parking").act_space == gym.spaces.Box(-1, 1, (2,), np.float32)
    assert make_env("highway/racetrack").act_space == gym.spaces.Box(-1, 1, (1,), np.float32)


def test_highway_renders_only_the_observed_frame_of_a_step() -> None:
    import highway_env  # noqa: F401  (registers the scenes)

    from dreamworld.envs.highway import OneFramePerStep

    env = OneFramePerStep(gym.make("highway-fast-v0", render_mode="rgb_array"))
    env.reset(seed=0)
    assert env.render().std() > 0
    assert not env.unwrapped.enable_auto_render  # else the next step draws its 5 simulation frames
    env.close()


def test_highway_config_is_merged_over_the_rendering_settings() -> None:
    env = make_env("highway/merge", config={"vehicles_count": 1, "scaling": 3.0})
    config = env._sim._env.unwrapped.config  # type: ignore[attr-defined]
    assert config["scaling"] == 3.0 and config["screen_width"] == 128
    env.close()


def test_pyflyt_waypoints_become_fixed_slots() -> None:
    from dreamworld.envs.pyflyt import TargetSlots

    env = make_env("pyflyt/quadx-waypoints")
    obs = env.reset(seed=0)
    slots = obs["vector"][21:].reshape(4, 4)  # after the 21 attitude values: 4 x (delta, 1)
    np.testing.assert_array_equal(slots[:, 3], [1, 1, 1, 1])
    assert np.abs(slots[:, :3]).sum() > 0
    assert env.render() is None  # made without a render mode: no camera work for vectors
    env.close()

    wrapper = TargetSlots(gym.make("PyFlyt/QuadX-Waypoints-v4", disable_env_checker=True), slots=3)
    deltas = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    table = wrapper.observation({"attitude": np.zeros(21), "target_deltas": deltas})["target_deltas"]
    np.testing.assert_array_equal(table, [1, 2, 3, 1, 4, 5, 6, 1, 0, 0, 0, 0])
    assert wrapper.observation_space["target_deltas"].shape == (12,)
    wrapper.close()


def test_pyflyt_reports_targets_and_success() -> None:
    env = make_env("pyflyt/quadx-waypoints", time_limit=3)
    obs = env.reset(seed=0)
    assert float(obs["log_targets_reached"]) == 0 and float(obs["log_success"]) == 0
    assert "log_success" not in make_env("pyflyt/quadx-hover").obs_space  # hovering has no end
    env.close()


def test_pyflyt_resets_print_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    env = make_env("pyflyt/quadx-hover")
    capfd.readouterr()
    env.reset(seed=0)
    env.reset()
    print("after")
    assert capfd.readouterr().out == "after\n"  # pybullet prints "argv[0]=" at every connection
    env.close()


@pytest.mark.parametrize("name", ["fetch/reach", "panda/reach"])
def test_reaching_the_goal_is_logged_as_success(name: str) -> None:
    """Moving the gripper straight to the goal succeeds; ``vector`` starts with the two goals."""
    env = make_env(name)
    obs = env.reset(seed=0)
    assert float(obs["log_success"]) == 0
    successes = []
    for _ in range(40):
        achieved, desired = obs["vector"][:3], obs["vector"][3:6]
        action = np.zeros(env.act_space.shape, np.float32)
        action[:3] = np.clip(20 * (desired - achieved), -1, 1)
        obs = env.step(action)
        successes.append(float(obs["log_success"]))
        assert obs["log_success"].dtype == np.float32 and obs["log_success"].shape == ()
        if obs["is_last"]:
            break
    assert set(successes) == {0.0, 1.0} and successes[-1] == 1.0
    assert float(obs["reward"]) == 0.0  # sparse: 0 once within reach, -1 before
    env.close()


def test_dense_variants_reward_the_distance() -> None:
    for name in ("fetch/reach-dense", "panda/reach-dense"):
        env = make_env(name)
        env.reset(seed=0)
        reward = float(env.step(np.zeros(env.act_space.shape, np.float32))["reward"])
        assert -1 < reward < 0, name
        env.close()


@pytest.fixture
def goal_env() -> Iterator[str]:
    """A user's goal-conditioned environment that succeeds from its third step on."""

    class GoalEnv(gym.Env):
        def __init__(self) -> None:
            box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
            self.observation_space = gym.spaces.Dict(
                {"observation": box, "achieved_goal": box, "desired_goal": box}
            )
            self.action_space = gym.spaces.Discrete(2)
            self.steps = 0

        def reset(self, seed: int | None = None, options: Any = None) -> tuple[Any, dict]:
            super().reset(seed=seed)
            self.steps = 0
            return self.observation_space.sample(), {}

        def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
            self.steps += 1
            return self.observation_space.sample(), 0.0, False, False, {"is_success": self.steps >= 3}

    gym.register("DwGoal-v0", entry_point=GoalEnv, max_episode_steps=10)
    yield "DwGoal-v0"
    del gym.registry["DwGoal-v0"]


def test_users_goal_conditioned_env_logs_success(goal_env: str) -> None:
    env = make_env(f"gym/{goal_env}")
    assert env.obs_space["vector"].shape == (6,)
    stream = rollout(env, seed=0, steps=4)
    for index, obs in enumerate(stream):
        check_obs(env, obs, first=index == 0)
    assert [float(obs["log_success"]) for obs in stream] == [0, 0, 0, 1, 1]
    assert "log_success" not in make_env("gym/CartPole-v1").obs_space


def test_fetch_snapshot_restores_the_goal() -> None:
    """A fresh environment given a snapshot goes on in the same episode, goal included."""
    rng = np.random.default_rng(0)
    with make_vector_env("fetch/push", 1, parallel="serial") as original:
        original.reset(seed=3)
        for _ in range(10):
            original.step(rng.uniform(-1, 1, (1, 4)).astype(np.float32))
        states = original.get_states()
        assert states is not None
        with make_vector_env("fetch/push", 1, parallel="serial") as copy:
            copy.set_states(states)
            for _ in range(45):  # past the 50-step end: the next reset draws the same start
                action = rng.uniform(-1, 1, (1, 4)).astype(np.float32)
                expected, got = original.step(action), copy.step(action)
                for key in expected:
                    np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("highway/highway-fats", "highway-fast"),
        ("highway/parkin", "parking"),
        ("pyflyt/quadx-hoover", "quadx-hover"),
        ("fetch/pick-place", "pick-and-place"),
        ("fetch/reach-dens", "reach-dense"),
        ("panda/psh", "push"),
    ],
)
def test_unknown_task_suggests_the_closest(name: str, suggestion: str) -> None:
    with pytest.raises(EnvError, match=f"did you mean '{suggestion}'"):
        make_env(name)


def test_missing_pyflyt_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    for module in ("PyFlyt", "PyFlyt.gym_envs"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=r"dreamworld\[pyflyt\]") as info:
        make_env("pyflyt/quadx-hover")
    assert "pip install --no-deps PyFlyt==" in str(info.value)
    row = next(row for row in suite_table() if row.name == "pyflyt")
    assert "--no-deps PyFlyt==" in row.install and not row.installed


def test_robotics_suites_reject_options_they_ignore() -> None:
    with pytest.raises(EnvError, match="does not accept the option 'camera'"):
        make_env("fetch/reach", camera=1)
    with pytest.raises(EnvError, match="does not accept the option 'discrete'"):
        make_env("highway/parking", discrete=True)
