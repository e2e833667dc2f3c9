"""Gymnasium environments: ``gym/<id>`` for any registered id, also ``gym/<module>:<id>``.

The adapter here serves the Atari and CarRacing suites as well, which are Gymnasium environments
built with particular options.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from dreamworld.envs.base import Env
from dreamworld.envs.options import EnvOptions, unknown_id
from dreamworld.envs.rendering import configure_mujoco_gl, configure_sdl, fast_rendering
from dreamworld.envs.wrappers import SimulatorEnv, resize_image
from dreamworld.errors import EnvError, MissingDependencyError

Flatten = Callable[[Any], np.ndarray]

SUCCESS = {"is_success": "success"}
"""``info['is_success']`` as ``log_success``: what goal-conditioned (robotics) environments report."""


def make(task: str, options: EnvOptions) -> Env:
    """Builds ``gym/<task>``; ``options.kwargs`` go to ``gymnasium.make``.

    Args:
        task: A registered id such as ``"CartPole-v1"``, or ``"module:Id"`` to import the module
            that registers ``Id`` first.
        options: Validated options.

    Returns:
        The environment.

    Raises:
        EnvError: If the id is unknown or the module cannot be imported.
        MissingDependencyError: If the environment needs a package that is not installed.
    """
    name = f"gym/{task}"
    options.check_used(name, {"kwargs"})
    env = make_gym(find_spec(task, name), options, name)
    info_keys = SUCCESS if is_goal_conditioned(env.observation_space) else None
    sim = GymSimulator(env, options, name, info_keys)
    return SimulatorEnv(sim, options.repeat or 1, options.time_limit)


def is_goal_conditioned(space: gym.spaces.Space) -> bool:
    """Whether observations follow the goal-conditioned convention of Gymnasium-Robotics.

    Such environments (a Dict with ``observation``, ``achieved_goal`` and ``desired_goal``) report
    ``info['is_success']``, which then becomes ``log_success``.
    """
    return isinstance(space, gym.spaces.Dict) and {"achieved_goal", "desired_goal"} <= set(space.spaces)


def make_gym(spec: gym.envs.registration.EnvSpec, options: EnvOptions, name: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` with rendering to arrays, and our time limit replacing its own.

    Args:
        spec: The registered environment.
        options: ``time_limit`` (which disables the registered limit) and ``kwargs``.
        name: The dreamworld id, for messages.
        **kwargs: Arguments for the environment; ``options.kwargs`` override them.

    Returns:
        The Gymnasium environment.
    """
    configure_mujoco_gl()
    configure_sdl()
    kwargs = {**kwargs, **options.kwargs}
    try:
        if "render_mode" not in kwargs and "rgb_array" in _render_modes(spec):
            kwargs["render_mode"] = "rgb_array"
        # -1 tells gymnasium.make to add no TimeLimit; SimulatorEnv counts agent steps instead.
        env = gym.make(spec, max_episode_steps=-1 if options.time_limit else None, **kwargs)
    except gym.error.DependencyNotInstalled as error:
        message = " ".join(str(error).split())
        raise MissingDependencyError(f"environment '{name}' needs a missing package: {message}") from None
    except TypeError as error:
        if not options.kwargs:
            raise
        raise EnvError(f"environment '{name}' rejected kwargs {dict(options.kwargs)}: {error}") from None
    _tune_mujoco(env, options.size)
    return env


class GymSimulator:
    """A Gymnasium environment as a :class:`~dreamworld.envs.wrappers.Simulator`.

    Observations are sorted into the payload: uint8 ``(H, W, 1 or 3)`` entries become ``image``
    (resized, channels concatenated if several), all other entries are flattened into
    ``vector``. An ``image`` the environment does not provide is rendered (``rgb_array``; an
    alpha channel is dropped). Entries of ``info`` named in ``info_keys`` become float32 scalars
    ``log_<name>``, 0 while the environment has not reported them (e.g. at reset).

    Args:
        env: The environment, made with ``render_mode="rgb_array"`` if it must render.
        options: ``obs``, ``size`` and ``gray``.
        name: The dreamworld id, for messages.
        info_keys: ``{info key: log name}``, e.g. :data:`SUCCESS`; None for none.
    """

    def __init__(
        self, env: gym.Env, options: EnvOptions, name: str, info_keys: Mapping[str, str] | None = None
    ) -> None:
        self._env = env
        self._size = options.size
        self._gray = options.gray
        self.native_act_space = env.action_space
        space = env.observation_space
        parts: dict[str | None, gym.spaces.Space] = {None: space}
        if isinstance(space, gym.spaces.Dict):
            parts = {key: part for key, part in space.spaces.items()}
        images = [key for key, part in parts.items() if _is_image(part)]
        vectors = sorted((key for key in parts if key not in images), key=str)
        mode = options.obs
        want_image = mode in ("image", "both") or (mode == "auto" and bool(images))
        want_vector = mode in ("vector", "both") or (mode == "auto" and bool(vectors))
        if want_vector and not vectors:
            raise EnvError(f"environment '{name}' has no vector observation for obs='{mode}'")
        if want_image and not images and env.render_mode != "rgb_array":
            raise EnvError(f"environment '{name}' has no image observation and cannot render")
        self._images = images if want_image else []
        self._render_image = want_image and not images
        self._vectors = [(key, *_flattener(parts[key])) for key in vectors] if want_vector else []
        self.obs_space: dict[str, gym.spaces.Space] = {}
        if want_image:
            channels = [_shape(parts[key])[-1] for key in images] if images else [3]
            depth = len(channels) if self._gray else sum(channels)
            self.obs_space["image"] = gym.spaces.Box(0, 255, (self._size, self._size, depth), np.uint8)
        if self._vectors:
            dim = sum(part_dim for _, _, part_dim in self._vectors)
            self.obs_space["vector"] = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self._info_keys = {key: f"log_{log}" for key, log in (info_keys or {}).items()}
        for log in self._info_keys.values():
            self.obs_space[log] = gym.spaces.Box(-np.inf, np.inf, (), np.float32)
        self._logs: dict[str, np.ndarray] = {}
        self._obs: Any = None

    def reset(self, seed: int | None) -> None:
        """Resets; a seed also seeds the native action space (for its ``sample()``)."""
        self._obs, info = self._env.reset(seed=seed)
        self._read(info)
        if seed is not None:
            self._env.action_space.seed(seed)

    def step(self, action: Any) -> tuple[float, bool, bool]:
        """One ``env.step``; the observation (and the info keys) are kept for :meth:`observe`."""
        self._obs, reward, terminated, truncated, info = self._env.step(action)
        self._read(info)
        return float(reward), bool(terminated), bool(truncated)

    def observe(self) -> dict[str, np.ndarray]:
        """The payload of the last observation (rendering it if needed)."""
        payload: dict[str, np.ndarray] = {}
        if self._render_image:
            payload["image"] = resize_image(self._frame(), self._size, self._gray)
        elif self._images:
            frames = [resize_image(self._part(key), self._size, self._gray) for key in self._images]
            payload["image"] = frames[0] if len(frames) == 1 else np.concatenate(frames, -1)
        if len(self._vectors) == 1:  # the common case, kept short: CartPole steps in ~10 us
            key, flatten, _ = self._vectors[0]
            payload["vector"] = flatten(self._part(key))
        elif self._vectors:
            payload["vector"] = np.concatenate(
                [flatten(self._part(key)) for key, flatten, _ in self._vectors]
            )
        if self._logs:
            payload.update(self._logs)
        return payload

    def get_state(self) -> dict[str, Any] | None:
        """A snapshot of the episode in flight (see :mod:`dreamworld.envs.base`), or None.

        Supported: environments that define ``get_state()`` / ``set_state(state)`` themselves
        (returning plain data), Gymnasium's MuJoCo tasks and its classic-control tasks.
        """
        env: Any = self._env.unwrapped
        if self._obs is None:
            return None
        if callable(getattr(env, "get_state", None)) and callable(getattr(env, "set_state", None)):
            sim: dict[str, Any] = {"own": env.get_state()}
        elif _is_mujoco(env):
            import mujoco

            spec = mujoco.mjtState.mjSTATE_INTEGRATION  # all mj_step reads, warm start included
            state = np.empty(mujoco.mj_stateSize(env.model, spec), np.float64)
            mujoco.mj_getState(env.model, env.data, state, spec)
            sim = {"mujoco": state}
        elif type(env).__module__.startswith("gymnasium.envs.classic_control"):
            extras = {name: getattr(env, name) for name in _CLASSIC_EXTRAS if hasattr(env, name)}
            sim = {"state": np.array(env.state), "extras": extras}
        else:
            return None
        return {
            "sim": sim,
            "obs": self._obs,
            "np_random": env.np_random.bit_generator.state,
            "elapsed": [getattr(layer, "_elapsed_steps", None) for layer in _layers(self._env)],
            "logs": dict(self._logs),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continues from a snapshot of :meth:`get_state` (in an environment of the same id)."""
        self._env.reset()  # wrappers insist on a reset before the first step
        env: Any = self._env.unwrapped
        sim = state["sim"]
        if "own" in sim:
            env.set_state(sim["own"])
        elif "mujoco" in sim:
            import mujoco

            spec = mujoco.mjtState.mjSTATE_INTEGRATION
            mujoco.mj_setState(env.model, env.data, sim["mujoco"], spec)
            mujoco.mj_forward(env.model, env.data)
        else:
            env.state = np.array(sim["state"])
            for name, value in sim["extras"].items():
                setattr(env, name, value)
        env.np_random.bit_generator.state = state["np_random"]
        for layer, elapsed in zip(_layers(self._env), state["elapsed"], strict=True):
            if elapsed is not None:
                layer._elapsed_steps = elapsed  # type: ignore[attr-defined]
        self._obs = state["obs"]
        self._logs = dict(state.get("logs", {}))

    def show_observation(self, vector: np.ndarray) -> bool:
        """Sets the state an observation vector describes: classic control (CartPole, Pendulum,
        Acrobot, MountainCar), and MuJoCo tasks whose observation is ``qpos`` (less the first, forward
        position, which is then kept) and ``qvel``. False for other environments."""
        env: Any = self._env.unwrapped
        if self._obs is None:
            self._env.reset(seed=0)
        to_state = _CLASSIC_STATES.get(type(env).__name__)
        if to_state is not None and type(env).__module__.startswith("gymnasium.envs.classic_control"):
            env.state = to_state(vector)
            return True
        if _is_mujoco(env):
            nq, nv = env.model.nq, env.model.nv
            qpos = np.array(env.data.qpos)
            if len(vector) == nq + nv:
                qpos[:] = vector[:nq]
            elif len(vector) == nq - 1 + nv:
                qpos[1:] = vector[: nq - 1]
            else:
                return False
            env.set_state(qpos, vector[-nv:])
            return True
        return False

    def render(self) -> np.ndarray | None:
        """The environment's ``rgb_array`` frame resized to ``size``, or None without one."""
        if self._env.render_mode != "rgb_array":
            return None
        return resize_image(self._frame(), self._size)

    def close(self) -> None:
        """Closes the environment."""
        self._env.close()

    def _part(self, key: str | None) -> Any:
        return self._obs if key is None else self._obs[key]

    def _read(self, info: dict[str, Any]) -> None:
        if self._info_keys:
            self._logs = {
                log: np.array(float(info.get(key, 0.0)), np.float32) for key, log in self._info_keys.items()
            }

    def _frame(self) -> np.ndarray:
        frame = self._env.render()
        assert isinstance(frame, np.ndarray), "render_mode='rgb_array' renders arrays"
        # pybullet cameras (PyFlyt) render RGBA.
        return np.ascontiguousarray(frame[..., :3]) if frame.shape[-1] == 4 else frame


_CLASSIC_STATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "CartPoleEnv": lambda v: v[:4].copy(),
    "PendulumEnv": lambda v: np.array([np.arctan2(v[1], v[0]), v[2]]),
    "AcrobotEnv": lambda v: np.array([np.arctan2(v[1], v[0]), np.arctan2(v[3], v[2]), v[4], v[5]]),
    "MountainCarEnv": lambda v: v[:2].copy(),
    "Continuous_MountainCarEnv": lambda v: v[:2].copy(),
}
"""Classic-control observations to the ``state`` their environments draw from."""

_CLASSIC_EXTRAS = ("steps_beyond_terminated", "last_u")  # classic-control state beside ``state``


def _is_mujoco(env: gym.Env) -> bool:
    return hasattr(env, "model") and hasattr(env, "data") and hasattr(env.data, "qpos")


def _layers(env: gym.Env) -> list[gym.Env]:
    """The wrappers around an environment, outermost first, and the environment itself."""
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def task_id(task: str, tasks: dict[str, str], prefix: str, version: str) -> str | None:
    """The Gymnasium id of a robotics task named ``<task>`` or ``<task>-dense``, or None if unknown.

    Example:
        >>> task_id("push-dense", {"push": "Push"}, "Fetch", "v4")
        'FetchPushDense-v4'
    """
    base, dense = (task[: -len("-dense")], "Dense") if task.endswith("-dense") else (task, "")
    return f"{prefix}{tasks[base]}{dense}-{version}" if base in tasks else None


def find_spec(task: str, name: str) -> gym.envs.registration.EnvSpec:
    module, _, env_id = task.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            raise EnvError(f"cannot import module '{module}' of environment '{name}': {error}") from None
    if env_id not in gym.registry:
        raise unknown_id("Gymnasium id", env_id, gym.registry)
    return gym.registry[env_id]


def _render_modes(spec: gym.envs.registration.EnvSpec) -> list[str]:
    """The render modes an environment declares, read from its class without building it."""
    creator: Any = spec.entry_point
    if isinstance(creator, str):
        creator = gym.envs.registration.load_env_creator(creator)
    metadata = getattr(creator, "metadata", None)
    return list(metadata.get("render_modes", ())) if isinstance(metadata, dict) else []


def _tune_mujoco(env: gym.Env, size: int) -> None:
    """Renders Gymnasium's MuJoCo environments at ``size`` directly, without shadows."""
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    if renderer is not None:
        fast_rendering(env.unwrapped.model, size)  # type: ignore[attr-defined]
        renderer.width = renderer.height = size


def _shape(space: gym.spaces.Space) -> tuple[int, ...]:
    assert space.shape is not None, f"{space} has no shape"
    return space.shape


def _is_image(space: gym.spaces.Space) -> bool:
    return (
        isinstance(space, gym.spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) == 3
        and space.shape[-1] in (1, 3)
    )


def _flattener(space: gym.spaces.Space) -> tuple[Flatten, int]:
    """A function flattening values of ``space`` to a fresh float32 vector, and its length."""
    if isinstance(space, gym.spaces.Box):
        return (lambda value: np.array(value, np.float32).reshape(-1)), int(np.prod(space.shape))

    def flatten(value: Any) -> np.ndarray:
        return np.asarray(gym.spaces.flatten(space, value), np.float32)

    return flatten, int(gym.spaces.flatdim(space))
