"""The rollouts of a World Models experiment as arrays: frames for the VAE, sequences for the MDN-RNN.

Rollouts are the episodes ``dreamworld worldmodels collect`` stored under ``<logdir>/episodes/``.
The newest ``holdout`` fraction of them (at least one, when there are two or more) is kept apart to
choose the best model and to stop early; the split depends only on the file names, so it is the same
in every stage and on every resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dreamworld.data.store import EPISODE_DIR, EpisodeStore
from dreamworld.errors import DreamworldError


def split_rollouts(logdir: Path, holdout: float) -> tuple[list[Path], list[Path]]:
    """Training and held-out episode files of an experiment, oldest first.

    Raises:
        DreamworldError: No rollouts are stored yet (run the collect stage first).
    """
    paths = EpisodeStore(logdir / EPISODE_DIR).paths()
    if not paths:
        raise DreamworldError(
            f"no rollouts in {logdir / EPISODE_DIR}; "
            f"run `dreamworld worldmodels collect --logdir {logdir}` first"
        )
    held = min(len(paths) - 1, max(1, round(holdout * len(paths)))) if len(paths) > 1 else 0
    return paths[: len(paths) - held], paths[len(paths) - held :]


def load_frames(paths: list[Path], max_frames: int) -> np.ndarray:
    """The ``image`` frames of ``paths``, ``(N, H, W, C)`` uint8, thinned evenly to ``max_frames``.

    Raises:
        DreamworldError: The rollouts have no image observations.
    """
    store = EpisodeStore(paths[0].parent) if paths else None
    lengths = [int(path.stem.rsplit("-len", 1)[1]) for path in paths]
    stride = max(1, -(-sum(lengths) // max_frames))  # ceil: every stride-th frame fits the budget
    frames = []
    for path in paths:
        episode = store.load(path) if store else {}
        if "image" not in episode:
            raise DreamworldError(f"rollout {path} has no image observations; collect with --env.obs image")
        frames.append(episode["image"][::stride])
    return np.concatenate(frames) if frames else np.zeros((0, 64, 64, 3), np.uint8)


@dataclass
class Rollouts:
    """Episodes as flat arrays with offsets: episode ``i`` is ``offsets[i]:offsets[i + 1]``."""

    image: np.ndarray | None
    action: np.ndarray
    reward: np.ndarray
    is_terminal: np.ndarray
    offsets: np.ndarray

    @classmethod
    def load(cls, paths: list[Path], images: bool = True) -> Rollouts:
        """Reads episodes (their images too when ``images``)."""
        store = EpisodeStore(paths[0].parent)
        parts = [store.load(path) for path in paths]
        offsets = np.cumsum([0] + [len(part["reward"]) for part in parts])
        return cls(
            np.concatenate([part["image"] for part in parts]) if images else None,
            np.concatenate([part["action"] for part in parts]),
            np.concatenate([part["reward"] for part in parts]).astype(np.float32),
            np.concatenate([part["is_terminal"] for part in parts]),
            offsets,
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1


def action_features(action: np.ndarray, discrete_actions: int) -> np.ndarray:
    """Actions as float inputs: one-hot rows for ``discrete_actions > 0`` indices, else as given."""
    if discrete_actions:
        return np.eye(discrete_actions, dtype=np.float32)[action.astype(np.int64)]
    return action.astype(np.float32)
