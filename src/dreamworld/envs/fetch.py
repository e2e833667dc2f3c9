"""The Fetch arm of Gymnasium-Robotics (MuJoCo): ``fetch/<task>``, e.g. ``fetch/push``.

Tasks are goal-conditioned: ``vector`` is the observation dict flattened in sorted key order,
``achieved_goal`` (3), ``desired_goal`` (3), ``observation`` (10 for reach, 25 otherwise).
``image`` (``obs="image"`` or ``"both"``) is rendered from the default camera at ``size`` with
shadows and multisampling off. Actions are 4 floats in [-1, 1]: gripper displacement and opening.
Rewards are sparse (-1 until the goal is reached, then 0); ``<task>-dense`` gives the negative
distance instead. ``log_success`` is ``info['is_success']``. Episodes are 50 steps (a truncation).

Gymnasium-Robotics 1.4.2 Fetch fails an assertion with mujoco >= 3.12; the ``fetch`` extra pins
mujoco 3.11.0, as the ``dmc`` extra does.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import gymnasium as gym

from dreamworld.envs.base import Env
from dreamworld.envs.gym_suite import SUCCESS, GymSimulator, make_gym, task_id
from dreamworld.envs.options import EnvOptions, import_optional, unknown_id
from dreamworld.envs.rendering import configure_mujoco_gl
from dreamworld.envs.wrappers import SimulatorEnv

TASKS = {"reach": "Reach", "push": "Push", "slide": "Slide", "pick-and-place": "PickAndPlace"}
"""Task names and the class names in the Gymnasium ids."""

VERSION = "v4"
"""Gymnasium-Robotics' ids on the ``mujoco`` bindings (v1 needs the retired mujoco-py)."""


def gym_id(task: str) -> str | None:
    """The Gymnasium id of ``fetch/<task>``, or None for an unknown task.

    Example:
        >>> gym_id("pick-and-place-dense")
        'FetchPickAndPlaceDense-v4'
    """
    return task_id(task, TASKS, "Fetch", VERSION)


def make(task: str, options: EnvOptions) -> Env:
    """Builds ``fetch/<task>``.

    Args:
        task: A key of :data:`TASKS`, optionally with ``-dense``.
        options: Validated options; ``obs="auto"`` means ``"vector"``.

    Returns:
        The environment.

    Raises:
        EnvError: If the task is unknown.
        MissingDependencyError: If gymnasium-robotics or mujoco is missing (extra ``fetch``).
    """
    name = f"fetch/{task}"
    options.check_used(name, {"kwargs"})
    env_id = gym_id(task)
    if env_id is None:
        raise unknown_id("Fetch task", task, [*TASKS, *(f"{t}-dense" for t in TASKS)])
    configure_mujoco_gl()  # before mujoco is imported
    # Gymnasium-Robotics prints a notice about its Adroit tasks to stderr on import, in every process.
    with contextlib.redirect_stderr(io.StringIO()):
        import_optional("gymnasium_robotics", "fetch", f"environment '{name}'")
    env = make_gym(gym.spec(env_id), options, name)
    return SimulatorEnv(FetchSimulator(env, options, name, SUCCESS), options.repeat or 1, options.time_limit)


class FetchSimulator(GymSimulator):
    """A Fetch task; its snapshots also hold the goal, which is not part of the MuJoCo state."""

    def get_state(self) -> dict[str, Any] | None:
        """The snapshot of :class:`GymSimulator` with the episode's goal."""
        state = super().get_state()
        if state is not None:
            state["goal"] = self._env.unwrapped.goal.copy()  # type: ignore[attr-defined]
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Continues from a snapshot of :meth:`get_state`."""
        super().set_state(state)
        self._env.unwrapped.goal = state["goal"].copy()  # type: ignore[attr-defined]
