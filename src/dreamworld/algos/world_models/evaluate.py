"""Stage 5, ``test``: the best controller of a variant on real episodes, with mean, spread and videos."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamworld.algos.world_models.controller_stage import (
    BEST_NAME,
    KIND,
    build_agent,
    check_models,
    controller_dir,
    initial_latents,
)
from dreamworld.algos.world_models.rollouts import dream_rollouts, real_rollouts
from dreamworld.config import Config
from dreamworld.errors import DreamworldError
from dreamworld.run.checkpoint import load_checkpoint
from dreamworld.run.driver import vector_env
from dreamworld.run.logger import Logger

RESULT_NAME = "test.json"


@dataclass
class TestResult:
    """Returns of the test episodes; also written to ``<controller dir>/test.json``."""

    returns: list[float]
    video: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def test_controller(
    config: Config,
    episodes: int,
    memory: bool = True,
    dream: bool = False,
    temperature: float = 1.15,
    video: bool = False,
    workers: int | None = None,
    device: Any = "cpu",
    directory: Path | None = None,
) -> TestResult:
    """Runs the best controller of a variant for ``episodes`` real episodes (the task's own length).

    The variant is the controller directory named by ``memory``, ``dream`` and ``temperature``, or
    ``directory`` when given.

    Raises:
        DreamworldError: That variant has no trained controller yet.
    """
    cell = config.worldmodels.controller.cell
    directory = directory or controller_dir(Path(config.logdir), memory, dream, temperature, cell)
    if not (directory / BEST_NAME).exists():
        flags = ("" if memory else " --no-memory") + (
            f" --dream --temperature {temperature:g}" if dream else ""
        )
        command = f"dreamworld worldmodels train-controller{flags}"
        raise DreamworldError(f"no trained controller in {directory}; run `{command}` first")
    best = load_checkpoint(directory / BEST_NAME, kind=KIND)
    images = dataclasses.replace(config.env, obs="image")
    with vector_env(images, workers or config.worldmodels.controller.workers) as env:
        spec = best["spec"]
        agent = build_agent(config, spec["memory"], dream, env.act_space, device, spec.get("cell", False))
        check_models(best, agent, directory)
        population = best["params"].to(device, torch.float32).unsqueeze(0)
        jobs = np.zeros(episodes, np.int64)
        returns, frames = real_rollouts(env, agent, population, jobs, seed=config.seed + 777, record=video)
    result = TestResult([float(value) for value in returns])
    if dream:  # the paper's "virtual score": the same controller inside the dream it was trained in
        options = config.worldmodels.controller
        rng = np.random.default_rng(config.seed + 778)
        z0 = initial_latents(Path(config.logdir), episodes, rng).to(device)
        seeds = config.seed + 779 + np.arange(episodes)
        virtual = dream_rollouts(
            agent,
            population,
            jobs,
            z0,
            seeds,
            options.time_limit,
            temperature,
            options.dream_reward,
            options.dream_done,
        )
        result.extra = {"dream_mean": float(virtual.mean()), "dream_std": float(virtual.std())}
    with Logger(directory / "test", tensorboard=config.log.tensorboard, progress=False) as logger:
        if frames is not None:
            result.video = logger.video("test/video", frames, step=int(best["generation"]))
        logger.scalar("test/return", result.mean)
        logger.scalar("test/return_std", result.std)
        logger.write(int(best["generation"]))
    record = {
        "mean": result.mean,
        "std": result.std,
        "episodes": episodes,
        "returns": result.returns,
        **result.extra,
    }
    (directory / RESULT_NAME).write_text(json.dumps(record, indent=1))
    return result
