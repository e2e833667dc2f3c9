"""Self-driving scenes of highway-env: ``highway/<task>``, e.g. ``highway/highway-fast``.

``vector`` is the environment's own default observation flattened: the "Kinematics" table of the
ego vehicle and its nearest neighbours (5 vehicles x 5 features) for most tasks, the goal-conditioned
kinematics (``achieved_goal``, ``desired_goal``, ``observation``) for ``parking`` and the 2x12x12
occupancy grid for ``racetrack``. ``image`` is the rendered scene around the ego vehicle: a square
view :data:`TASKS` gives the width of, drawn at twice ``size`` and area-averaged down to ``size``.

Actions are each task's default: five discrete meta-actions (lane left, idle, lane right, faster,
slower; intersection: three) or continuous steering/acceleration (``parking``; ``racetrack``
steers only). Episodes end at a crash (a termination) or at the task's duration (a truncation).
``log_crashed`` reports crashes; ``log_success`` is added where the task reports success
(``parking``, ``exit``). ``kwargs`` go to ``gymnasium.make``; a ``config`` there is merged over the
rendering settings made here.

Never set ``SDL_VIDEODRIVER=dummy`` for these: highway-env then disables its viewer and every frame
is black. Nothing here sets it; the viewer renders offscreen by itself.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import gymnasium as gym

from dreamworld.envs.base import Env
from dreamworld.envs.gym_suite import SUCCESS, GymSimulator, make_gym
from dreamworld.envs.options import EnvOptions, import_optional, unknown_id
from dreamworld.envs.wrappers import SimulatorEnv


class Task(NamedTuple):
    """One highway-env scene.

    Attributes:
        gym_id: The registered Gymnasium id.
        view: Width of the rendered square view in metres.
        success: Whether ``info`` reports ``is_success``.
    """

    gym_id: str
    view: float
    success: bool = False


# The v1 ids (highway-env >= 1.12) detect neighbours on connected lanes; the v0 ids of these
# scenes are deprecated. Views: about 50 m ahead on roads, the whole roundabout, lot or junction.
TASKS = {
    "highway": Task("highway-v0", 72.0),
    "highway-fast": Task("highway-fast-v0", 72.0),
    "merge": Task("merge-v1", 72.0),
    "roundabout": Task("roundabout-v1", 110.0),
    "parking": Task("parking-v0", 86.0, success=True),
    "racetrack": Task("racetrack-v1", 110.0),
    "intersection": Task("intersection-v2", 84.0),
    "exit": Task("exit-v1", 72.0, success=True),
    "u-turn": Task("u-turn-v1", 72.0),
}
"""Tasks by dreamworld name."""


def make(task: str, options: EnvOptions) -> Env:
    """Builds ``highway/<task>``.

    Args:
        task: A key of :data:`TASKS`, e.g. ``"highway-fast"`` or ``"parking"``.
        options: Validated options; ``obs="auto"`` means ``"vector"``.

    Returns:
        The environment.

    Raises:
        EnvError: If the task is unknown.
        MissingDependencyError: If highway-env is missing (extra ``highway``).
    """
    name = f"highway/{task}"
    options.check_used(name, {"kwargs"})
    if task not in TASKS:
        raise unknown_id("highway-env task", task, TASKS)
    import_optional("highway_env", "highway", f"environment '{name}'")
    spec = TASKS[task]
    side = 2 * options.size
    config = {"screen_width": side, "screen_height": side, "scaling": side / spec.view}
    kwargs = {**options.kwargs, "config": {**config, **options.kwargs.get("config", {})}}
    env = make_gym(gym.spec(spec.gym_id), dataclasses.replace(options, kwargs=kwargs), name)
    info_keys = {"crashed": "crashed", **(SUCCESS if spec.success else {})}
    sim = GymSimulator(OneFramePerStep(env), options, name, info_keys)
    return SimulatorEnv(sim, options.repeat or 1, options.time_limit)


class OneFramePerStep(gym.Wrapper):
    """Stops highway-env from drawing every simulation frame of a step once it has rendered.

    After a ``render()`` highway-env renders all intermediate simulation frames of the next step
    (for smooth videos), 5-15 frames per agent step; only the last one is observed here.
    """

    def render(self) -> Any:
        """The current frame, without turning on rendering of the next step's frames."""
        frame = self.env.render()
        self.env.unwrapped.enable_auto_render = False  # type: ignore[attr-defined]
        return frame
