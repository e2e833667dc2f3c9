"""What every suite shares: the episode loop, action conversion and image resizing.

A suite adapts its simulator to the small :class:`Simulator` protocol (one raw step, no episode
bookkeeping); :class:`SimulatorEnv` turns that into an :class:`~dreamworld.envs.base.Env` with
action repeat, a time limit, actions in the contract's form and the contract's flags.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from dreamworld.envs.base import flag_spaces, make_obs
from dreamworld.errors import EnvError

# ITU-R BT.601 luma, the weights of cv2.COLOR_RGB2GRAY that Atari preprocessing uses too.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class Simulator(Protocol):
    """One simulator as a suite exposes it: raw steps, no repeat, no limit, no flags.

    Attributes:
        obs_space: Spaces of the payload keys (``image`` and/or ``vector``).
        native_act_space: The simulator's own ``Discrete`` or bounded ``Box`` action space.
    """

    obs_space: dict[str, gym.spaces.Space]
    native_act_space: gym.spaces.Space

    def reset(self, seed: int | None) -> None:
        """Starts an episode, seeding the simulator's randomness when ``seed`` is given."""
        ...

    def step(self, action: Any) -> tuple[float, bool, bool]:
        """Applies a native action once; returns ``(reward, terminated, truncated)``."""
        ...

    def observe(self) -> dict[str, np.ndarray]:
        """The payload of the current state (called once per agent step, after repeat)."""
        ...

    def render(self) -> np.ndarray | None:
        """An RGB uint8 frame of the current state, or None if the simulator cannot draw."""
        ...

    def close(self) -> None:
        """Releases the simulator."""
        ...


class SimulatorEnv:
    """An :class:`~dreamworld.envs.base.Env` around a :class:`Simulator`.

    Action repeat sums the rewards and stops early when the episode ends. The time limit counts
    agent steps (after repeat) and ends the episode as a truncation: ``is_last`` without
    ``is_terminal``; a termination on the same step wins.

    Args:
        sim: The simulator.
        repeat: How often each action is applied.
        time_limit: Agent steps per episode, or None for the simulator's own limit only.

    Example:
        >>> env = SimulatorEnv(sim, repeat=2, time_limit=500)  # doctest: +SKIP
        >>> obs = env.reset(seed=0)  # doctest: +SKIP
    """

    def __init__(self, sim: Simulator, repeat: int = 1, time_limit: int | None = None) -> None:
        self._sim = sim
        self._repeat = repeat
        self._time_limit = time_limit
        self.act_space, self._convert = action_converter(sim.native_act_space)
        self.obs_space: dict[str, gym.spaces.Space] = {**sim.obs_space, **flag_spaces()}
        self._steps = 0
        self._done = True
        self._payload: dict[str, np.ndarray] = {}

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Starts an episode; ``seed`` seeds the simulator and ``act_space`` sampling."""
        if seed is not None:
            self.act_space.seed(seed)
        self._sim.reset(seed)
        self._steps = 0
        self._done = False
        self._payload = self._sim.observe()
        return make_obs(self._payload, is_first=True)

    def step(self, action: Any) -> dict[str, np.ndarray]:
        """Applies ``action`` ``repeat`` times (fewer if the episode ends) and observes once."""
        if self._done:
            raise RuntimeError("step() called after is_last (or before reset()); call reset()")
        native = self._convert(action)
        reward = 0.0
        terminated = truncated = False
        for _ in range(self._repeat):
            step_reward, terminated, truncated = self._sim.step(native)
            reward += step_reward
            if terminated or truncated:
                break
        self._steps += 1
        if self._time_limit is not None and self._steps >= self._time_limit:
            truncated = True
        self._done = terminated or truncated
        self._payload = self._sim.observe()
        return make_obs(self._payload, reward, is_last=self._done, is_terminal=terminated)

    def get_state(self) -> dict[str, Any] | None:
        """A snapshot of the episode in flight, or None if the simulator has no ``get_state``."""
        getter = getattr(self._sim, "get_state", None)
        sim_state = getter() if getter is not None else None
        if sim_state is None:
            return None
        return {
            "sim": sim_state,
            "steps": self._steps,
            "done": self._done,
            "payload": dict(self._payload),
            "act_rng": self.act_space.np_random.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continues from a snapshot of :meth:`get_state`."""
        self._sim.set_state(state["sim"])  # type: ignore[attr-defined]
        self._steps, self._done = int(state["steps"]), bool(state["done"])
        self._payload = dict(state["payload"])
        self.act_space.np_random.bit_generator.state = state["act_rng"]

    def show_observation(self, vector: np.ndarray) -> bool:
        """Puts the simulator in the state that an observation ``vector`` describes, for drawing it
        with :meth:`render` (a predicted observation, in the dream page); False when the simulator
        cannot (its observations do not determine its state). The episode cannot go on from it."""
        setter = getattr(self._sim, "show_observation", None)
        return bool(setter(np.asarray(vector, np.float64))) if setter is not None else False

    def render(self) -> np.ndarray | None:
        """The image observation as RGB when there is one, else the simulator's own frame."""
        image = self._payload.get("image")
        if image is None:
            return self._sim.render()
        return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image

    def close(self) -> None:
        """Releases the simulator."""
        self._sim.close()


class Patience:
    """Ends an episode, as a truncation (``is_last`` without ``is_terminal``), after ``steps`` agent
    steps in a row without a positive reward: a car on the grass, a robot stuck against a wall stop
    filling the replay with steps that teach nothing (the value bootstraps past the cut, so nothing is
    learned about ending there). Training environments only (``env.patience``): evaluation runs in
    full. Everything else is the wrapped environment's.

    Example:
        >>> env = Patience(make_env("carracing"), 100)  # doctest: +SKIP
    """

    def __init__(self, env: Any, steps: int) -> None:
        self.env, self.steps, self.idle = env, steps, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        self.idle = 0
        return self.env.reset(seed)

    def step(self, action: Any) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = self.env.step(action)
        self.idle = 0 if obs["reward"] > 0 else self.idle + 1
        if self.idle >= self.steps and not obs["is_last"]:
            obs = {**obs, "is_last": np.asarray(True)}
        return obs

    def get_state(self) -> dict[str, Any] | None:
        getter = getattr(self.env, "get_state", None)
        state = getter() if getter is not None else None
        return None if state is None else {"env": state, "idle": self.idle}

    def set_state(self, state: dict[str, Any]) -> None:
        self.env.set_state(state["env"])
        self.idle = int(state["idle"])


def action_converter(space: gym.spaces.Space) -> tuple[gym.spaces.Space, Callable[[Any], Any]]:
    """The contract's action space for a native one, and the function mapping actions back.

    Discrete actions are an index (a one-hot vector is accepted too) shifted by the space's
    ``start``; continuous ones are clipped to ``[-1, 1]`` and rescaled linearly to the bounds.

    Args:
        space: A ``Discrete`` space, or a ``Box`` with finite bounds.

    Returns:
        ``(act_space, convert)`` where ``convert(action)`` gives the native action.

    Raises:
        EnvError: For other spaces or unbounded boxes.

    Example:
        >>> act_space, convert = action_converter(gym.spaces.Box(0.0, 4.0, (1,)))
        >>> convert(np.array([0.5], np.float32))
        array([3.], dtype=float32)
    """
    if isinstance(space, gym.spaces.Discrete):
        start = int(space.start)

        def to_index(action: Any) -> int:
            if isinstance(action, int | np.integer):
                return int(action) + start
            action = np.asarray(action)
            return int(action.argmax() if action.ndim else action) + start

        return gym.spaces.Discrete(int(space.n)), to_index
    if isinstance(space, gym.spaces.Box) and space.is_bounded("both"):
        shape = space.shape
        scale = ((space.high - space.low) / 2).astype(space.dtype)
        shift = ((space.high + space.low) / 2).astype(space.dtype)

        def rescale(action: Any) -> np.ndarray:
            action = np.asarray(action)
            if action.shape != shape:
                raise ValueError(f"action of shape {action.shape}; expected {shape}")
            return shift + scale * np.clip(action, -1, 1).astype(space.dtype)

        return gym.spaces.Box(-1.0, 1.0, shape, np.float32), rescale
    raise EnvError(f"action space {space} is not supported: need Discrete or a bounded Box")


def resize_image(frame: np.ndarray, size: int, gray: bool = False) -> np.ndarray:
    """Resizes an RGB frame to ``size x size`` by area averaging, optionally to gray.

    Args:
        frame: ``(H, W, 3)`` or ``(H, W, 1)`` uint8.
        size: Output side in pixels.
        gray: Whether to convert to one luma channel.

    Returns:
        A new ``(size, size, 3)`` uint8 array, or ``(size, size, 1)`` if ``gray`` or the input
        is gray.
    """
    resized = frame.shape[:2] != (size, size)
    if resized:
        frame = _resizer()(frame, size)
        if frame.ndim == 2:
            frame = frame[..., None]
    if gray and frame.shape[-1] == 3:
        return (frame @ _LUMA + 0.5).astype(np.uint8)[..., None]
    # A fresh array either way: simulators may reuse the buffer they return.
    return frame if resized else frame.copy()


@functools.cache
def _resizer() -> Callable[[np.ndarray, int], np.ndarray]:
    """cv2 where installed (the box2d and atari extras bring it), else Pillow (via matplotlib)."""
    try:
        import cv2
    except ModuleNotFoundError:
        from PIL import Image

        def resize_pil(frame: np.ndarray, size: int) -> np.ndarray:
            image = Image.fromarray(frame.squeeze(-1) if frame.shape[-1] == 1 else frame)
            return np.asarray(image.resize((size, size), Image.Resampling.BOX))

        return resize_pil

    def resize_cv2(frame: np.ndarray, size: int) -> np.ndarray:
        return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)

    return resize_cv2
