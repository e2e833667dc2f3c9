"""Shared fixtures."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator

import pytest

# A user's own environments, in a module that registers them when imported (as
# ``gym/<module>:<id>`` expects). Worker processes import it too: spawn passes on sys.path.
_TOY_ENVS = '''
import os

import gymnasium as gym
import numpy as np


class CountEnv(gym.Env):
    """Observes [steps taken, seed noise]; reward 1 per step; terminates after `length` steps."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, length=100, die_at=None, render_mode=None, crash_at=None, nan_at=None):
        self.length, self.die_at, self.render_mode = length, die_at, render_mode
        self.crash_at, self.nan_at = crash_at, nan_at
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.count, self.noise = 0, 0.0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.count, self.noise = 0, float(self.np_random.random())
        return self._obs(), {}

    def step(self, action):
        self.count += 1
        if self.count == self.die_at:
            os._exit(3)
        if self.count == self.crash_at and os.environ.get("RANK", "1") == "1":  # rank 1 of a run
            self._crash()
        obs = self._obs()
        if self.count == self.nan_at:
            obs[1] = np.nan
        return obs, 1.0, self.count >= self.length, False, {}

    def _crash(self):
        raise RuntimeError("simulated crash")

    def render(self):
        return np.full((20, 30, 3), self.count, np.uint8)

    def _obs(self):
        return np.array([self.count, self.noise], np.float32)


class DictEnv(gym.Env):
    """A dict observation: a small image, a position and a discrete mode."""

    def __init__(self):
        self.observation_space = gym.spaces.Dict({
            "pixels": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8),
            "position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            "mode": gym.spaces.Discrete(3),
        })
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action):
        return self._obs(), float(action[0]), False, False, {}

    def _obs(self):
        return {"pixels": np.full((8, 8, 3), 200, np.uint8),
                "position": np.array([0.5, -0.5], np.float32), "mode": 2}


gym.register("DwCount-v0", entry_point=CountEnv, max_episode_steps=50)
gym.register("DwDict-v0", entry_point=DictEnv, max_episode_steps=50)
'''


@pytest.fixture(scope="session")
def toy_envs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The name of an importable module that registers ``DwCount-v0`` and ``DwDict-v0``."""
    folder = tmp_path_factory.mktemp("toy_envs")
    (folder / "dw_toy_envs.py").write_text(textwrap.dedent(_TOY_ENVS))
    sys.path.insert(0, str(folder))
    yield "dw_toy_envs"
    sys.path.remove(str(folder))
