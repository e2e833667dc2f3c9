"""The environment contract every suite meets.

An :class:`Env` returns observations as a dict of numpy values:

=================  ===========================  ================================================
key                type                         meaning
=================  ===========================  ================================================
``image``          uint8 ``(H, W, C)``          pixels, when the task has them (``obs`` option)
``vector``         float32 ``(D,)``             low-dimensional state, when the task has it
``reward``         float32 ``()``               reward of the transition into this observation
``is_first``       bool ``()``                  first observation of an episode (reward is 0)
``is_last``        bool ``()``                  last observation: the episode ended here
``is_terminal``    bool ``()``                  ended by the task (no value beyond); a time-limit
                                                truncation is ``is_last`` without ``is_terminal``
``log_<name>``     float32 ``()``               optional per-step statistics (``log_success``)
=================  ===========================  ================================================

Actions are either an integer index into ``act_space.n`` (a one-hot vector is accepted too) or a
float32 vector in ``[-1, 1]``, rescaled by the suite to the simulator's bounds.

Stepping follows the reset-by-step convention: ``reset()`` returns the first observation;
``step()`` after an ``is_last`` observation raises, and :class:`~dreamworld.envs.parallel.VectorEnv`
resets such an environment automatically on its next step instead of stepping it.

An environment may also offer ``get_state()`` and ``set_state(state)``: a snapshot of the episode in
flight as plain data (dicts, lists, numbers, numpy arrays), from which an environment of the same id,
freshly made, continues exactly as the original would (same observations, same random draws).
Training checkpoints hold these snapshots, so a resumed run goes on inside the same episodes.
``get_state()`` returns None where the simulator cannot be captured. Supported: classic-control and
MuJoCo Gymnasium tasks and DeepMind Control (physics, task randomness and the model's positions);
Box2D (CarRacing) and Atari resume at the next reset instead.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

OBS_FLAGS = ("is_first", "is_last", "is_terminal")
"""Keys every observation carries besides ``reward`` and the payload (``image`` / ``vector``)."""


@runtime_checkable
class Env(Protocol):
    """A single environment following the observation contract of this module.

    Attributes:
        obs_space: One gymnasium space per observation key, including ``reward`` and the flags.
        act_space: ``gym.spaces.Discrete`` or a ``gym.spaces.Box`` with bounds ``[-1, 1]``.
    """

    obs_space: dict[str, gym.spaces.Space]
    act_space: gym.spaces.Space

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Starts an episode; the observation has ``is_first=True`` and ``reward=0``."""
        ...

    def step(self, action: Any) -> dict[str, np.ndarray]:
        """Applies one action (after action repeat) and returns the next observation."""
        ...

    def render(self) -> np.ndarray | None:
        """An RGB frame ``(H, W, 3)`` uint8 of the current state for videos, or None."""
        ...

    def close(self) -> None:
        """Releases the simulator."""
        ...


def flag_spaces() -> dict[str, gym.spaces.Space]:
    """The spaces of ``reward`` and the episode flags, shared by every suite."""
    spaces: dict[str, gym.spaces.Space] = {
        "reward": gym.spaces.Box(-np.inf, np.inf, (), np.float32),
    }
    for key in OBS_FLAGS:
        spaces[key] = gym.spaces.Box(0, 1, (), bool)
    return spaces


def make_obs(
    payload: dict[str, np.ndarray],
    reward: float = 0.0,
    is_first: bool = False,
    is_last: bool = False,
    is_terminal: bool = False,
) -> dict[str, np.ndarray]:
    """Assembles one observation dict of the contract from a payload and the step's outcome.

    Args:
        payload: ``image`` and/or ``vector`` (and optional ``log_*``) arrays.
        reward: Reward of the transition into this observation.
        is_first: Whether this is the first observation of an episode.
        is_last: Whether the episode ends here (termination or truncation).
        is_terminal: Whether the task terminated (implies ``is_last``).

    Returns:
        The observation with ``reward`` as a float32 and the flags as bool 0-d arrays.

    Example:
        >>> obs = make_obs({"vector": np.zeros(3, np.float32)}, is_first=True)
        >>> bool(obs["is_first"]), float(obs["reward"])
        (True, 0.0)
    """
    assert is_last or not is_terminal, "is_terminal implies is_last"
    # 0-d arrays rather than numpy scalars: they are the ndarrays the hints promise. The flags are
    # shared read-only constants, which halves the cost of this function (it runs every step).
    return {
        **payload,
        "reward": np.array(reward, np.float32),
        "is_first": _BOOLS[bool(is_first)],
        "is_last": _BOOLS[bool(is_last)],
        "is_terminal": _BOOLS[bool(is_terminal)],
    }


def _constant(value: bool) -> np.ndarray:
    array = np.array(value)
    array.flags.writeable = False
    return array


_BOOLS = {False: _constant(False), True: _constant(True)}
