"""Box2D CarRacing-v3, the World Models task: ``carracing``.

Observations are its 96x96 top-down pixels resized to ``size``. The continuous action (steering in
[-1, 1], gas and brake in [0, 1]) is normalised to [-1, 1] like every continuous action here;
``discrete=True`` gives its 5-action version. Its 1000-step limit is a truncation. The road is
drawn by :mod:`dreamworld.envs.carracing_render` (the same frames, 3-4x faster steps).
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym

from dreamworld.envs.base import Env
from dreamworld.envs.gym_suite import GymSimulator, make_gym
from dreamworld.envs.options import EnvOptions, import_optional
from dreamworld.envs.wrappers import SimulatorEnv
from dreamworld.errors import EnvError

GYM_ID = "CarRacing-v3"
ENTRY_POINT = "dreamworld.envs.carracing_render:CarRacing"


def make(task: str, options: EnvOptions) -> Env:
    """Builds ``carracing``.

    Args:
        task: Must be empty: the suite has one task.
        options: Validated options; ``discrete`` and ``kwargs`` apply, ``obs`` must be
            ``"auto"`` or ``"image"``.

    Returns:
        The environment.

    Raises:
        EnvError: If a task is named or ``obs`` asks for a vector.
        MissingDependencyError: If Box2D is missing (extra ``box2d``).
    """
    name = "carracing"
    if task:
        raise EnvError(f"'carracing' has no tasks; use 'carracing', not 'carracing/{task}'")
    options.check_used(name, {"discrete", "kwargs"})
    if options.obs not in ("auto", "image"):
        raise EnvError(f"environment '{name}' has image observations only, not obs='{options.obs}'")
    import_optional("Box2D", "box2d", f"environment '{name}'")
    spec = dataclasses.replace(gym.spec(GYM_ID), entry_point=ENTRY_POINT)
    env = make_gym(spec, options, name, continuous=not options.discrete)
    return SimulatorEnv(GymSimulator(env, options, name), options.repeat or 1, options.time_limit)
