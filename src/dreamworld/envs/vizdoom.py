"""ViZDoom scenarios: ``vizdoom/<scenario>``, e.g. ``vizdoom/take-cover`` (World Models' dream task).

The scenarios bundled with the ``vizdoom`` package run headless. Actions are discrete: 0 does
nothing and ``i >= 1`` holds the scenario's ``i``-th button for the step, so TakeCover has
{stay, left, right}, the three choices of the World Models controller. Frames are the RGB screen
without the status bar, resized to ``size``. TakeCover gives +1 per tic alive and ends at death (a
termination); the paper caps episodes at 2100 frames, the default time limit here (a truncation).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dreamworld.envs.base import Env
from dreamworld.envs.options import EnvOptions, import_optional, unknown_id
from dreamworld.envs.wrappers import SimulatorEnv, resize_image

DEFAULT_LIMIT = {"take_cover": 2100}
"""Agent steps per episode where a scenario has a customary cap (World Models' TakeCover)."""


def make(task: str, options: EnvOptions) -> Env:
    """Builds ``vizdoom/<scenario>`` (dashes or underscores: ``take-cover``, ``defend_the_center``).

    Raises:
        EnvError: If the scenario is unknown or ``obs`` asks for a vector.
        MissingDependencyError: If vizdoom is missing (extra ``vizdoom``).
    """
    name = f"vizdoom/{task}"
    options.check_used(name, set())
    if options.obs not in ("auto", "image"):
        from dreamworld.errors import EnvError

        raise EnvError(f"environment '{name}' has image observations only, not obs='{options.obs}'")
    vizdoom = import_optional("vizdoom", "vizdoom", f"environment '{name}'")
    scenarios = sorted(path.stem for path in Path(vizdoom.scenarios_path).glob("*.cfg"))
    scenario = task.replace("-", "_")
    if scenario not in scenarios:
        raise unknown_id("ViZDoom scenario", task, [s.replace("_", "-") for s in scenarios])
    limit = options.time_limit or DEFAULT_LIMIT.get(scenario)
    return SimulatorEnv(DoomSimulator(vizdoom, scenario, options), options.repeat or 1, limit)


class DoomSimulator:
    """A ViZDoom game as a :class:`~dreamworld.envs.wrappers.Simulator`."""

    def __init__(self, vizdoom: Any, scenario: str, options: EnvOptions) -> None:
        game = vizdoom.DoomGame()
        game.load_config(str(Path(vizdoom.scenarios_path) / f"{scenario}.cfg"))
        # The engine writes its settings file into the working directory unless told otherwise.
        game.set_doom_config_path(str(Path(tempfile.gettempdir()) / "dreamworld-vizdoom.ini"))
        game.set_window_visible(False)
        game.set_sound_enabled(False)
        game.set_screen_format(vizdoom.ScreenFormat.RGB24)
        game.set_screen_resolution(vizdoom.ScreenResolution.RES_160X120)
        game.set_render_hud(False)
        game.set_mode(vizdoom.Mode.PLAYER)
        game.init()
        self._game = game
        self._buttons = game.get_available_buttons_size()
        self._size, self._gray = options.size, options.gray
        depth = 1 if options.gray else 3
        self.obs_space: dict[str, gym.spaces.Space] = {
            "image": gym.spaces.Box(0, 255, (options.size, options.size, depth), np.uint8)
        }
        self.native_act_space: gym.spaces.Space = gym.spaces.Discrete(self._buttons + 1)
        self._frame = np.zeros((120, 160, 3), np.uint8)

    def reset(self, seed: int | None) -> None:
        """Starts an episode; a seed seeds the game's randomness (monster behaviour)."""
        if seed is not None:
            self._game.set_seed(int(seed) % 2**31)
        self._game.new_episode()
        self._grab()

    def step(self, action: Any) -> tuple[float, bool, bool]:
        """One tic with button ``action - 1`` held (none for 0)."""
        buttons = [0] * self._buttons
        if int(action) > 0:
            buttons[int(action) - 1] = 1
        reward = float(self._game.make_action(buttons, 1))
        terminated = bool(self._game.is_episode_finished()) and bool(self._game.is_player_dead())
        truncated = bool(self._game.is_episode_finished()) and not terminated
        if not self._game.is_episode_finished():
            self._grab()
        return reward, terminated, truncated

    def observe(self) -> dict[str, np.ndarray]:
        """The last screen, resized."""
        return {"image": resize_image(self._frame, self._size, self._gray)}

    def render(self) -> np.ndarray | None:
        """The last screen at full resolution."""
        return self._frame.copy()

    def close(self) -> None:
        """Ends the game."""
        self._game.close()

    def _grab(self) -> None:
        state = self._game.get_state()
        if state is not None:
            self._frame = np.ascontiguousarray(state.screen_buffer)
