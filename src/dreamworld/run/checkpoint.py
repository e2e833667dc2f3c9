"""Checkpoints that survive a kill at any moment and never run code when loaded.

A checkpoint is one file written by ``torch.save``, holding::

    {"format": "dreamworld-checkpoint", "version": FORMAT_VERSION, "kind": "dreamer",
     "dreamworld": "0.1.0", "state": {...}}

``state`` is what the algorithm passed in: model and optimiser state dicts, counters, RNG states
(:func:`dreamworld.run.seeding.rng_state`) and the resolved config as a plain dict. Only plain data
is accepted (dicts, lists, tuples, numbers, strings, tensors), because loading uses
``torch.load(weights_only=True)``, which refuses everything else; :func:`save_checkpoint` checks
this up front so that a run never writes a checkpoint it cannot resume from.

Writing is atomic: the file is written under a temporary name in the same directory, synced, and
renamed over the target, so a reader sees either the old checkpoint or the new one. A run keeps one
checkpoint, ``<run dir>/checkpoint.pt`` (:data:`CHECKPOINT_NAME`), rewritten in place; temporary
files that a killed save left behind are removed by the next save of the same target.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pickle
import re
import secrets
import time
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch

from dreamworld import __version__
from dreamworld.errors import CheckpointError, StorageError

FORMAT = "dreamworld-checkpoint"
"""Marker stored in every checkpoint; a file without it was not written by dreamworld."""

FORMAT_VERSION = 1
"""Version of the envelope layout, bumped (with a migration on loading) when it changes."""

CHECKPOINT_NAME = "checkpoint.pt"
"""File name of a run's checkpoint inside its run directory."""

_ZIP_MAGIC = b"PK\x03\x04"
_LEAF_TYPES = (
    type(None), bool, int, float, complex, str, bytes, bytearray,
    torch.Tensor, torch.nn.Parameter, torch.Size, torch.device, torch.dtype,
)  # fmt: skip
_MAP_TYPES = (dict, OrderedDict, Counter)
_SEQUENCE_TYPES = (list, tuple, set)


def save_checkpoint(path: str | Path, state: Mapping[str, Any], *, kind: str) -> Path:
    """Writes ``state`` to ``path`` atomically, replacing any checkpoint already there.

    Args:
        path: Target file, usually ``run_dir / CHECKPOINT_NAME``; missing parent directories are
            created.
        state: Plain data: dicts, lists, tuples, sets, numbers, strings, tensors, ``torch.Size``,
            ``torch.device``, ``torch.dtype``.
        kind: What produced the state (``"dreamer"``, ``"worldmodels-vae"``); loading with another
            ``kind`` is refused.

    Returns:
        The path written.

    Raises:
        TypeError: ``state`` holds something ``torch.load(weights_only=True)`` would refuse, such as
            a numpy array; the message names where it is.
        StorageError: Writing failed (full disk, no permission). The previous checkpoint at
            ``path``, if any, is unchanged.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> save_checkpoint(tmp / CHECKPOINT_NAME, {"model": model.state_dict(), "step": 10},
        ...                 kind="dreamer")  # doctest: +SKIP
    """
    if not kind:
        raise ValueError("kind must be a non-empty string")
    problem = _find_unloadable(state, "state")
    if problem is not None:
        raise TypeError(
            f"cannot checkpoint {problem}: only dicts, lists, tuples, numbers, strings and tensors "
            "load safely; convert it (float(x), x.tolist(), torch.as_tensor(x))"
        )
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": kind,
        "dreamworld": __version__,
        "state": dict(state),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        _write_atomically(path, payload)
    except OSError as error:
        raise StorageError(
            f"could not save checkpoint {path}: {error.strerror or error}; "
            "any previous checkpoint there is intact"
        ) from None
    return path


def load_checkpoint(
    path: str | Path, *, kind: str | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Reads the state saved by :func:`save_checkpoint`, without running any code from the file.

    Args:
        path: The checkpoint file.
        kind: Expected kind; another kind raises. None accepts any.
        map_location: Device the tensors are loaded onto.

    Returns:
        The ``state`` mapping that was saved.

    Raises:
        CheckpointError: One line saying why: no file, an empty, truncated or corrupt file, a file
            not written by dreamworld (including any holding Python objects other than plain data),
            another kind, or a format newer than this version of dreamworld reads.

    Example:
        >>> state = load_checkpoint(run_dir / CHECKPOINT_NAME, kind="dreamer")  # doctest: +SKIP
        >>> model.load_state_dict(state["model"])  # doctest: +SKIP
    """
    path = Path(path)
    payload = _read(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dreamworld checkpoint (it has no dreamworld marker)")
    version = payload.get("version")
    if not isinstance(version, int) or version < 1 or not isinstance(payload.get("state"), dict):
        raise CheckpointError(f"{path} is a corrupt dreamworld checkpoint (bad envelope)")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}, written by dreamworld "
            f"{payload.get('dreamworld')}; this dreamworld ({__version__}) reads up to format "
            f"{FORMAT_VERSION}: upgrade dreamworld"
        )
    if kind is not None and payload.get("kind") != kind:
        raise CheckpointError(f"{path} is a '{payload.get('kind')}' checkpoint, expected '{kind}'")
    state: dict[str, Any] = payload["state"]
    return state


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint to resume a run from.

    Args:
        directory: A run directory.

    Returns:
        ``directory / CHECKPOINT_NAME`` if that file exists, else None. Temporary files of an
        interrupted save are never returned.

    Example:
        >>> found = latest_checkpoint(run_dir)  # doctest: +SKIP
        >>> state = load_checkpoint(found, kind="dreamer") if found else None  # doctest: +SKIP
    """
    candidate = Path(directory) / CHECKPOINT_NAME
    return candidate if candidate.is_file() else None


def _find_unloadable(value: Any, where: str) -> str | None:
    """Where in ``value`` the first object that weights_only loading refuses is, or None."""
    kind = type(value)
    if kind in _LEAF_TYPES:
        return None
    if kind in _MAP_TYPES:
        for key, item in value.items():
            problem = _find_unloadable(key, f"a key of {where}")
            problem = problem or _find_unloadable(item, f"{where}[{key!r}]")
            if problem is not None:
                return problem
        return None
    if kind in _SEQUENCE_TYPES:
        for index, item in enumerate(value):
            problem = _find_unloadable(item, f"{where}[{index}]")
            if problem is not None:
                return problem
        return None
    return f"{where}, a {kind.__module__}.{kind.__qualname__}"


def _temporary_pattern(path: Path) -> str:
    return glob.escape(f".{path.name}.") + "*.tmp"


def _remove_stale_temporaries(path: Path) -> None:
    """Deletes temporary files that an earlier, killed save of ``path`` left behind.

    Assumes one writer per target, which a run directory has.
    """
    for stale in path.parent.glob(_temporary_pattern(path)):
        with contextlib.suppress(OSError):
            stale.unlink()


def _write_atomically(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:
            sink = _ErrorKeepingWriter(file)
            try:
                torch.save(payload, cast(IO[bytes], sink))
            except RuntimeError:
                # torch's zip writer replaces a failed write (ENOSPC) by an opaque "unexpected pos"
                # error; the OSError it swallowed says what actually happened.
                if sink.error is not None:
                    raise sink.error from None
                raise
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Makes the rename durable: without it a power loss can undo the rename on ext4 and xfs."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # a platform that cannot open directories (Windows) has nothing to sync
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse to sync a directory
            os.fsync(fd)
    finally:
        os.close(fd)


class _ErrorKeepingWriter:
    """File wrapper that remembers the OSError of a failed write, which torch.save hides."""

    def __init__(self, file: Any) -> None:
        self._file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            written: int = self._file.write(data)
        except OSError as error:
            self.error = error
            raise
        return written

    def flush(self) -> None:
        self._file.flush()


def _read(path: Path, map_location: str | torch.device) -> Any:
    """Loads ``path`` with weights_only, turning every failure into a one-line CheckpointError."""
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; a run's checkpoint is {path / CHECKPOINT_NAME}")
    try:
        with open(path, "rb") as file:
            head = file.read(len(_ZIP_MAGIC))
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror or error}") from None
    if not head:
        raise CheckpointError(f"{path} is empty, not a checkpoint")
    if head != _ZIP_MAGIC:
        # Legacy torch files and bare pickles are never unpickled: they are not ours anyway.
        raise CheckpointError(f"{path} is not a dreamworld checkpoint (not a PyTorch zip file)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            # torch.load does not check the CRCs the zip keeps, so a flipped bit would load as a
            # silently wrong weight.
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        raise CheckpointError(f"{path} is truncated or corrupt (unreadable zip directory)") from None
    if damaged is not None:
        raise CheckpointError(f"{path} is corrupt (checksum mismatch in {damaged})")
    if not any(name.endswith("/data.pkl") for name in names):
        raise CheckpointError(f"{path} is not a dreamworld checkpoint (a zip, but not a torch file)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+)", str(error))
        what = f"'{found.group(1)}'" if found else "objects other than plain data"
        raise CheckpointError(
            f"{path} is not a dreamworld checkpoint: it holds {what}, which is not loaded, "
            "because unpickling it could run code"
        ) from None
    except Exception as error:  # torch reports corruption through many exception types
        # torch's messages run to paragraphs; their first sentence carries the reason.
        reason = str(error).strip().split("\n")[0].split(". ")[0]
        raise CheckpointError(f"cannot load checkpoint {path}: {type(error).__name__}: {reason}") from None


def move_aside(logdir: Path) -> Path | None:
    """Renames an existing run directory to ``<name>.old-<time>`` so a new run starts clean."""
    if not logdir.exists():
        return None
    target = logdir.with_name(f"{logdir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    logdir.rename(target)
    return target


def arrays_to_tensors(value: Any) -> Any:
    """Makes numpy data checkpointable: arrays become tensors, numpy scalars Python numbers.

    :func:`tensors_to_arrays` reverses it, for state that is numpy by nature (observations,
    environment snapshots). Containers keep their types; everything else passes through.
    """
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {key: arrays_to_tensors(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(arrays_to_tensors(item) for item in value)
    return value


def tensors_to_arrays(value: Any) -> Any:
    """The inverse of :func:`arrays_to_tensors`: tensors become numpy arrays (on the CPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, Mapping):
        return {key: tensors_to_arrays(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(tensors_to_arrays(item) for item in value)
    return value
