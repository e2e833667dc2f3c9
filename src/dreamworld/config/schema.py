"""The typed configuration schema: one frozen dataclass per section, one help line per field.

The schema is the single source of defaults. Presets (``config/presets/*.yaml``), a user's YAML file and
command-line overrides only change fields that exist here; :mod:`dreamworld.config.loader` rejects any
other key and checks every value's type against these annotations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dreamworld.config.dreamer import DreamerConfig
from dreamworld.config.fields import choice, option, positive, section
from dreamworld.config.worldmodels import WorldModelsConfig


@dataclass(frozen=True)
class EnvConfig:
    """Which environment to run and how it is presented to the agent."""

    name: str = option(
        "environment id: gym/<Gymnasium id or module:Id>, dmc/<domain>-<task>, atari/<game>, carracing, "
        "vizdoom/<scenario>, highway/<scene>, pyflyt/<task>, fetch/<task>, panda/<task>",
        "gym/CartPole-v1",
    )
    envs: int = option("number of environments stepped in parallel", 1)
    parallel: str = option(
        "where environments run: process, thread, serial, or auto (one in this process, several in "
        "worker processes)",
        "auto",
    )
    obs: str = option("observations: auto (the suite's natural one), image, vector or both", "auto")
    size: int = option("side of square image observations, in pixels", 64)
    repeat: int | None = option(
        "action repeat; null takes the suite's default (atari 4, dmc 2, others 1)", None
    )
    time_limit: int | None = option(
        "episode length limit in agent steps (a truncation); null keeps the task's own", None
    )
    gray: bool = option("grayscale images (one channel)", False)
    noops: int = option("atari: up to this many no-op actions after a reset", 30)
    sticky: float = option("atari: probability of repeating the previous action", 0.0)
    camera: int | None = option("dmc: camera id for images; null takes the domain's default", None)
    discrete: bool = option("carracing: use the 5-action discrete version", False)
    throttle: bool = option(
        "carracing: steering and one throttle axis (gas above 0, brake below) instead of steering, gas "
        "and brake",
        False,
    )
    patience: int | None = option(
        "end a training episode (as a truncation) after this many agent steps without a positive "
        "reward; null never. Evaluation episodes always run in full",
        None,
    )
    kwargs: dict[str, Any] = section(
        "extra keyword arguments passed to gymnasium.make (gym/, carracing and the robotics suites)", dict
    )
    nonfinite: str = option(
        "NaN or infinity in an observation or reward: error (stop, naming the environment, the key and "
        "the step) or replace (by 0, with a warning)",
        "error",
    )

    def __post_init__(self) -> None:
        choice("env.parallel", self.parallel, ("auto", "process", "thread", "serial"))
        choice("env.nonfinite", self.nonfinite, ("error", "replace"))
        choice("env.obs", self.obs, ("auto", "image", "vector", "both"))
        positive("env.envs", self.envs)
        positive("env.size", self.size)


@dataclass(frozen=True)
class ReplayConfig:
    """The sequence replay and its episode store on disk."""

    capacity: int = option("replay capacity in environment steps; the oldest are evicted", 1_000_000)
    batch: int = option("sequences per training batch (B)", 16)
    length: int = option("steps per training sequence (T)", 64)
    save_episodes: bool = option("write every finished episode to <logdir>/episodes/", True)

    def __post_init__(self) -> None:
        for key in ("capacity", "batch", "length"):
            positive(f"replay.{key}", getattr(self, key))


@dataclass(frozen=True)
class LogConfig:
    """Terminal, files and TensorBoard."""

    progress: bool = option("show a progress bar in the terminal", True)
    tensorboard: bool = option("write TensorBoard event files into the run directory", True)
    every: float = option("seconds between metric writes", 30.0)
    video_fps: int = option("frames per second of written videos", 20)
    videos: int = option("episodes recorded as videos by data collection", 1)


@dataclass(frozen=True)
class CollectConfig:
    """Data collection with a fixed policy (``dreamworld collect``)."""

    policy: str = option("random (uniform actions) or brownian (smoothly varying actions)", "random")
    episodes: int = option("finished episodes to collect into the run directory", 10)
    brownian_dt: float = option(
        "brownian policy: time step of the random walk; smaller changes actions more slowly", 0.02
    )
    switch_prob: float = option(
        "brownian policy, discrete actions: probability of drawing a new action each step", 0.1
    )

    def __post_init__(self) -> None:
        choice("collect.policy", self.policy, ("random", "brownian"))
        positive("collect.episodes", self.episodes)


@dataclass(frozen=True)
class Config:
    """Everything one run needs; written to ``<logdir>/config.yaml``."""

    seed: int = option("seed of every random stream (environments, policies, networks)", 0)
    logdir: str = option("run directory: episodes, logs, videos, checkpoints", "runs/default")
    env: EnvConfig = section("the environment", EnvConfig)
    replay: ReplayConfig = section("replay and episode store", ReplayConfig)
    log: LogConfig = section("logging", LogConfig)
    collect: CollectConfig = section("data collection", CollectConfig)
    dreamer: DreamerConfig = section("the Dreamer agent (train --algo dreamerv1/v2/v3)", DreamerConfig)
    worldmodels: WorldModelsConfig = section(
        "the World Models pipeline (dreamworld worldmodels ...)", WorldModelsConfig
    )
