"""Fixed policies for data collection: uniform random and the smoothly varying "brownian" policy.

A policy maps a batch of observations (a dict of arrays with leading axis ``N``) and its recurrent state
to a batch of actions. Every environment index has its own generator, seeded from ``(seed, index)``, so
the actions of environment ``i`` do not depend on how many environments run beside it.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np


class Policy(Protocol):
    """Maps batched observations and a state to batched actions and the next state."""

    def __call__(self, obs: dict[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]: ...


class RandomPolicy:
    """Uniform actions: an index for ``Discrete`` spaces, a vector in ``[-1, 1]`` for ``Box`` spaces.

    Args:
        act_space: The environments' action space.
        num_envs: Number of environments ``N`` in a batch.
        seed: Seed of the per-environment generators.

    Example:
        >>> policy = RandomPolicy(gym.spaces.Discrete(3), num_envs=2, seed=0)
        >>> actions, _ = policy({"is_first": np.ones(2, bool)}, None)
        >>> actions.shape
        (2,)
    """

    def __init__(self, act_space: gym.spaces.Space, num_envs: int, seed: int = 0) -> None:
        self.act_space = act_space
        self.rngs = [np.random.default_rng([seed, index]) for index in range(num_envs)]

    def __call__(self, obs: dict[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        return np.stack([self._draw(rng) for rng in self.rngs]), state

    def _draw(self, rng: np.random.Generator) -> np.ndarray:
        space = self.act_space
        if isinstance(space, gym.spaces.Discrete):
            return np.asarray(rng.integers(space.n), np.int64)
        assert isinstance(space, gym.spaces.Box), f"unsupported action space {space}"
        return rng.uniform(-1.0, 1.0, space.shape).astype(np.float32)


class BrownianPolicy(RandomPolicy):
    """Actions that drift as a clipped random walk, as in the World Models data generation scripts.

    Continuous actions start uniform at each episode and then move by ``sqrt(dt) * N(0, 1)`` per step,
    clipped to ``[-1, 1]``; this explores driving tasks far better than independent noise, which only
    jitters in place. Discrete actions keep the previous action and draw a new one with probability
    ``switch_prob`` per step.

    Args:
        act_space: The environments' action space.
        num_envs: Number of environments ``N`` in a batch.
        seed: Seed of the per-environment generators.
        dt: Time step of the random walk; smaller values change actions more slowly.
        switch_prob: Discrete actions: probability of drawing a new action at each step.
    """

    def __init__(
        self,
        act_space: gym.spaces.Space,
        num_envs: int,
        seed: int = 0,
        dt: float = 0.02,
        switch_prob: float = 0.1,
    ) -> None:
        super().__init__(act_space, num_envs, seed)
        self.scale = float(np.sqrt(dt))
        self.switch_prob = switch_prob

    def __call__(self, obs: dict[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        previous = state if state is not None else [None] * len(self.rngs)
        actions = []
        for rng, first, last in zip(self.rngs, obs["is_first"], previous, strict=True):
            actions.append(self._draw(rng) if first or last is None else self._walk(rng, last))
        return np.stack(actions), actions

    def _walk(self, rng: np.random.Generator, last: np.ndarray) -> np.ndarray:
        if isinstance(self.act_space, gym.spaces.Discrete):
            return self._draw(rng) if rng.random() < self.switch_prob else last
        step = self.scale * rng.standard_normal(last.shape)
        return np.clip(last + step, -1.0, 1.0).astype(np.float32)


def make_policy(
    name: str,
    act_space: gym.spaces.Space,
    num_envs: int,
    seed: int = 0,
    dt: float = 0.02,
    switch_prob: float = 0.1,
) -> RandomPolicy:
    """Builds a collection policy by name: ``random`` or ``brownian``."""
    if name == "random":
        return RandomPolicy(act_space, num_envs, seed)
    if name == "brownian":
        return BrownianPolicy(act_space, num_envs, seed, dt, switch_prob)
    raise ValueError(f"unknown policy '{name}': choose random or brownian")
