"""``dreamworld collect``: fill a run directory with episodes from a fixed policy.

This is the data generation stage of World Models (random or brownian rollouts) and the prefill of any
replay-based agent. Episodes go to ``<logdir>/episodes/`` through the episode store, the first episodes
of environment 0 become videos, and returns go to the logger. Running it again on the same directory
collects only the episodes still missing, with seeds that continue where the last run stopped.

With ``env.envs`` K > 1 environments in processes (``env.parallel: process``, the default), K worker
processes each collect their share of the episodes on their own and write them to the store, so no
environment waits for a slower one or for the main process (the compression of stored episodes
included); worker ``i`` seeds its environment and policy with ``seed + i``, as environment ``i`` is
seeded in lockstep. Serial and threaded environments are stepped in lockstep by one driver.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamworld.config import Config, config_to_dict, load_config
from dreamworld.config.loader import CONFIG_FILE, TASK_KEYS, changed_keys
from dreamworld.data.store import EPISODE_DIR, EpisodeStore
from dreamworld.envs.parallel import REIMPORTED_EXIT, VectorEnv, exit_if_reimported, reimported_error
from dreamworld.errors import DreamworldError
from dreamworld.run.driver import Driver, vector_env
from dreamworld.run.logger import Logger
from dreamworld.run.policies import make_policy
from dreamworld.run.rundir import RunDirectory
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
    exit_if_reimported()  # a worker process re-importing an unguarded script must not collect
    logdir = Path(config.logdir)
    with RunDirectory(logdir, config) as run:
        store = EpisodeStore(logdir / EPISODE_DIR)
        already = len(store)
        if already:
            _check_same_task(logdir, config)
        result = CollectResult(store.directory, episodes=0, steps=0)
        missing = config.collect.episodes - already
        if missing <= 0:
            return result
        seed = config.seed + already * _RESUME_SEED_STRIDE
        seed_everything(seed)
        logger = Logger(
            logdir,
            tensorboard=config.log.tensorboard,
            progress=config.log.progress,
            video_fps=config.log.video_fps,
            description=f"collect {config.env.name}",
        )
        # The configuration is written with the first episode: a collection that cannot start (an
        # unknown environment) changes nothing.
        with logger:
            sink = _Sink(logger, result, run.started)
            if config.env.envs > 1 and config.env.parallel in ("process", "auto"):
                _run_workers(config, store, sink, seed, missing)
            else:
                with vector_env(config.env, training=True) as env:
                    _run(config, env, store, sink, seed, missing)
    return result


@dataclass
class _Sink:
    """Where each collected episode is counted, logged and shown; the first one marks the run as
    started (its ``config.yaml`` is written then)."""

    logger: Logger
    result: CollectResult
    started: Callable[[], None]

    def add(self, score: float, length: int, frames: np.ndarray | None, step: int | None = None) -> None:
        self.started()
        result, logger = self.result, self.logger
        result.episodes += 1
        result.steps += length
        result.returns.append(score)
        step = result.steps if step is None else step
        logger.score(step, score, length)
        if frames is not None:
            result.videos.append(logger.video("episode/video", frames))
        logger.write(step)


def _check_same_task(logdir: Path, config: Config) -> None:
    """Episodes of another task or observation layout must not join those already in ``logdir``."""
    saved = logdir / CONFIG_FILE
    if not saved.is_file():
        return
    before = config_to_dict(load_config(files=[saved]))
    changed = {k: v for k, v in changed_keys(before, config_to_dict(config)).items() if k in TASK_KEYS}
    if changed:
        key, (here, there) = next(iter(changed.items()))
        raise DreamworldError(
            f"{logdir} holds episodes with {key} {there}, not {here}: collect into another --logdir"
        )


def _run(
    config: Config,
    env: VectorEnv,
    store: EpisodeStore,
    sink: _Sink,
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
        if sink.result.episodes >= missing:
            return  # environments still running when the target was reached
        store.save(episode)
        # The first observation comes from the reset, so an episode of T observations took T-1 steps.
        score, length = float(episode["reward"].sum()), len(episode["reward"]) - 1
        sink.add(score, length, recorder.finish() if index == 0 else None, step=driver.steps)

    driver.on_episode(finish)
    driver.run(policy, episodes=missing)


def _run_workers(
    config: Config,
    store: EpisodeStore,
    sink: _Sink,
    seed: int,
    missing: int,
) -> None:
    """Collects ``missing`` episodes with ``config.env.envs`` independent worker processes."""
    workers = config.env.envs
    shares = [len(share) for share in np.array_split(np.arange(missing), workers)]
    context = mp.get_context("spawn")
    messages = context.Queue()
    processes = [
        context.Process(
            target=_worker,
            args=(config, store.directory, index, shares[index], seed + index, messages),
            daemon=True,
        )
        for index in range(workers)
        if shares[index]
    ]
    for process in processes:
        process.start()
    running = len(processes)
    try:
        while running:
            try:
                kind, payload = messages.get(timeout=1.0)
            except queue.Empty:
                if any(process.exitcode == REIMPORTED_EXIT for process in processes):
                    raise reimported_error() from None
                if any(process.exitcode not in (None, 0) for process in processes):
                    raise DreamworldError(
                        "a collection worker died; the episodes it stored are kept: run the same "
                        "command again to collect the missing ones"
                    ) from None
                continue
            if kind == "error":
                raise DreamworldError(str(payload))
            if kind == "done":
                running -= 1
                continue
            score, length, frames = payload
            sink.add(score, length, frames)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()


def _worker(config: Config, directory: Path, index: int, episodes: int, seed: int, messages: Any) -> None:
    """One collection worker: ``episodes`` episodes in one environment, stored as they end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle: it stops us
    try:
        store = EpisodeStore(directory)
        env = vector_env(config.env, 1, "serial", training=True)
        policy = make_policy(
            config.collect.policy,
            env.act_space,
            1,
            seed,
            config.collect.brownian_dt,
            config.collect.switch_prob,
        )
        driver = Driver(env, seed=seed)
        recorder = _VideoRecorder(env, episodes=config.log.videos if index == 0 else 0)
        driver.on_step(recorder.step)

        def finish(episode: dict[str, np.ndarray], _: int) -> None:
            store.save(episode)
            score, length = float(episode["reward"].sum()), len(episode["reward"]) - 1
            messages.put(("episode", (score, length, recorder.finish())))

        driver.on_episode(finish)
        with env:
            driver.run(policy, episodes=episodes)
        messages.put(("done", None))
    except Exception as error:  # reported by the main process as one line
        text = str(error) if isinstance(error, DreamworldError) else f"{type(error).__name__}: {error}"
        messages.put(("error", f"collection worker {index}: {text}"))


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
