"""Atari 2600 games through ALE: ``atari/<game>`` in snake_case, e.g. ``atari/space_invaders``.

The Atari100k protocol (Kaiser et al. 2020, as used by DreamerV3): 4 frames per action with the
last two max-pooled, up to 30 random no-ops at reset, no sticky actions, the minimal action set,
the loss of a life is not a termination, and episodes are cut after 108,000 frames (30 minutes).
"""

from __future__ import annotations

import gymnasium as gym

from dreamworld.envs import action_repeat
from dreamworld.envs.base import Env
from dreamworld.envs.gym_suite import GymSimulator
from dreamworld.envs.options import EnvOptions, import_optional, unknown_id
from dreamworld.envs.wrappers import SimulatorEnv
from dreamworld.errors import EnvError

DEFAULT_REPEAT = action_repeat("atari/")  # the suite's default, from the registry
"""Frames per agent step (Atari100k)."""

MAX_FRAMES = 108_000
"""Emulator frames per episode before truncation (Atari100k)."""


def make(task: str, options: EnvOptions) -> Env:
    """Builds ``atari/<task>``.

    Args:
        task: Game in snake_case, e.g. ``"pong"`` or ``"montezuma_revenge"``.
        options: Validated options; ``repeat`` is the frame skip, ``noops`` and ``sticky`` apply,
            ``obs`` must be ``"auto"`` or ``"image"``.

    Returns:
        The environment.

    Raises:
        EnvError: If the game is unknown or ``obs`` asks for a vector.
        MissingDependencyError: If ale-py or opencv is missing (extra ``atari``).
    """
    name = f"atari/{task}"
    options.check_used(name, {"noops", "sticky", "kwargs"})
    if options.obs not in ("auto", "image"):
        raise EnvError(f"environment '{name}' has image observations only, not obs='{options.obs}'")
    ale_py = import_optional("ale_py", "atari", f"environment '{name}'")
    import_optional("cv2", "atari", f"environment '{name}'")  # for AtariPreprocessing
    games = ale_py.roms.get_all_rom_ids()
    if task not in games:
        raise unknown_id("Atari game", task, games)
    gym.register_envs(ale_py)
    env = gym.make(
        f"ALE/{task.title().replace('_', '')}-v5",
        frameskip=1,  # AtariPreprocessing skips frames, max-pooling the last two
        repeat_action_probability=options.sticky,
        full_action_space=False,
        # ALE counts emulator frames and reports the cut as a truncation.
        max_num_frames_per_episode=None if options.time_limit else MAX_FRAMES,
        **options.kwargs,
    )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=options.noops,
        frame_skip=options.repeat or DEFAULT_REPEAT,
        screen_size=options.size,
        terminal_on_life_loss=False,
        grayscale_obs=options.gray,
        grayscale_newaxis=True,
    )
    # AtariPreprocessing draws its no-ops from the ALE env's np_random, seeded by reset(seed).
    return SimulatorEnv(GymSimulator(env, options, name), 1, options.time_limit)
