"""The options every suite receives, and the errors for ids and packages a suite cannot resolve."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from dreamworld.errors import EnvError, missing_dependency

OBS_MODES = ("auto", "image", "vector", "both")
"""Values of the ``obs`` option: the suite's natural observation, pixels, state, or both."""

SUITE_OPTIONS = ("noops", "sticky", "camera", "discrete", "throttle", "kwargs")
"""Options that only some suites use; a suite rejects a non-default value it would ignore."""


@dataclass(frozen=True)
class EnvOptions:
    """The keyword options of :func:`dreamworld.envs.make_env`, validated once.

    Attributes:
        obs: One of :data:`OBS_MODES`.
        size: Side of square image observations in pixels.
        repeat: Action repeat; None picks the suite's default.
        time_limit: Agent steps (after repeat) per episode; None keeps the environment's own.
        gray: Single-channel ``(H, W, 1)`` images instead of RGB.
        noops: Atari: most random no-op actions at reset.
        sticky: Atari: probability of repeating the previous action instead of the new one.
        camera: dm_control: camera id to render; None picks the domain's default.
        discrete: CarRacing: the 5-action discrete version.
        kwargs: Gymnasium-based suites: extra arguments of ``gymnasium.make``.
        throttle: CarRacing: steering and one throttle axis (gas above 0, brake below).
        patience: Agent steps without a positive reward that end an episode as a truncation; None
            never (:class:`~dreamworld.envs.wrappers.Patience`).
    """

    obs: str = "auto"
    size: int = 64
    repeat: int | None = None
    time_limit: int | None = None
    gray: bool = False
    noops: int = 30
    sticky: float = 0.0
    camera: int | None = None
    discrete: bool = False
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    throttle: bool = False
    patience: int | None = None

    def __post_init__(self) -> None:
        if self.obs not in OBS_MODES:
            raise EnvError(f"obs must be one of {', '.join(OBS_MODES)}, not '{self.obs}'")
        positive = {
            "size": self.size,
            "repeat": self.repeat,
            "time_limit": self.time_limit,
            "patience": self.patience,
        }
        for name, value in positive.items():
            if value is not None and (not isinstance(value, int) or value < 1):
                raise EnvError(f"{name} must be a positive integer, not {value!r}")
        if self.noops < 0:
            raise EnvError(f"noops must be >= 0, not {self.noops}")
        if not 0.0 <= self.sticky <= 1.0:
            raise EnvError(f"sticky must be a probability in [0, 1], not {self.sticky}")

    def check_used(self, name: str, used: Collection[str]) -> None:
        """Rejects suite-specific options set away from their defaults that ``name`` would ignore.

        Args:
            name: The environment id, for the message.
            used: The names in :data:`SUITE_OPTIONS` the suite honours.

        Raises:
            EnvError: Naming the first ignored option.
        """
        if self.kwargs and "kwargs" not in used:
            keys = ", ".join(sorted(self.kwargs))
            raise EnvError(f"environment '{name}' does not accept extra keyword arguments ({keys})")
        default = EnvOptions()
        for option in SUITE_OPTIONS:
            if option not in used and getattr(self, option) != getattr(default, option):
                raise EnvError(f"environment '{name}' does not accept the option '{option}'")


def unknown_id(what: str, bad: str, candidates: Iterable[str]) -> EnvError:
    """The one-line error for an id that is not known, naming the closest valid one.

    Args:
        what: What the id names, e.g. ``"dm_control task"``.
        bad: The id as given.
        candidates: All valid ids.

    Returns:
        An error to raise.
    """
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    close = difflib.get_close_matches(bad.lower(), list(by_lower), n=1, cutoff=0.0)
    hint = f"; did you mean '{by_lower[close[0]]}'?" if close else ""
    return EnvError(f"unknown {what} '{bad}'{hint}")


def import_optional(module: str, extra: str, what: str) -> ModuleType:
    """Imports an optional package, or raises the error naming the extra that installs it.

    Only a missing module is translated; a package that is present but broken raises as is,
    so its real cause stays visible.

    Args:
        module: Import name, e.g. ``"dm_control.suite"``.
        extra: The dreamworld extra that installs it, e.g. ``"dmc"``.
        what: What needs it, e.g. ``"environment 'dmc/walker-walk'"``.

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: If the module or one it imports is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        package = (error.name or module).partition(".")[0]
        raise missing_dependency(package, extra, what) from None
