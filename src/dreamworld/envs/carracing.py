"""Box2D CarRacing-v3, the World Models task: ``carracing``.

Observations are its 96x96 top-down pixels resized to ``size``. The continuous action (steering in
[-1, 1], gas and brake in [0, 1]) is normalised to [-1, 1] like every continuous action here;
``discrete=True`` gives its 5-action version, ``throttle=True`` two actions: steering and a throttle
whose positive half is gas and negative half brake (up to 0.8, short of locking the wheels). Its
1000-step limit is a truncation. The road is drawn by :mod:`dreamworld.envs.carracing_render` (the
same frames, 3-4x faster steps).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np

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
    options.check_used(name, {"discrete", "throttle", "kwargs"})
    if options.discrete and options.throttle:
        raise EnvError(f"environment '{name}' takes discrete or throttle actions, not both")
    if options.obs not in ("auto", "image"):
        raise EnvError(f"environment '{name}' has image observations only, not obs='{options.obs}'")
    import_optional("Box2D", "box2d", f"environment '{name}'")
    spec = dataclasses.replace(gym.spec(GYM_ID), entry_point=ENTRY_POINT)
    env = make_gym(spec, options, name, continuous=not options.discrete)
    sim: Any = LazySimulator(env, options, name)
    sim = Throttle(sim) if options.throttle else sim
    return SimulatorEnv(sim, options.repeat or 1, options.time_limit)


class LazySimulator(GymSimulator):
    """Draws the frame only when it is observed: once per agent step, not once per repeated action
    (:class:`dreamworld.envs.carracing_render.CarRacing` with ``lazy``)."""

    def __init__(self, env: gym.Env, options: EnvOptions, name: str) -> None:
        env.unwrapped.lazy = True  # type: ignore[attr-defined]
        super().__init__(env, options, name)

    def observe(self) -> dict[str, np.ndarray]:
        self._obs = self._env.unwrapped.pixels()  # type: ignore[attr-defined]
        return super().observe()


BRAKE = 0.8
"""The strongest brake of a throttle action: CarRacing locks the wheels from 0.9."""


class Throttle:
    """CarRacing's simulator with actions (steering, throttle) in [-1, 1]: a throttle ``t`` is gas
    ``max(t, 0)`` and brake ``BRAKE * max(-t, 0)``. The middle action coasts, where the three-action
    version's middle (gas 0.5 and brake 0.5 at once) all but stops the car.

    Example:
        >>> Throttle.native(np.array([0.5, -1.0], np.float32)).tolist()
        [0.5, 0.0, 0.800000011920929]
    """

    native_act_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, sim: GymSimulator) -> None:
        self.sim = sim

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sim, name)

    @staticmethod
    def native(action: np.ndarray) -> np.ndarray:
        steer, throttle = float(action[0]), float(action[1])
        return np.array([steer, max(throttle, 0.0), BRAKE * max(-throttle, 0.0)], np.float32)

    def step(self, action: Any) -> tuple[float, bool, bool]:
        return self.sim.step(self.native(np.asarray(action)))
