"""Drones and other aircraft of PyFlyt (pybullet): ``pyflyt/<task>``, e.g. ``pyflyt/quadx-hover``.

``vector`` is the aircraft's attitude (angular velocity, quaternion, linear velocity, position,
previous action and auxiliary state: 21 values for QuadX). Waypoint tasks observe the remaining
targets as a sequence of varying length; here it becomes ``num_targets`` fixed slots, next target
first, each the target's offset in the body frame and a 1, and all zeros once fewer targets remain
(QuadX-Waypoints: 21 + 4 x 4 = 37 values). ``image`` (``obs="image"`` or ``"both"``) is the onboard
camera, rendered at ``size``. Actions are the native ones rescaled to [-1, 1] (QuadX: angular rates
and thrust). Episodes end at a collision, leaving the flight dome or completing the task (a
termination), or at the task's duration (a truncation). ``log_success`` is ``info['env_complete']``
where a task can be completed, and waypoint tasks add ``log_targets_reached``.

PyFlyt's numba functions are left uncompiled (see :func:`_jit_off`): compiling them took 8-13 s per
process and made stepping no faster. The environment is made without a render mode for
``obs="vector"``: with one, PyFlyt captures the camera every step whether or not it is used (about
3x slower), so such environments give no video frames. The id's version is the highest PyFlyt
registers.

PyFlyt pins ``numpy<2``, which would downgrade numpy; it runs on numpy 2 when installed with
``pip install --no-deps PyFlyt==0.29.0`` after the ``pyflyt`` extra (its real dependencies).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from dreamworld.envs.base import Env
from dreamworld.envs.gym_suite import GymSimulator, make_gym
from dreamworld.envs.options import EnvOptions, import_optional, unknown_id
from dreamworld.envs.wrappers import SimulatorEnv
from dreamworld.errors import EnvError, MissingDependencyError

INSTALL = "pip install 'dreamworld[pyflyt]' && pip install --no-deps PyFlyt==0.29.0"
"""The commands that install PyFlyt without downgrading numpy."""


class Task(NamedTuple):
    """One PyFlyt task.

    Attributes:
        gym_name: The Gymnasium id without ``PyFlyt/`` and the version.
        info_keys: ``{info key: log name}`` of what the task reports.
    """

    gym_name: str
    info_keys: dict[str, str]


_COMPLETE = {"env_complete": "success"}
_WAYPOINTS = {**_COMPLETE, "num_targets_reached": "targets_reached"}

# QuadX-Gates is left out: PyFlyt 0.29.0 does not ship its gate model (race_gate.urdf).
TASKS = {
    "quadx-hover": Task("QuadX-Hover", {}),
    "quadx-waypoints": Task("QuadX-Waypoints", _WAYPOINTS),
    "quadx-pole-balance": Task("QuadX-Pole-Balance", {}),
    "quadx-pole-waypoints": Task("QuadX-Pole-Waypoints", _WAYPOINTS),
    "quadx-ball-in-cup": Task("QuadX-Ball-In-Cup", _COMPLETE),
    "fixedwing-waypoints": Task("Fixedwing-Waypoints", _WAYPOINTS),
    "rocket-landing": Task("Rocket-Landing", _COMPLETE),
}
"""Tasks by dreamworld name."""


def make(task: str, options: EnvOptions) -> Env:
    """Builds ``pyflyt/<task>``.

    Args:
        task: A key of :data:`TASKS`, e.g. ``"quadx-hover"``.
        options: Validated options; ``obs="auto"`` means ``"vector"``.

    Returns:
        The environment.

    Raises:
        EnvError: If the task is unknown.
        MissingDependencyError: If PyFlyt or one of its dependencies is missing (extra ``pyflyt``
            plus a separate install of PyFlyt, :data:`INSTALL`).
    """
    name = f"pyflyt/{task}"
    options.check_used(name, {"kwargs"})
    if task not in TASKS:
        raise unknown_id("PyFlyt task", task, TASKS)
    try:
        numba = import_optional("numba", "pyflyt", f"environment '{name}'")
        with _jit_off(numba):  # PyFlyt's modules are imported by the import and by gym.make
            import_optional("PyFlyt.gym_envs", "pyflyt", f"environment '{name}'")
            pixels = options.obs in ("image", "both")
            env = make_gym(
                gym.spec(_latest(TASKS[task].gym_name)),
                options,
                name,
                render_mode="rgb_array" if pixels else None,
                render_resolution=(options.size, options.size),
                disable_env_checker=True,  # it warns that PyFlyt reuses its info dict: harmless here
            )
    except MissingDependencyError as error:
        raise MissingDependencyError(f"{error}; PyFlyt itself: {INSTALL}") from None
    if isinstance(env.observation_space, gym.spaces.Dict) and "target_deltas" in env.observation_space.spaces:
        env = TargetSlots(env, int(env.unwrapped.waypoints.num_targets))  # type: ignore[attr-defined]
    sim = PyFlytSimulator(env, options, name, TASKS[task].info_keys)
    return SimulatorEnv(sim, options.repeat or 1, options.time_limit)


class PyFlytSimulator(GymSimulator):
    """A PyFlyt task; pybullet's greeting on standard output at every reset is silenced.

    PyFlyt connects to a new pybullet simulation at every reset; pybullet then prints ``argv[0]=``
    and PyFlyt a line of cursor-up escape sequences, which would litter training logs.
    """

    def reset(self, seed: int | None) -> None:
        """Resets without pybullet's output."""
        with _silent_stdout():
            super().reset(seed)


class TargetSlots(gym.ObservationWrapper):
    """The sequence ``target_deltas`` (next target first) as ``slots`` fixed rows of (delta, 1).

    Rows past the remaining targets are zeros, so the last column counts the targets still ahead.

    Args:
        env: A waypoint task with a ``Sequence`` of ``Box(dim)`` under ``target_deltas``.
        slots: The number of rows: the task's number of targets.
    """

    def __init__(self, env: gym.Env, slots: int) -> None:
        super().__init__(env)
        spaces = dict(env.observation_space.spaces)  # type: ignore[attr-defined]
        feature = spaces["target_deltas"].feature_space
        self._slots, self._dim = slots, int(feature.shape[0])
        width = slots * (self._dim + 1)
        spaces["target_deltas"] = gym.spaces.Box(-np.inf, np.inf, (width,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        """Replaces ``target_deltas`` by its fixed-size table."""
        deltas = np.asarray(observation["target_deltas"], np.float32).reshape(-1, self._dim)[: self._slots]
        table = np.zeros((self._slots, self._dim + 1), np.float32)
        table[: len(deltas), :-1] = deltas
        table[: len(deltas), -1] = 1.0
        return {**observation, "target_deltas": table.reshape(-1)}


@contextlib.contextmanager
def _jit_off(numba: ModuleType) -> Iterator[None]:
    """Functions and classes decorated by numba meanwhile stay plain Python.

    PyFlyt compiles its numba functions in every process on the first reset, 8-13 s here, and they
    run no faster than Python on its tiny arrays (QuadX-Hover: 197 vs 200 steps/s, one core).
    Numba reads the flag when decorating, so code compiled before or after is not affected.
    """
    previous = numba.config.DISABLE_JIT
    numba.config.DISABLE_JIT = True
    try:
        yield
    finally:
        numba.config.DISABLE_JIT = previous


@contextlib.contextmanager
def _silent_stdout() -> Iterator[None]:
    """Discards what Python (``sys.stdout``) and C code (file descriptor 1) print meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            os.dup2(devnull.fileno(), 1)
            try:
                yield
            finally:
                ctypes.CDLL(None).fflush(None)  # C's buffered output goes to /dev/null too
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _latest(gym_name: str) -> str:
    pattern = re.compile(rf"PyFlyt/{re.escape(gym_name)}-v(\d+)")
    versions = [int(match[1]) for env_id in gym.registry if (match := pattern.fullmatch(env_id))]
    if not versions:
        raise EnvError(f"PyFlyt registers no 'PyFlyt/{gym_name}-v*'; is PyFlyt 0.29 installed?")
    return f"PyFlyt/{gym_name}-v{max(versions)}"
