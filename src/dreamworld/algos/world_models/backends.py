"""Where real fitness rollouts run: local worker processes, or a Ray cluster (``--backend ray``).

Every backend takes a population and a list of jobs and returns one return per job (and the frames
of job 0 when asked), so the CMA-ES loop does not know which one it uses. With the process and Ray
backends, job ``k`` is one episode from an environment reset with ``seed + k``, so its return depends
neither on which of the two runs it nor on the number of workers.

- :class:`ProcessBackend` (``--backend local``, the default): ``workers`` local processes, each with
  one environment and its own copy of V, M and C, take the next job as soon as they finish one. No
  worker waits for another, and no frame crosses a process boundary.
- :class:`RayBackend`: one Ray actor per worker, each holding a copy of V, M and C (sent once, as state
  dicts, so the cluster needs no shared file system) and one environment, each running a share of the
  jobs. ``ray.init`` connects to the cluster named by ``RAY_ADDRESS`` when set, else starts a local
  Ray instance.
- :class:`LocalBackend`: every job in one :class:`VectorEnv`, stepped in lockstep with one batched
  V/M/C call per step. Its environment ``i`` is reset with ``seed + i``, so its returns differ from the
  other two for the same seed; no stage uses it, tests and speed comparisons do.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

import numpy as np
import torch

from dreamworld.algos.world_models.rollouts import Agent, agent_from_state, agent_state, real_rollouts
from dreamworld.config import Config, config_from_dict, config_to_dict
from dreamworld.envs.parallel import VectorEnv
from dreamworld.errors import DreamworldError, missing_dependency


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
            actor.run.remote(params, jobs[share], seed + share, patience, record and index == 0)
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


class ProcessBackend:
    """Rollouts in ``workers`` local processes, each with an environment and a copy of V, M and C.

    Jobs are handed out one at a time to whichever worker is free.
    """

    def __init__(self, config: Config, agent: Agent, workers: int) -> None:
        context = mp.get_context("spawn")
        state, plain = agent_state(agent), config_to_dict(config)
        self.workers: list[tuple[Any, Connection]] = []
        for _ in range(max(1, workers)):
            ours, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(theirs, plain, state), daemon=True)
            process.start()
            theirs.close()
            self.workers.append((process, ours))

    def rollouts(
        self, population: torch.Tensor, jobs: np.ndarray, seed: int, patience: int = 0, record: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        params = population.detach().cpu().numpy()
        returns = np.zeros(len(jobs), np.float64)
        frames: np.ndarray | None = None
        waiting = list(range(len(jobs)))[::-1]  # popped from the end: job 0 first
        busy: dict[Connection, int] = {}

        def hand_out(connection: Connection) -> None:
            k = waiting.pop()
            try:
                connection.send((params, jobs[k : k + 1], np.array([seed + k]), patience, record and k == 0))
            except OSError:  # the worker is gone; it may have said why
                raise DreamworldError(_last_words(connection)) from None
            busy[connection] = k

        for _, connection in self.workers:
            if waiting:
                hand_out(connection)
        while busy:
            for ready in wait(list(busy)):
                connection = ready  # type: ignore[assignment]
                k = busy.pop(connection)
                try:
                    reply = connection.recv()
                except EOFError:
                    raise DreamworldError(_last_words(connection)) from None
                if isinstance(reply, str):
                    raise DreamworldError(reply)
                returns[k] = reply[0][0]
                if k == 0 and record:
                    frames = reply[1]
                if waiting:
                    hand_out(connection)
        return returns, frames

    def close(self) -> None:
        for process, connection in self.workers:
            with contextlib.suppress(OSError):  # a worker that died has closed its end
                connection.send(None)
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join()
            connection.close()
        self.workers = []


def _last_words(connection: Connection) -> str:
    """What a worker that went away said last, or that it died."""
    with contextlib.suppress(EOFError, OSError):
        if connection.poll():
            reply = connection.recv()
            if isinstance(reply, str):
                return reply
    return "a rollout worker process died; run the command again (training resumes)"


def _serve(connection: Connection, config: dict[str, Any], state: dict[str, Any]) -> None:
    """A :class:`ProcessBackend` worker: runs the jobs it receives until it receives ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    try:
        actor = _RolloutActor(config, state)
    except Exception as error:  # reported by the main process as one line
        connection.send(f"a rollout worker could not start: {type(error).__name__}: {error}")
        return
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        if message is None:
            return
        try:
            connection.send(actor.run(*message))
        except Exception as error:
            connection.send(f"a rollout worker failed: {type(error).__name__}: {error}")


class _RolloutActor:
    """One worker (a Ray actor or a local process): an environment and the agent, rebuilt from plain data."""

    def __init__(self, config: dict[str, Any], state: dict[str, Any]) -> None:
        from dreamworld.algos.world_models.controller_stage import fitness_env

        torch.set_num_threads(1)
        self.env = fitness_env(config_from_dict(config), 1, parallel="serial")
        self.agent = agent_from_state(state)

    def run(
        self, params: np.ndarray, jobs: np.ndarray, seeds: np.ndarray, patience: int, record: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Job ``jobs[i]`` from an environment reset with ``seeds[i]``; the frames of the first job."""
        population = torch.as_tensor(params, dtype=torch.float32)
        returns, frames = [], None
        for index, (job, seed) in enumerate(zip(jobs, seeds, strict=True)):
            keep = record and index == 0
            one = np.array([job])
            result, recorded = real_rollouts(
                self.env, self.agent, population, one, int(seed), record=keep, patience=patience
            )
            returns.append(result[0])
            frames = recorded if index == 0 else frames
        return np.array(returns), frames
