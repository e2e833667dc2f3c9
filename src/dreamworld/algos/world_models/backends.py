"""Where real fitness rollouts run: local worker processes, or a Ray cluster (``--backend ray``).

Both take a population and a list of jobs and return one return per job (and the frames of job 0
when asked), so the CMA-ES loop does not know which one it uses. The Ray backend starts one actor
per worker; each holds a copy of V, M and C's shape (sent once, as state dicts, so the cluster needs
no shared file system) and one environment, and runs its share of the jobs with
:func:`~dreamworld.algos.world_models.rollouts.real_rollouts`. ``ray.init`` connects to the cluster
named by ``RAY_ADDRESS`` when set, else starts a local Ray instance.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import numpy as np
import torch

from dreamworld.algos.world_models.rollouts import Agent, agent_from_state, agent_state, real_rollouts
from dreamworld.config import Config, config_from_dict, config_to_dict
from dreamworld.envs.parallel import VectorEnv
from dreamworld.errors import missing_dependency


class Backend(Protocol):
    def rollouts(
        self, population: torch.Tensor, jobs: np.ndarray, seed: int, patience: int = 0, record: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]: ...

    def close(self) -> None: ...


class LocalBackend:
    """Rollouts in this process's :class:`VectorEnv` (its environments in worker processes)."""

    def __init__(self, env: VectorEnv, agent: Agent) -> None:
        self.env, self.agent = env, agent

    def rollouts(
        self, population: torch.Tensor, jobs: np.ndarray, seed: int, patience: int = 0, record: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        return real_rollouts(self.env, self.agent, population, jobs, seed, record=record, patience=patience)

    def close(self) -> None:
        """The environments belong to the caller."""


class RayBackend:
    """Rollouts spread over ``workers`` Ray actors, each with one environment."""

    def __init__(self, config: Config, agent: Agent, workers: int) -> None:
        try:
            import ray
        except ModuleNotFoundError:
            raise missing_dependency("ray", "ray", "--backend ray") from None
        self.ray = ray
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            # A local instance runs its workers at normal priority: Ray's default (nice 15) let them
            # starve beside any busy process, 50x slower on a loaded 2-core machine.
            system: dict[str, Any] | None = None if address else {"worker_niceness": 0}
            ray.init(address=address, log_to_driver=False, _system_config=system)
        actor = ray.remote(num_cpus=1)(_RolloutActor)
        state = agent_state(agent)
        self.actors: list[Any] = [actor.remote(config_to_dict(config), state) for _ in range(workers)]

    def rollouts(
        self, population: torch.Tensor, jobs: np.ndarray, seed: int, patience: int = 0, record: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        shares = np.array_split(np.arange(len(jobs)), len(self.actors))
        params = population.detach().cpu().numpy()
        futures = [
            actor.run.remote(params, jobs[share], seed + index, patience, record and index == 0)
            for index, (actor, share) in enumerate(zip(self.actors, shares, strict=True))
            if len(share)
        ]
        results = self.ray.get(futures)
        returns = np.concatenate([result[0] for result in results])
        return returns, results[0][1]

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []


class _RolloutActor:
    """One Ray worker: an environment and the agent, rebuilt from plain data."""

    def __init__(self, config: dict[str, Any], state: dict[str, Any]) -> None:
        from dreamworld.algos.world_models.controller_stage import fitness_env

        torch.set_num_threads(1)
        self.env = fitness_env(config_from_dict(config), 1, parallel="serial")
        self.agent = agent_from_state(state)

    def run(
        self, params: np.ndarray, jobs: np.ndarray, seed: int, patience: int, record: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        population = torch.as_tensor(params, dtype=torch.float32)
        return real_rollouts(self.env, self.agent, population, jobs, seed, record=record, patience=patience)
