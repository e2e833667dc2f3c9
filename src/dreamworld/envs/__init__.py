"""Environments behind one observation contract (:mod:`dreamworld.envs.base`).

``make_env("dmc/walker-walk", obs="image")`` builds one environment; ``make_vector_env`` steps
several in worker processes. Suites are found in a local registry of import strings, so a suite's
simulator (and its optional package) is imported only when that suite is used. Nothing here
imports torch.

=============  =====================================  ======================  ===============
suite          ids                                    natural observation     extra
=============  =====================================  ======================  ===============
``gym``        ``gym/<Gymnasium id>``                 its observation space   (core)
``dmc``        ``dmc/<domain>-<task>``                ``vector``              ``dmc``
``atari``      ``atari/<game>`` (snake_case)          ``image``               ``atari``
``carracing``  ``carracing``                          ``image``               ``box2d``
``vizdoom``    ``vizdoom/<scenario>``                 ``image``               ``vizdoom``
``highway``    ``highway/<scene>``                    ``vector``              ``highway``
``pyflyt``     ``pyflyt/<aircraft>-<task>``           ``vector``              ``pyflyt`` (1)
``fetch``      ``fetch/<task>[-dense]``               ``vector``              ``fetch``
``panda``      ``panda/<task>[-dense]``               ``vector``              ``panda``
=============  =====================================  ======================  ===============

(1) PyFlyt pins ``numpy<2``; it is installed on its own with ``pip install --no-deps`` after the
extra, which brings its real dependencies (see ``docs/robotics.md``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from dreamworld.envs.base import Env
from dreamworld.envs.options import EnvOptions, unknown_id
from dreamworld.envs.parallel import VectorEnv
from dreamworld.envs.wrappers import Patience

__all__ = [
    "Env",
    "SuiteInfo",
    "VectorEnv",
    "action_repeat",
    "check_env_id",
    "make_env",
    "make_vector_env",
    "suite_table",
]


class _Suite(NamedTuple):
    entry: str
    modules: tuple[str, ...]
    extra: str | None
    examples: tuple[str, ...]
    description: str
    install: str | None = None  # when installing the extra is not enough
    repeat: int = 1  # the action repeat when env.repeat is null


# Values are import strings, resolved on use: a missing optional package fails only then.
_SUITES = {
    "gym": _Suite(
        "dreamworld.envs.gym_suite:make",
        ("gymnasium",),
        None,
        ("gym/CartPole-v1", "gym/Pendulum-v1", "gym/mypkg.module:MyEnv-v0"),
        "any registered Gymnasium environment; pixels of state-based ones by rendering",
    ),
    "dmc": _Suite(
        "dreamworld.envs.dmc:make",
        ("mujoco", "dm_control"),
        "dmc",
        ("dmc/walker-walk", "dmc/cartpole-swingup", "dmc/ball_in_cup-catch"),
        "DeepMind Control Suite: proprioceptive state or camera pixels, action repeat 2",
        repeat=2,
    ),
    "atari": _Suite(
        "dreamworld.envs.atari:make",
        ("ale_py", "cv2"),
        "atari",
        ("atari/pong", "atari/breakout", "atari/space_invaders"),
        "Atari 2600 through ALE with the Atari100k protocol (frame skip 4, 30 no-ops)",
        repeat=4,
    ),
    "carracing": _Suite(
        "dreamworld.envs.carracing:make",
        ("Box2D",),
        "box2d",
        ("carracing",),
        "Box2D CarRacing-v3 from top-down pixels, the World Models task",
    ),
    "vizdoom": _Suite(
        "dreamworld.envs.vizdoom:make",
        ("vizdoom",),
        "vizdoom",
        ("vizdoom/take-cover", "vizdoom/defend-the-center", "vizdoom/health-gathering"),
        "ViZDoom's bundled scenarios from the first-person screen (TakeCover: World Models' dream task)",
    ),
    "highway": _Suite(
        "dreamworld.envs.highway:make",
        ("highway_env",),
        "highway",
        (
            "highway/highway-fast",
            "highway/merge",
            "highway/roundabout",
            "highway/parking",
            "highway/racetrack",
        ),
        "highway-env driving scenes: neighbour kinematics or top-down pixels, meta-actions or steering",
    ),
    "pyflyt": _Suite(
        "dreamworld.envs.pyflyt:make",
        ("PyFlyt", "pybullet", "numba"),
        "pyflyt",
        ("pyflyt/quadx-hover", "pyflyt/quadx-waypoints", "pyflyt/fixedwing-waypoints"),
        "PyFlyt drones on pybullet: attitude and waypoint vectors or the onboard camera",
        "pip install 'dreamworld[pyflyt]' && pip install --no-deps PyFlyt==0.29.0",
    ),
    "fetch": _Suite(
        "dreamworld.envs.fetch:make",
        ("gymnasium_robotics", "mujoco"),
        "fetch",
        ("fetch/reach", "fetch/push-dense", "fetch/pick-and-place"),
        "Gymnasium-Robotics Fetch arm (MuJoCo): goal-conditioned state or pixels, log_success",
    ),
    "panda": _Suite(
        "dreamworld.envs.panda:make",
        ("panda_gym", "pybullet"),
        "panda",
        ("panda/reach", "panda/push-dense", "panda/stack"),
        "panda-gym Franka arm (pybullet): goal-conditioned state or pixels, log_success",
    ),
}


@dataclass(frozen=True)
class SuiteInfo:
    """One row of ``dreamworld envs``.

    Attributes:
        name: Suite name, the prefix of its ids.
        examples: Example ids.
        description: One line on what the suite is.
        installed: Whether its packages are importable (checked without importing them).
        install: The command that installs them.
    """

    name: str
    examples: tuple[str, ...]
    description: str
    installed: bool
    install: str


def make_env(
    name: str,
    *,
    obs: str = "auto",
    size: int = 64,
    repeat: int | None = None,
    time_limit: int | None = None,
    gray: bool = False,
    noops: int = 30,
    sticky: float = 0.0,
    camera: int | None = None,
    discrete: bool = False,
    throttle: bool = False,
    patience: int | None = None,
    **kwargs: Any,
) -> Env:
    """Builds one environment meeting the contract of :mod:`dreamworld.envs.base`.

    Args:
        name: ``gym/<id>``, ``gym/<module>:<id>``, ``dmc/<domain>-<task>``, ``atari/<game>``,
            ``carracing``, ``vizdoom/<scenario>``, ``highway/<scene>``, ``pyflyt/<task>``,
            ``fetch/<task>`` or ``panda/<task>`` (table in the module docstring).
        obs: ``"auto"`` (the suite's natural observation: dmc and robotics state, Atari and
            CarRacing pixels, Gymnasium whatever its space holds), ``"image"``, ``"vector"`` or
            ``"both"``.
        size: Side of square images in pixels.
        repeat: Action repeat; None for the suite's default (Atari 4, dmc 2, others 1).
        time_limit: Agent steps (after repeat) per episode; None keeps the environment's own
            (dmc 1000 simulator steps, Gymnasium the registered limit, Atari 108,000 frames).
        gray: One-channel ``(size, size, 1)`` images.
        noops: Atari: most random no-ops at reset.
        sticky: Atari: probability of repeating the previous action.
        camera: dm_control: camera id; None for the default (0, quadruped 2).
        discrete: CarRacing: the 5-action version.
        throttle: CarRacing: two continuous actions, steering and a throttle whose positive half is
            gas and negative half brake (x 0.8, short of locking the wheels), instead of steering, gas
            and brake, whose middle action (gas 0.5, brake 0.5) barely moves the car.
        patience: End an episode as a truncation after this many agent steps in a row without a
            positive reward (for training environments; None never).
        **kwargs: Gymnasium-based suites: extra arguments of ``gymnasium.make``.

    Returns:
        The environment; call ``reset(seed)`` first.

    Raises:
        EnvError: For an unknown suite or task, or an option the environment does not accept.
        MissingDependencyError: If the suite's optional package is not installed.

    Example:
        >>> env = make_env("gym/CartPole-v1")
        >>> obs = env.reset(seed=0)
        >>> obs["vector"].shape, bool(obs["is_first"])
        ((4,), True)
    """
    options = EnvOptions(
        obs, size, repeat, time_limit, gray, noops, sticky, camera, discrete, kwargs, throttle, patience
    )
    suite, _, task = name.partition("/")
    if suite not in _SUITES:
        raise unknown_id("environment suite", suite, _SUITES)
    env = _resolve(_SUITES[suite].entry)(task, options)
    return Patience(env, patience) if patience else env


def action_repeat(name: str, repeat: int | None = None) -> int:
    """Environment steps per policy step of environment ``name``: ``repeat`` (``env.repeat``), or the
    suite's default when it is ``None`` (DeepMind Control 2, Atari 4, others 1). Imports nothing.

    Example:
        >>> action_repeat("dmc/walker-walk"), action_repeat("dmc/walker-walk", 4), action_repeat("carracing")
        (2, 4, 1)
    """
    if repeat:
        return int(repeat)
    suite = _SUITES.get(name.partition("/")[0])
    return suite.repeat if suite else 1


def check_env_id(name: str) -> None:
    """Checks an environment id without building the environment: its suite, and for ``gym/`` and
    ``dmc/`` its task (the command line does this before it loads torch, so a misspelt id fails fast).

    Raises:
        EnvError: The suite or task is unknown (with the closest ids).
        MissingDependencyError: The suite's optional package is not installed.
    """
    suite, _, task = name.partition("/")
    if suite not in _SUITES:
        raise unknown_id("environment suite", suite, _SUITES)
    if suite == "gym":
        from dreamworld.envs.gym_suite import find_spec

        find_spec(task, name)
    elif suite == "dmc":
        from dreamworld.envs.dmc import check_task

        check_task(task)


def make_vector_env(
    name: str, num_envs: int, parallel: str = "auto", nonfinite: str = "error", **options: Any
) -> VectorEnv:
    """Builds ``num_envs`` copies of an environment stepped together.

    Args:
        name: Environment id, as for :func:`make_env`.
        num_envs: Number of copies.
        parallel: ``"process"`` (one worker process each), ``"thread"``, ``"serial"``, or ``"auto"``
            (one environment in this process, several in worker processes).
        nonfinite: NaN or infinity in an observation or reward: ``"error"`` or ``"replace"`` (by 0).
        **options: Keyword options of :func:`make_env`.

    Returns:
        The vector environment; ``reset(seed)`` gives copy ``i`` the seed ``seed + i``.

    Example:
        >>> with make_vector_env("gym/CartPole-v1", 2, parallel="serial") as envs:
        ...     envs.reset(seed=0)["vector"].shape
        (2, 4)
    """
    factory = functools.partial(make_env, name, **options)
    return VectorEnv([factory] * num_envs, parallel, nonfinite)


def suite_table() -> list[SuiteInfo]:
    """The suites, whether each is installed, and how to install it (imports no simulator)."""
    rows = []
    for name, suite in _SUITES.items():
        installed = all(importlib.util.find_spec(module) is not None for module in suite.modules)
        default = f"pip install 'dreamworld[{suite.extra}]'" if suite.extra else "pip install dreamworld"
        install = suite.install or default
        rows.append(SuiteInfo(name, suite.examples, suite.description, installed, install))
    return rows


def _resolve(entry: str) -> Callable[[str, EnvOptions], Env]:
    module, _, attribute = entry.partition(":")
    return getattr(importlib.import_module(module), attribute)
