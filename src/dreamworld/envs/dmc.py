"""DeepMind Control Suite tasks: ``dmc/<domain>-<task>``, e.g. ``dmc/walker-walk``.

``vector`` is every observation array flattened and concatenated in sorted key order (the suite's
proprioceptive state); ``image`` is rendered from a fixed camera, as in Dreamer.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from dreamworld.envs import action_repeat
from dreamworld.envs.base import Env
from dreamworld.envs.options import EnvOptions, import_optional, unknown_id
from dreamworld.envs.rendering import configure_mujoco_gl, fast_rendering
from dreamworld.envs.wrappers import SimulatorEnv, resize_image
from dreamworld.errors import EnvError

DEFAULT_REPEAT = action_repeat("dmc/")  # the suite's default, from the registry
"""Dreamer's action repeat on the Control Suite."""

# Model fields that tasks change when an episode starts (reacher's target, finger's goal, colours).
_MODEL_FIELDS = (
    "body_pos", "body_quat", "geom_pos", "geom_quat", "geom_size", "geom_rgba",
    "site_pos", "site_quat", "site_size", "site_rgba", "mat_rgba",
)  # fmt: skip

# Dreamer's choice: quadruped's camera 0 is too far away to see the body.
_DEFAULT_CAMERA = {"quadruped": 2}


def check_task(task: str) -> Any:
    """Checks that ``<domain>-<task>`` is a dm_control task; returns ``dm_control.suite``."""
    configure_mujoco_gl()
    suite = import_optional("dm_control.suite", "dmc", f"environment 'dmc/{task}'")
    domain, _, task_name = task.partition("-")
    if (domain, task_name) not in suite.ALL_TASKS:
        raise unknown_id("dm_control task", task, (f"{d}-{t}" for d, t in suite.ALL_TASKS))
    return suite


def make(task: str, options: EnvOptions) -> Env:
    """Builds ``dmc/<task>``.

    Args:
        task: ``<domain>-<task>``, e.g. ``"walker-walk"`` or ``"ball_in_cup-catch"``.
        options: Validated options; ``obs="auto"`` means ``"vector"``.

    Returns:
        The environment. Its own limit (1000 simulator steps for most tasks) ends episodes
        unless ``time_limit`` replaces it.

    Raises:
        EnvError: If the task is unknown or the camera does not exist.
        MissingDependencyError: If dm_control or mujoco is missing (extra ``dmc``).
    """
    name = f"dmc/{task}"
    options.check_used(name, {"camera"})
    suite = check_task(task)
    domain, _, task_name = task.partition("-")
    # Without our limit the suite's own ends episodes (as a truncation: discount stays 1).
    limit = {"time_limit": float("inf")} if options.time_limit else None
    env = suite.load(domain, task_name, task_kwargs=limit)
    camera = _DEFAULT_CAMERA.get(domain, 0) if options.camera is None else options.camera
    sim = DMCSimulator(env, options, camera, name)
    return SimulatorEnv(sim, options.repeat or DEFAULT_REPEAT, options.time_limit)


class DMCSimulator:
    """A dm_control environment as a :class:`~dreamworld.envs.wrappers.Simulator`.

    Args:
        env: A ``dm_control.rl.control.Environment``.
        options: ``obs``, ``size`` and ``gray``.
        camera: Camera id to render from.
        name: The dreamworld id, for messages.
    """

    def __init__(self, env: Any, options: EnvOptions, camera: int, name: str) -> None:
        from dm_control import mujoco

        self._env = env
        physics = env.physics
        if not -1 <= camera < physics.model.ncam:
            raise EnvError(f"environment '{name}' has cameras -1..{physics.model.ncam - 1}, not {camera}")
        spec = env.action_spec()
        self.native_act_space: gym.spaces.Space = gym.spaces.Box(
            np.broadcast_to(spec.minimum, spec.shape),
            np.broadcast_to(spec.maximum, spec.shape),
            spec.shape,
            spec.dtype,
        )
        self._keys = sorted(env.observation_spec())
        self._vector = options.obs in ("auto", "vector", "both")
        self._image = options.obs in ("image", "both")
        self._size = options.size
        self._gray = options.gray
        self.obs_space: dict[str, gym.spaces.Space] = {}
        if self._image:
            depth = 1 if options.gray else 3
            self.obs_space["image"] = gym.spaces.Box(0, 255, (options.size, options.size, depth), np.uint8)
        if self._vector:
            specs = env.observation_spec()
            dim = sum(int(np.prod(specs[key].shape)) for key in self._keys)
            self.obs_space["vector"] = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self._domain = name.removeprefix("dmc/").split("-")[0]
        fast_rendering(physics.model, options.size)
        # One camera for the whole run: physics.render() builds a new one (and its MjvScene)
        # per call, which halves the frame rate at 64x64 (docs/benchmarks.md).
        self._camera = mujoco.Camera(physics, options.size, options.size, camera)
        self._step: Any = None

    def reset(self, seed: int | None) -> None:
        """Resets; a seed re-seeds the task's random state, which draws the initial state."""
        if seed is not None:
            self._env.task.random.seed(seed)
        self._step = self._env.reset()

    def step(self, action: Any) -> tuple[float, bool, bool]:
        """One control step; a discount of 0 at the end marks a termination."""
        self._step = self._env.step(action)
        reward = float(self._step.reward or 0.0)
        if not self._step.last():
            return reward, False, False
        terminated = bool(self._step.discount == 0)
        return reward, terminated, not terminated

    def observe(self) -> dict[str, np.ndarray]:
        """The proprioceptive vector and/or the camera image of the current state."""
        payload: dict[str, np.ndarray] = {}
        if self._image:
            # The camera reuses its buffer; resize_image returns a copy (at the same size).
            payload["image"] = resize_image(self._camera.render(), self._size, self._gray)
        if self._vector:
            observation = self._step.observation
            payload["vector"] = np.concatenate(
                [np.asarray(observation[key], np.float32).reshape(-1) for key in self._keys]
            )
        return payload

    def get_state(self) -> dict[str, Any] | None:
        """A snapshot of the episode in flight: physics, task randomness, model positions, counters.

        Model fields that tasks move at reset (targets, colours) are part of it, so a restored
        episode sees the same scene.
        """
        if self._step is None:
            return None
        import mujoco

        physics = self._env.physics
        spec = mujoco.mjtState.mjSTATE_INTEGRATION  # all mj_step reads, warm start included
        state = np.empty(mujoco.mj_stateSize(physics.model.ptr, spec), np.float64)
        mujoco.mj_getState(physics.model.ptr, physics.data.ptr, state, spec)
        step = self._step
        return {
            "physics": state,
            "model": {name: getattr(physics.model, name).copy() for name in _MODEL_FIELDS},
            "random": self._env.task.random.get_state(),
            "step_count": int(self._env._step_count),
            "reset_next": bool(self._env._reset_next_step),
            "step": [int(step.step_type), step.reward, step.discount, dict(step.observation)],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continues from a snapshot of :meth:`get_state` (in an environment of the same task)."""
        import dm_env
        import mujoco

        self._env.reset()
        physics = self._env.physics
        for name, value in state["model"].items():
            getattr(physics.model, name)[:] = value
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        mujoco.mj_setState(physics.model.ptr, physics.data.ptr, state["physics"], spec)
        physics.forward()
        self._env.task.random.set_state(tuple(state["random"]))
        self._env._step_count = state["step_count"]
        self._env._reset_next_step = state["reset_next"]
        step_type, reward, discount, observation = state["step"]
        self._step = dm_env.TimeStep(dm_env.StepType(step_type), reward, discount, observation)

    def show_observation(self, vector: np.ndarray) -> bool:
        """Sets the physics state an observation vector describes, where it determines it (cartpole,
        pendulum, the arm of reacher); False for other domains."""
        if self._step is None:
            self.reset(0)
        physics = self._env.physics
        sizes = {key: int(np.prod(spec.shape)) for key, spec in self._env.observation_spec().items()}
        parts, start = {}, 0
        for key in self._keys:
            parts[key] = vector[start : start + sizes[key]]
            start += sizes[key]
        with physics.reset_context():
            if self._domain == "cartpole":
                position = parts["position"]
                physics.data.qpos[:] = [position[0], np.arctan2(position[2], position[1])]
                physics.data.qvel[:] = parts["velocity"]
            elif self._domain == "pendulum":
                cos, sin = parts["orientation"]
                physics.data.qpos[:] = [np.arctan2(sin, cos)]
                physics.data.qvel[:] = parts["velocity"]
            elif self._domain == "reacher":
                physics.data.qpos[:] = parts["position"]
                physics.data.qvel[:] = parts["velocity"]
            else:
                return False
        return True

    def render(self) -> np.ndarray | None:
        """The camera's RGB frame at ``size``."""
        return resize_image(self._camera.render(), self._size)

    def close(self) -> None:
        """Releases the simulator and its rendering context."""
        self._env.close()
        # Now, on this thread: left to garbage collection, the GL context would be freed on
        # whichever thread collects it, which EGL refuses.
        self._env.physics.free()
