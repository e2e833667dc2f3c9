"""The typed configuration schema: one frozen dataclass per section, one help line per field.

The schema is the single source of defaults. Presets (``config/presets/*.yaml``), a user's YAML file and
command-line overrides only change fields that exist here; :mod:`dreamworld.config.loader` rejects any
other key and checks every value's type against these annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dreamworld.errors import ConfigError


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"config key '{key}' is '{value}'; choose one of: {', '.join(choices)}")


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"config key '{key}' must be positive, got {value}")


def _help_factory(text: str, factory: Any) -> Any:
    return field(default_factory=factory, metadata={"help": text})


@dataclass(frozen=True)
class EnvConfig:
    """Which environment to run and how it is presented to the agent."""

    name: str = _help(
        "environment id: gym/<Gymnasium id or module:Id>, dmc/<domain>-<task>, atari/<game>, "
        "carracing",
        "gym/CartPole-v1",
    )
    envs: int = _help("number of environments stepped in parallel", 1)
    parallel: str = _help("where environments run: process, thread or serial", "process")
    obs: str = _help("observations: auto (the suite's natural one), image, vector or both", "auto")
    size: int = _help("side of square image observations, in pixels", 64)
    repeat: int | None = _help(
        "action repeat; null takes the suite's default (atari 4, dmc 2, others 1)", None
    )
    time_limit: int | None = _help(
        "episode length limit in agent steps (a truncation); null keeps the task's own", None
    )
    gray: bool = _help("grayscale images (one channel)", False)
    noops: int = _help("atari: up to this many no-op actions after a reset", 30)
    sticky: float = _help("atari: probability of repeating the previous action", 0.0)
    camera: int | None = _help("dmc: camera id for images; null takes the domain's default", None)
    discrete: bool = _help("carracing: use the 5-action discrete version", False)
    kwargs: dict[str, Any] = _help_factory(
        "extra keyword arguments passed to gymnasium.make (gym/ ids only)", dict
    )

    def __post_init__(self) -> None:
        _choice("env.parallel", self.parallel, ("process", "thread", "serial"))
        _choice("env.obs", self.obs, ("auto", "image", "vector", "both"))
        _positive("env.envs", self.envs)
        _positive("env.size", self.size)


@dataclass(frozen=True)
class ReplayConfig:
    """The sequence replay and its episode store on disk."""

    capacity: int = _help("replay capacity in environment steps; the oldest are evicted", 1_000_000)
    batch: int = _help("sequences per training batch (B)", 16)
    length: int = _help("steps per training sequence (T)", 64)
    save_episodes: bool = _help("write every finished episode to <logdir>/episodes/", True)

    def __post_init__(self) -> None:
        for key in ("capacity", "batch", "length"):
            _positive(f"replay.{key}", getattr(self, key))


@dataclass(frozen=True)
class LogConfig:
    """Terminal, files and TensorBoard."""

    progress: bool = _help("show a progress bar in the terminal", True)
    tensorboard: bool = _help("write TensorBoard event files into the run directory", True)
    every: float = _help("seconds between metric writes", 30.0)
    video_fps: int = _help("frames per second of written videos", 20)
    videos: int = _help("episodes recorded as videos by data collection", 1)


@dataclass(frozen=True)
class CollectConfig:
    """Data collection with a fixed policy (``dreamworld collect``)."""

    policy: str = _help("random (uniform actions) or brownian (smoothly varying actions)", "random")
    episodes: int = _help("finished episodes to collect into the run directory", 10)
    brownian_dt: float = _help(
        "brownian policy: time step of the random walk; smaller changes actions more slowly", 0.02
    )
    switch_prob: float = _help(
        "brownian policy, discrete actions: probability of drawing a new action each step", 0.1
    )

    def __post_init__(self) -> None:
        _choice("collect.policy", self.policy, ("random", "brownian"))
        _positive("collect.episodes", self.episodes)


@dataclass(frozen=True)
class Config:
    """Everything one run needs; written to ``<logdir>/config.yaml``."""

    seed: int = _help("seed of every random stream (environments, policies, networks)", 0)
    logdir: str = _help("run directory: episodes, logs, videos, checkpoints", "runs/default")
    env: EnvConfig = _help_factory("the environment", EnvConfig)
    replay: ReplayConfig = _help_factory("replay and episode store", ReplayConfig)
    log: LogConfig = _help_factory("logging", LogConfig)
    collect: CollectConfig = _help_factory("data collection", CollectConfig)
