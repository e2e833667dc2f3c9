"""Finished episodes as every algorithm reports them: return, length and the environment's own
statistics (``log_<name>`` observations), and the return of a random policy as a baseline."""

from __future__ import annotations

import numpy as np

from dreamworld.config import Config
from dreamworld.run.driver import Driver, vector_env
from dreamworld.run.policies import RandomPolicy


def episode_stats(episode: dict[str, np.ndarray]) -> dict[str, float]:
    """An episode's ``log_<name>`` observations as ``{name: value at its last step}``.

    Success flags (``log_success``) are judged at the end of an episode, as robotics benchmarks do.
    """
    return {key[4:]: float(value[-1]) for key, value in episode.items() if key.startswith("log_")}


class EpisodeTally:
    """Collects each finished episode's return, length (policy steps) and statistics; a callback for
    :meth:`Driver.on_episode` shared by the evaluations of training and of ``dreamworld eval``."""

    def __init__(self) -> None:
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.stats: list[dict[str, float]] = []

    def __call__(self, episode: dict[str, np.ndarray], index: int) -> None:
        self.returns.append(float(episode["reward"].sum()))
        self.lengths.append(len(episode["reward"]) - 1)  # the first entry is the reset
        self.stats.append(episode_stats(episode))

    def mean_stats(self, count: int) -> dict[str, float]:
        """Means of the first ``count`` episodes' statistics, by name."""
        stats = self.stats[:count]
        return {key: float(np.mean([s[key] for s in stats])) for key in stats[0]} if stats else {}


def random_returns(config: Config, episodes: int) -> list[float]:
    """Returns of a uniform random policy on the evaluation environment, as a baseline."""
    returns: list[float] = []
    with vector_env(config.env, num_envs=1, parallel="serial") as env:
        driver = Driver(env, seed=config.seed + 2_000_003)
        driver.on_episode(lambda episode, index: returns.append(float(episode["reward"].sum())))
        driver.run(RandomPolicy(env.act_space, 1, seed=config.seed), episodes=episodes)
    return returns[:episodes]
