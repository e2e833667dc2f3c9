"""The Franka Panda arm of panda-gym (pybullet): ``panda/<task>``, e.g. ``panda/push``.

Tasks are goal-conditioned: ``vector`` is the observation dict flattened in sorted key order,
``achieved_goal``, ``desired_goal`` (3 each; 6 for stack) and ``observation`` (the end effector's
position and velocity, the gripper width and the objects). ``image`` (``obs="image"`` or
``"both"``) is drawn by pybullet's software renderer at ``size``. Actions are floats in [-1, 1]:
the end effector's displacement (and the gripper opening, except for reach and slide); ``kwargs``
``control_type="joints"`` moves the 7 joints instead. Rewards are sparse (-1 until the goal is
reached, then 0); ``<task>-dense`` gives the negative distance instead. ``log_success`` is
``info['is_success']``. Episodes are 50 steps (a truncation).
"""

from __future__ import annotations

import gymnasium as gym

from dreamworld.envs.base import Env
from dreamworld.envs.gym_suite import SUCCESS, GymSimulator, make_gym, task_id
from dreamworld.envs.options import EnvOptions, import_optional, unknown_id
from dreamworld.envs.wrappers import SimulatorEnv

TASKS = {
    "reach": "Reach",
    "push": "Push",
    "slide": "Slide",
    "pick-and-place": "PickAndPlace",
    "stack": "Stack",
}
"""Task names and the class names in the Gymnasium ids (Flip is left out: panda-gym 3.0.7 fails to
load its texture)."""

VERSION = "v3"
"""panda-gym 3's ids, the first on Gymnasium."""


def gym_id(task: str) -> str | None:
    """The Gymnasium id of ``panda/<task>``, or None for an unknown task.

    Example:
        >>> gym_id("push-dense")
        'PandaPushDense-v3'
    """
    return task_id(task, TASKS, "Panda", VERSION)


def make(task: str, options: EnvOptions) -> Env:
    """Builds ``panda/<task>``.

    Args:
        task: A key of :data:`TASKS`, optionally with ``-dense``.
        options: Validated options; ``obs="auto"`` means ``"vector"``.

    Returns:
        The environment.

    Raises:
        EnvError: If the task is unknown.
        MissingDependencyError: If panda-gym or pybullet is missing (extra ``panda``).
    """
    name = f"panda/{task}"
    options.check_used(name, {"kwargs"})
    env_id = gym_id(task)
    if env_id is None:
        raise unknown_id("panda-gym task", task, [*TASKS, *(f"{t}-dense" for t in TASKS)])
    import_optional("panda_gym", "panda", f"environment '{name}'")
    env = make_gym(gym.spec(env_id), options, name, render_width=options.size, render_height=options.size)
    return SimulatorEnv(GymSimulator(env, options, name, SUCCESS), options.repeat or 1, options.time_limit)
