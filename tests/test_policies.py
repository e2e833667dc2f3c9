"""Collection policies: bounds, the brownian walk's step size, resets, per-environment streams."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dreamworld.run.policies import BrownianPolicy, RandomPolicy, make_policy

BOX = gym.spaces.Box(-1, 1, (3,), np.float32)


def roll(policy, steps: int, num_envs: int, first_every: int = 0) -> np.ndarray:
    state, actions = None, []
    for t in range(steps):
        first = t == 0 or (first_every and t % first_every == 0)
        action, state = policy({"is_first": np.full(num_envs, first)}, state)
        actions.append(action)
    return np.stack(actions)


def test_random_actions_fill_the_space():
    actions = roll(RandomPolicy(BOX, 2, seed=0), 2000, 2)
    assert actions.shape == (2000, 2, 3) and actions.dtype == np.float32
    assert actions.min() >= -1 and actions.max() <= 1
    assert abs(actions.mean()) < 0.05 and actions.std() == pytest.approx(1 / np.sqrt(3), abs=0.02)
    discrete = roll(RandomPolicy(gym.spaces.Discrete(4), 1, seed=0), 4000, 1)
    assert np.bincount(discrete.ravel(), minlength=4).min() > 900


def test_brownian_steps_have_the_walk_scale_and_stay_in_bounds():
    dt = 0.01
    actions = roll(BrownianPolicy(BOX, 1, seed=0, dt=dt), 3000, 1)[:, 0]
    assert actions.min() >= -1 and actions.max() <= 1
    steps = np.diff(actions, axis=0)
    interior = np.all(np.abs(actions[:-1]) < 0.9, axis=1) & np.all(np.abs(actions[1:]) < 0.9, axis=1)
    assert steps[interior].std() == pytest.approx(np.sqrt(dt), rel=0.1)


def test_brownian_restarts_at_each_episode():
    actions = roll(BrownianPolicy(BOX, 1, seed=0, dt=1e-6), 40, 1, first_every=10)[:, 0]
    jumps = np.abs(np.diff(actions, axis=0)).max(axis=1)
    assert np.all(jumps[[9, 19, 29]] > 1e-2)  # a fresh uniform draw at each is_first
    assert np.all(np.delete(jumps, [9, 19, 29]) < 1e-2)


def test_brownian_discrete_switches_at_the_given_rate():
    actions = roll(BrownianPolicy(gym.spaces.Discrete(10), 1, seed=0, switch_prob=0.2), 5000, 1)
    changed = np.mean(actions[1:, 0] != actions[:-1, 0])
    assert changed == pytest.approx(0.2 * 0.9, abs=0.03)  # a redraw keeps the action 1 time in 10


@pytest.mark.parametrize("name", ["random", "brownian"])
def test_each_environment_stream_is_independent_of_the_batch_size(name):
    one = roll(make_policy(name, BOX, 1, seed=5), 50, 1)
    three = roll(make_policy(name, BOX, 3, seed=5), 50, 3)
    np.testing.assert_array_equal(one[:, 0], three[:, 0])
    assert not np.allclose(three[:, 0], three[:, 1])


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("greedy", BOX, 1)
