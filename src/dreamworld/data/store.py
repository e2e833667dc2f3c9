"""Episodes on disk: one compressed ``.npz`` per finished episode.

Each file holds the arrays of one episode, time-major, one entry per observation: the observation keys
of :mod:`dreamworld.envs.base` plus ``action``, the action the policy chose *at* that observation
(the action stored with the last observation was never executed). File names sort chronologically::

    <logdir>/episodes/20261121T101502-431207-3f9a1c2e-len1000.npz

Writes are atomic (a temporary file, then a rename), so a killed process never leaves a half-written
episode under a final name, and a full disk loses only the episode being written.
"""

from __future__ import annotations

import datetime
import errno
import io
import os
import uuid
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dreamworld.errors import StorageError

EPISODE_DIR = "episodes"


class EpisodeStore:
    """The episode files of one run directory.

    Args:
        directory: Folder of the episode files, usually ``<logdir>/episodes``; created when missing.

    Example:
        >>> import tempfile
        >>> store = EpisodeStore(tempfile.mkdtemp())
        >>> path = store.save({"reward": np.zeros(3, np.float32), "is_first": np.array([1, 0, 0], bool)})
        >>> len(store), store.load(path)["reward"].shape
        (1, (3,))
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def save(self, episode: Mapping[str, np.ndarray]) -> Path:
        """Writes one episode atomically.

        Args:
            episode: Arrays with a shared leading time axis ``T``.

        Returns:
            The path of the new file.

        Raises:
            StorageError: The file could not be written (full disk, no permission); nothing already
                stored is touched.
        """
        length = _episode_length(episode)
        now = datetime.datetime.now(datetime.timezone.utc)
        name = f"{now:%Y%m%dT%H%M%S-%f}-{uuid.uuid4().hex[:8]}-len{length}.npz"
        arrays: dict[str, Any] = {key: np.asarray(value) for key, value in episode.items()}
        return write_npz(self.directory / name, arrays, compress=True, what="an episode")

    def paths(self) -> list[Path]:
        """Episode files, oldest first."""
        return sorted(self.directory.glob("*.npz"))

    def load(self, path: str | Path) -> dict[str, np.ndarray]:
        """Reads one episode file into a dict of arrays."""
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def episodes(self, newest_steps: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Yields stored episodes oldest first, skipping unreadable files with a warning.

        Args:
            newest_steps: When given, only the newest episodes whose lengths add up to at least this
                many steps are read (what a replay of that capacity would keep).
        """
        paths = self.paths()
        if newest_steps is not None:
            paths = _newest(paths, newest_steps)
        for path in paths:
            try:
                yield self.load(path)
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
                warnings.warn(f"skipping unreadable episode file {path}: {error}", stacklevel=2)

    def remove_after(self, name: str) -> int:
        """Deletes the episode files that sort after ``name`` (written later); returns how many.

        A resumed run uses it to drop the episodes its killed predecessor wrote after its last
        checkpoint, which the resumed run writes again.
        """
        later = [path for path in self.paths() if path.name > name]
        for path in later:
            path.unlink(missing_ok=True)
        return len(later)

    def num_steps(self) -> int:
        """Steps in all stored episodes, read from the file names."""
        return sum(_length_from_name(path) for path in self.paths())

    def __len__(self) -> int:
        return len(self.paths())


def write_npz(path: Path, arrays: Mapping[str, np.ndarray], compress: bool, what: str) -> Path:
    """Writes arrays as ``.npz`` atomically: a temporary name, fsync, then a rename over ``path``.

    Raises:
        StorageError: Writing failed (full disk, no permission); ``path`` is untouched and no
            temporary file is left. ``what`` names the content in the message.
    """
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **dict(arrays))  # type: ignore[arg-type]
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as file:
            file.write(buffer.getbuffer())
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        reason = "the disk is full" if error.errno == errno.ENOSPC else error.strerror
        raise StorageError(
            f"could not write {what} to {path.parent} ({reason}); what was written before is intact"
        ) from None
    return path


def _episode_length(episode: Mapping[str, np.ndarray]) -> int:
    lengths = {key: len(value) for key, value in episode.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"episode arrays must share their length, got {lengths}")
    return next(iter(lengths.values()))


def _length_from_name(path: Path) -> int:
    return int(path.stem.rsplit("-len", 1)[1])


def _newest(paths: list[Path], steps: int) -> list[Path]:
    total = 0
    for index in range(len(paths) - 1, -1, -1):
        total += _length_from_name(paths[index])
        if total >= steps:
            return paths[index:]
    return paths
