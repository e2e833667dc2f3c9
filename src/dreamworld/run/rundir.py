"""A run directory while a command works in it: checked, created, held by one process at a time.

Every command that writes a run (``train``, ``collect``, the ``worldmodels`` stages) opens it with
:class:`RunDirectory`:

- A path that cannot hold a run (a regular file, a read-only or virtual file system, no permission)
  is a one-line :class:`~dreamworld.errors.StorageError` naming the path and the reason.
- One process at a time: the directory is locked with ``flock`` on ``<logdir>/.dreamworld.lock``,
  which records the owner's command, pid, host and start time for the error a second process gets.
  The kernel releases the lock when its process dies, so a lock file left by a killed run is stale
  and simply taken over. The file is removed when the command ends.
- The resolved ``config.yaml`` is written only once the command has started (:meth:`started`), so a
  command that fails at its start (an unknown environment, a checkpoint of another size) leaves the
  run's configuration as it was; a directory that this command created and that failed before it
  started is removed again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from dreamworld.config import Config, save_config
from dreamworld.errors import DreamworldError, StorageError

LOCK_FILE = ".dreamworld.lock"

_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted there",
    errno.EROFS: "a read-only file system",
    errno.ENOSPC: "the disk is full",
    errno.ENOENT: "a parent directory does not exist and cannot be created there",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
}


class RunLockedError(DreamworldError):
    """Another process works in the run directory."""


class RunDirectory:
    """The run directory of one command, used as a context manager around the command's work.

    Args:
        path: The run directory (``--logdir``).
        config: The resolved configuration, written to ``config.yaml`` by :meth:`started`.

    Raises:
        StorageError: The path cannot be a run directory (one line saying why).
        RunLockedError: Another live process holds the directory.

    Example:
        >>> with RunDirectory(tmp / "run", config) as run:  # doctest: +SKIP
        ...     env = build_everything()  # may fail: nothing changes on disk
        ...     run.started()  # config.yaml is written now
        ...     work()
    """

    def __init__(self, path: str | Path, config: Config | None = None) -> None:
        self.path = Path(path)
        self.config = config
        self.created = False
        self.is_started = False
        self._lock: IO[str] | None = None

    def __enter__(self) -> RunDirectory:
        self.created = prepare_directory(self.path)
        try:
            self._lock = _acquire(self.path / LOCK_FILE)
        except BaseException:
            self._remove_if_created()
            raise
        _ACTIVE.append(self)
        return self

    def started(self) -> None:
        """Marks the command as started and writes ``config.yaml`` (atomically); idempotent."""
        if self.is_started:
            return
        self.is_started = True
        if self.config is not None:
            try:
                save_config(self.config, self.path)
            except OSError as error:
                raise StorageError(f"could not write {self.path / 'config.yaml'}: {_reason(error)}") from None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        self._release()
        if error is not None and not self.is_started:
            self._remove_if_created()

    def _release(self) -> None:
        if self._lock is None:
            return
        with contextlib.suppress(OSError):
            (self.path / LOCK_FILE).unlink()
        self._lock.close()  # closing the file releases the flock
        self._lock = None

    def _remove_if_created(self) -> None:
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)


_ACTIVE: list[RunDirectory] = []


def mark_started() -> None:
    """:meth:`RunDirectory.started` for the innermost run directory open in this process, if any; for
    code deep inside a command (a World Models stage that has loaded its checkpoint)."""
    if _ACTIVE:
        _ACTIVE[-1].started()


def prepare_directory(path: Path) -> bool:
    """Creates ``path`` if needed and checks that a run can write there; returns whether it was created.

    Raises:
        StorageError: One line naming the path and what is wrong with it.
    """
    if path.exists() and not path.is_dir():
        raise StorageError(f"the run directory {path} is a file, not a directory: choose another --logdir")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = _reason(error)
        if error.errno == errno.ENOENT and _existing_parent(path) != Path(path.anchor):
            reason = f"the file system at {_existing_parent(path)} does not allow new directories"
        raise StorageError(f"cannot create the run directory {path}: {reason}") from None
    probe = path / f".dreamworld-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise StorageError(f"cannot write in the run directory {path}: {_reason(error)}") from None
    return created


def _existing_parent(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path(path.anchor)


def lock_owner(path: str | Path) -> dict[str, Any] | None:
    """What the lock file of run directory ``path`` says about its holder, or None without one."""
    try:
        text = (Path(path) / LOCK_FILE).read_text()
        owner = json.loads(text)
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _acquire(lock_path: Path) -> IO[str]:
    """Takes the exclusive lock; the open file holds it until closed."""
    import fcntl

    while True:
        try:
            file = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 (held until released)
        except OSError as error:
            raise StorageError(
                f"cannot write in the run directory {lock_path.parent}: {_reason(error)}"
            ) from None
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise RunLockedError(_locked_message(lock_path.parent)) from None
        except OSError:  # a file system without locks (some network mounts): trust the pid
            if _held_by_live_process(lock_path):
                file.close()
                raise RunLockedError(_locked_message(lock_path.parent)) from None
        # The previous holder may have removed the file between our open and our lock: then we hold
        # a lock on a file nobody else sees, and must try again on the new one.
        try:
            same = os.stat(lock_path).st_ino == os.fstat(file.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            file.close()
            continue
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(["dreamworld", *sys.argv[1:]]) if sys.argv else "dreamworld",
        }
        file.seek(0)
        file.truncate()
        file.write(json.dumps(owner) + "\n")
        file.flush()
        return file


def _held_by_live_process(lock_path: Path) -> bool:
    owner = lock_owner(lock_path.parent)
    if owner is None or owner.get("host") != socket.gethostname():
        return owner is not None
    try:
        os.kill(int(owner["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def _locked_message(directory: Path) -> str:
    owner = lock_owner(directory) or {}
    who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, since {owner.get('since', '?')}"
    command = str(owner.get("command", ""))
    if len(command) > 80:
        command = command[:77] + "..."
    what = f"'{command}' ({who})" if command else f"another process ({who})"
    return (
        f"the run directory {directory} is in use by {what}: wait for it to end, or choose another --logdir"
    )


def _reason(error: OSError) -> str:
    return _REASONS.get(error.errno or 0, error.strerror or str(error))
