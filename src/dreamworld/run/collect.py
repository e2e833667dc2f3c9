"""``dreamworld collect``: fill a run directory with episodes from a fixed policy.

This is the data generation stage of World Models (random or brownian rollouts) and the prefill of any
replay-based agent. Episodes go to ``<logdir>/episodes/`` through the episode store, the first episodes
of environment 0 become videos, and returns go to the logger. Running it again on the same directory
collects only the episodes still missing, with seeds that continue where the last run stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dreamworld.config import Config, save_config
from dreamworld.data.store import EPISODE_DIR, EpisodeStore
from dreamworld.envs.parallel import VectorEnv
from dreamworld.run.driver import Driver, vector_env
from dreamworld.run.logger import Logger
from dreamworld.run.policies import make_policy
from dreamworld.run.seeding import seed_everything

# Seeds of a resumed collection start this far apart per episode already stored, so a second run
# never replays the streams of the first.
_RESUME_SEED_STRIDE = 10_007


@dataclass
class CollectResult:
    """What a collection produced."""

    episode_dir: Path
    episodes: int
    steps: int
    returns: list[float] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)


def collect(config: Config) -> CollectResult:
    """Collects ``config.collect.episodes`` episodes (in total) into ``config.logdir``.

    Args:
        config: The resolved configuration; ``env``, ``collect``, ``log`` and ``seed`` are used.

    Returns:
        Where the episodes and videos are, and the returns of the episodes collected now.
    """
    logdir = Path(config.logdir)
    store = EpisodeStore(logdir / EPISODE_DIR)
    save_config(config, logdir)
    already = len(store)
    result = CollectResult(store.directory, episodes=0, steps=0)
    missing = config.collect.episodes - already
    if missing <= 0:
        return result
    seed = config.seed + already * _RESUME_SEED_STRIDE
    seed_everything(seed)
    env = vector_env(config.env)
    with (
        env,
        Logger(
            logdir,
            tensorboard=config.log.tensorboard,
            progress=config.log.progress,
            video_fps=config.log.video_fps,
            description=f"collect {config.env.name}",
        ) as logger,
    ):
        _run(config, env, store, logger, result, seed, missing)
    return result


def _run(
    config: Config,
    env: VectorEnv,
    store: EpisodeStore,
    logger: Logger,
    result: CollectResult,
    seed: int,
    missing: int,
) -> None:
    policy = make_policy(
        config.collect.policy,
        env.act_space,
        env.num_envs,
        seed,
        config.collect.brownian_dt,
        config.collect.switch_prob,
    )
    driver = Driver(env, seed=seed)
    recorder = _VideoRecorder(env, episodes=config.log.videos)
    driver.on_step(recorder.step)

    def finish(episode: dict[str, np.ndarray], index: int) -> None:
        if result.episodes >= missing:
            return  # environments still running when the target was reached
        store.save(episode)
        # The first observation comes from the reset, so an episode of T observations took T-1 steps.
        score, length = float(episode["reward"].sum()), len(episode["reward"]) - 1
        result.episodes += 1
        result.steps += length
        result.returns.append(score)
        logger.score(driver.steps, score, length)
        if index == 0 and (frames := recorder.finish()) is not None:
            result.videos.append(logger.video("episode/video", frames))
        logger.write(driver.steps)

    driver.on_episode(finish)
    driver.run(policy, episodes=missing)


class _VideoRecorder:
    """Keeps the frames of environment 0 for its first ``episodes`` episodes."""

    def __init__(self, env: VectorEnv, episodes: int) -> None:
        self.env = env
        self.remaining = episodes
        self.frames: list[np.ndarray] = []

    def step(self, step: dict[str, np.ndarray]) -> None:
        if self.remaining <= 0:
            return
        frame = step["image"][0] if "image" in step else self.env.render(0)
        if frame is not None:
            self.frames.append(np.asarray(frame))

    def finish(self) -> np.ndarray | None:
        if self.remaining <= 0 or not self.frames:
            return None
        self.remaining -= 1
        frames, self.frames = np.stack(self.frames), []
        return frames
