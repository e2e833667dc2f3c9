"""The driver: steps parallel environments with a policy and hands out steps and finished episodes.

Each step handed to the callbacks is the observation batch plus ``action``, the action the policy chose
at that observation. Episodes are assembled per environment and handed out, time-major, when their
``is_last`` observation arrives; the parallel environments reset themselves on the following step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dreamworld.config import EnvConfig
from dreamworld.envs import Env, make_env, make_vector_env
from dreamworld.envs.parallel import VectorEnv
from dreamworld.run.policies import Policy

StepCallback = Callable[[dict[str, np.ndarray]], None]
EpisodeCallback = Callable[[dict[str, np.ndarray], int], None]


class Driver:
    """Runs a policy in a :class:`~dreamworld.envs.parallel.VectorEnv`.

    Args:
        env: The parallel environments.
        seed: Seed of the first reset (environment ``i`` gets ``seed + i``).

    Example:
        >>> from dreamworld.envs import Env, make_env, make_vector_env
        >>> from dreamworld.run.policies import RandomPolicy
        >>> env = make_vector_env("gym/CartPole-v1", 2, parallel="serial")
        >>> driver = Driver(env, seed=0)
        >>> episodes = []
        >>> driver.on_episode(lambda episode, index: episodes.append(episode))
        >>> driver.run(RandomPolicy(env.act_space, 2), episodes=3)
        >>> len(episodes) >= 3
        True
    """

    def __init__(self, env: VectorEnv, seed: int | None = None) -> None:
        self.env = env
        self.seed = seed
        self.obs: dict[str, np.ndarray] | None = None
        self.state: Any = None
        self.steps = 0
        self.episodes = 0
        self._step_callbacks: list[StepCallback] = []
        self._episode_callbacks: list[EpisodeCallback] = []
        self._partial: list[list[dict[str, np.ndarray]]] = [[] for _ in range(env.num_envs)]

    def on_step(self, callback: StepCallback) -> None:
        """Registers ``callback(step)``, called with each batched step (observations + action)."""
        self._step_callbacks.append(callback)

    def on_episode(self, callback: EpisodeCallback) -> None:
        """Registers ``callback(episode, env_index)``, called with each finished episode."""
        self._episode_callbacks.append(callback)

    def run(self, policy: Policy, steps: int = 0, episodes: int = 0) -> None:
        """Steps until at least ``steps`` batched steps or ``episodes`` finished episodes are done.

        Args:
            policy: Maps observations and state to actions and the next state.
            steps: Environment steps to take, counted over all environments (0: no step limit).
            episodes: Episodes to finish, counted over all environments (0: no episode limit).
        """
        assert steps or episodes, "give a number of steps or of episodes"
        target_steps, target_episodes = self.steps + steps, self.episodes + episodes
        while not ((steps and self.steps >= target_steps) or (episodes and self.episodes >= target_episodes)):
            self._step(policy)

    def state_dict(self) -> dict[str, Any]:
        """Where the driver stands: the pending observations, episodes in progress and counters.

        Together with the environments' snapshots (:meth:`VectorEnv.get_states`) this lets a new
        driver go on exactly where this one is (:meth:`load_state_dict`). Numpy data throughout.
        """
        partial = [
            {key: np.stack([row[key] for row in rows]) for key in rows[0]} if rows else None
            for rows in self._partial
        ]
        return {"obs": self.obs, "partial": partial, "steps": self.steps, "episodes": self.episodes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues from :meth:`state_dict` (the environments must be restored to match)."""
        self.obs = state["obs"]
        self.steps, self.episodes = int(state["steps"]), int(state["episodes"])
        self._partial = [
            []
            if rows is None
            else [{key: value[t] for key, value in rows.items()} for t in range(len(rows["is_first"]))]
            for rows in state["partial"]
        ]

    def _step(self, policy: Policy) -> None:
        if self.obs is None:
            self.obs = self.env.reset(self.seed)
        action, self.state = policy(self.obs, self.state)
        step = {**self.obs, "action": action}
        for callback in self._step_callbacks:
            callback(step)
        for index in range(self.env.num_envs):
            self._partial[index].append({key: value[index] for key, value in step.items()})
            if step["is_last"][index]:
                self._finish(index)
        self.steps += self.env.num_envs
        self.obs = self.env.step(action)

    def _finish(self, index: int) -> None:
        rows = self._partial[index]
        self._partial[index] = []
        episode = {key: np.stack([row[key] for row in rows]) for key in rows[0]}
        self.episodes += 1
        for callback in self._episode_callbacks:
            callback(episode, index)


def vector_env(
    config: EnvConfig, num_envs: int | None = None, parallel: str | None = None, training: bool = False
) -> VectorEnv:
    """The parallel environments a config describes (``num_envs`` and ``parallel`` may override it).
    Only ``training`` environments end episodes early (``env.patience``)."""
    return make_vector_env(
        config.name,
        num_envs or config.envs,
        parallel=parallel or config.parallel,
        nonfinite=config.nonfinite,
        **_env_options(config),
        patience=config.patience if training else None,
    )


def single_env(config: EnvConfig) -> Env:
    """One environment as the config describes it, in this process."""
    return make_env(config.name, **_env_options(config))


def _env_options(config: EnvConfig) -> dict[str, Any]:
    return {
        "obs": config.obs,
        "size": config.size,
        "repeat": config.repeat,
        "time_limit": config.time_limit,
        "gray": config.gray,
        "noops": config.noops,
        "sticky": config.sticky,
        "camera": config.camera,
        "discrete": config.discrete,
        "throttle": config.throttle,
        **config.kwargs,
    }
