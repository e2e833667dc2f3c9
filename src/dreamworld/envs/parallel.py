"""Stepping several environments at once, in worker processes, threads, or one after another.

Worker processes are started with ``spawn`` (safe beside torch threads and CUDA), so factories must
be picklable: :func:`dreamworld.envs.make_vector_env` passes ``functools.partial(make_env, ...)``.
Each worker runs with one OpenMP/BLAS thread and passive waiting, so that no thread pool of a
worker spins on the cores a learner needs. The learner has to limit its own threads as well: on 2
cores, a torch update with its default 2 threads ran ~4x slower beside two busy workers, with 1
thread it hardly slowed down (docs/benchmarks.md, "learner beside workers").

Stepping is in lockstep: actions go to every worker before any reply is read, so the workers step
at the same time, and the slowest one sets the pace.

Observations and rewards are checked where they enter, in the worker: a NaN or an infinity stops the
run with an error naming the environment, the key and the step of the episode (``nonfinite="error"``),
or is replaced by 0 with a warning (``"replace"``). Workers leave Ctrl-C and SIGTERM to the main
process, which stops them when it has saved what it needs.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
import pickle
import signal
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol, cast

import gymnasium as gym
import numpy as np

from dreamworld.envs.base import Env
from dreamworld.errors import DreamworldError, EnvError

PARALLEL_MODES = ("auto", "process", "thread", "serial")

# Set in each worker's environment before it imports anything: simulators need no thread pools,
# and idle pool threads must sleep instead of spinning on the learner's cores.
WORKER_ENVIRON = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
}

_POLL_SECONDS = 1.0
_JOIN_SECONDS = 5.0

Reply = tuple[bool, Any]
"""``(True, result)`` or ``(False, _RemoteError)`` from a worker."""


class VectorEnv:
    """Several environments stepped together, with batched observations.

    An environment whose previous observation was ``is_last`` (or that never started) is reset on
    the next :meth:`step` instead of stepped; its action is ignored and it returns its
    ``is_first`` observation, so no observation is lost.

    Args:
        factories: One picklable callable per environment, each returning an
            :class:`~dreamworld.envs.base.Env`.
        parallel: ``"process"``, ``"thread"``, ``"serial"``, or ``"auto"``: one environment in this
            process, several in worker processes.
        nonfinite: What a NaN or infinite observation or reward does: ``"error"`` or ``"replace"``.

    Attributes:
        num_envs: Number of environments.
        obs_space: Spaces of one environment's observation (without the batch axis).
        act_space: Action space of one environment.

    Raises:
        EnvError: If ``parallel`` is unknown, the environments disagree on their spaces, or a
            worker fails (the message names the worker and environment).

    Example:
        >>> envs = VectorEnv([functools.partial(make_env, "gym/CartPole-v1")] * 2)  # doctest: +SKIP
        >>> obs = envs.reset(seed=0)  # obs["vector"].shape == (2, 4)  # doctest: +SKIP
        >>> obs = envs.step(np.zeros(2, np.int64))  # doctest: +SKIP
        >>> envs.close()  # doctest: +SKIP
    """

    def __init__(
        self, factories: Sequence[Callable[[], Env]], parallel: str = "auto", nonfinite: str = "error"
    ) -> None:
        if parallel not in PARALLEL_MODES:
            raise EnvError(f"parallel must be one of {', '.join(PARALLEL_MODES)}, not '{parallel}'")
        if parallel == "auto":
            parallel = "serial" if len(factories) == 1 else "process"
        if parallel == "process":
            exit_if_reimported()
        if nonfinite not in ("error", "replace"):
            raise EnvError(f"nonfinite must be error or replace, not '{nonfinite}'")
        if not factories:
            raise EnvError("VectorEnv needs at least one environment factory")
        self.num_envs = len(factories)
        self._labels = [_label(factory) for factory in factories]
        factories = [functools.partial(_guarded, factory, nonfinite) for factory in factories]
        self._workers: list[_Worker] = []
        self._closed = False
        starter: dict[str, Callable[[Callable[[], Env]], _Worker]] = {
            "process": _ProcessWorker,
            "thread": _ThreadWorker,
            "serial": _SerialWorker,
        }
        try:
            with _worker_environ() if parallel == "process" else contextlib.nullcontext():
                for factory in factories:
                    self._workers.append(starter[parallel](factory))
            spaces = self._gather()
        except BaseException:
            self.close()
            raise
        self.obs_space: dict[str, gym.spaces.Space] = spaces[0][0]
        self.act_space: gym.spaces.Space = spaces[0][1]
        for index, (obs_space, act_space) in enumerate(spaces):
            if obs_space != self.obs_space or act_space != self.act_space:
                self.close()
                raise EnvError(
                    f"environment {index} ({self._labels[index]}) has other spaces than environment 0"
                )

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Resets every environment; environment ``i`` gets ``seed + i``.

        Returns:
            The first observations, each value batched along a leading axis of ``num_envs``.
        """
        self._check_open()
        for index, worker in enumerate(self._workers):
            worker.send("reset", None if seed is None else seed + index)
        return _stack(self._gather())

    def step(self, actions: Any) -> dict[str, np.ndarray]:
        """Steps every environment (resetting those that ended) with ``actions[i]``.

        Args:
            actions: ``(num_envs,)`` indices, ``(num_envs, n)`` one-hot or ``(num_envs, d)``
                continuous actions (an array or a sequence).

        Returns:
            The observations, batched along a leading axis of ``num_envs``.
        """
        self._check_open()
        if len(actions) != self.num_envs:  # checked before sending: the pipes must stay in step
            raise ValueError(f"{len(actions)} actions for {self.num_envs} environments")
        for worker, action in zip(self._workers, actions, strict=True):
            worker.send("step", action)
        return _stack(self._gather())

    def end_episodes(self, indices: Sequence[int]) -> None:
        """Ends the episodes of environments ``indices`` early: their next :meth:`step` resets them."""
        self._check_open()
        for index in indices:
            self._workers[index].send("end", None)
        self._gather(indices)

    def get_states(self) -> list[Any] | None:
        """Snapshots of every environment's episode in flight, or None if one cannot snapshot.

        The snapshots are plain data (dicts, lists, numbers, numpy arrays) for
        :meth:`set_states`, which puts the environments back so that stepping them on gives the
        same observations as stepping the originals (see ``get_state`` in
        :mod:`dreamworld.envs.base` for the suites that support it).
        """
        self._check_open()
        for worker in self._workers:
            worker.send("get_state", None)
        states = self._gather()
        return None if any(state is None for state in states) else states

    def set_states(self, states: Sequence[Any]) -> None:
        """Restores snapshots taken by :meth:`get_states` (of environments of the same ids)."""
        self._check_open()
        if len(states) != self.num_envs:
            raise ValueError(f"{len(states)} snapshots for {self.num_envs} environments")
        for worker, state in zip(self._workers, states, strict=True):
            worker.send("set_state", state)
        self._gather()

    def render(self, index: int = 0) -> np.ndarray | None:
        """The RGB frame of environment ``index`` (see :meth:`Env.render`)."""
        self._check_open()
        self._workers[index].send("render", None)
        return self._gather([index])[0]

    def close(self) -> None:
        """Closes every environment and ends the workers (stuck ones are terminated)."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            worker.close()

    def __enter__(self) -> VectorEnv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Workers are daemons and die with this process anyway; this only ends them earlier.
        with contextlib.suppress(Exception):
            self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("VectorEnv is closed")

    def _gather(self, indices: Sequence[int] | None = None) -> list[Any]:
        """Receives one reply from each worker (all of them, so the pipes stay in step)."""
        indices = range(self.num_envs) if indices is None else indices
        replies = [self._workers[index].recv() for index in indices]
        for index, (ok, result) in zip(indices, replies, strict=True):
            if not ok:
                raise result.exception(index, self._labels[index])
        return [result for _, result in replies]


class _Runner:
    """The commands a worker executes on its environment, with the automatic reset."""

    def __init__(self, factory: Callable[[], Env]) -> None:
        self.env = factory()
        self.done = True

    def call(self, command: str, argument: Any) -> Reply:
        try:
            if command == "step":
                obs = self.env.reset() if self.done else self.env.step(argument)
            elif command == "reset":
                obs = self.env.reset(argument)
            elif command == "render":
                return True, self.env.render()
            elif command == "end":
                self.done = True
                return True, None
            elif command == "get_state":
                getter = getattr(self.env, "get_state", None)
                state = getter() if getter is not None else None
                return True, None if state is None else {"env": state, "done": self.done}
            elif command == "set_state":
                self.env.set_state(argument["env"])  # type: ignore[attr-defined]
                self.done = bool(argument["done"])
                return True, None
            else:
                raise ValueError(f"unknown worker command '{command}'")
        except Exception as error:
            return False, _RemoteError.capture(error)
        self.done = bool(obs["is_last"])
        return True, obs

    def spaces(self) -> tuple[dict[str, gym.spaces.Space], gym.spaces.Space]:
        return self.env.obs_space, self.env.act_space


REIMPORTED_EXIT = 87
"""Exit status of a worker process that found the user's script starting a run while it was being
re-imported (a script without ``if __name__ == "__main__":``)."""


def exit_if_reimported() -> None:
    """Ends a worker process, quietly and with :data:`REIMPORTED_EXIT`, when the user's script is being
    re-imported by ``spawn`` and reaches code that starts a run (which must only run in the main
    process); the main process then says what to add to the script."""
    if getattr(mp.current_process(), "_inheriting", False):
        os._exit(REIMPORTED_EXIT)


def reimported_error() -> EnvError:
    """What a script that worker processes re-imported must change."""
    return EnvError(
        "worker processes re-import your script, and it started a run again: put the code that runs "
        'under `if __name__ == "__main__":`, or keep the environments in this process with '
        "env.parallel serial (or thread)"
    )


def _guarded(factory: Callable[[], Env], nonfinite: str) -> Env:
    return cast(Env, _FiniteGuard(factory(), nonfinite))


class _FiniteGuard:
    """Checks that an environment's float observations and rewards are finite (module docstring)."""

    def __init__(self, env: Env, mode: str) -> None:
        self.env, self.mode = env, mode
        self.step_count, self.warned = 0, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        self.step_count = 0
        return self._check(self.env.reset(seed))

    def step(self, action: Any) -> dict[str, np.ndarray]:
        self.step_count += 1
        return self._check(self.env.step(action))

    def _check(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for key, value in obs.items():
            array = np.asarray(value)
            if array.dtype.kind != "f" or np.isfinite(array).all():
                continue
            bad = array[~np.isfinite(array)].flat[0]
            what = "reward" if key == "reward" else f"observation '{key}'"
            where = f"{what} is {bad} at step {self.step_count} of an episode"
            if self.mode == "error":
                raise EnvError(
                    f"{where}: fix the environment, or set --env.nonfinite replace to train on with "
                    "0 in their place"
                )
            if not self.warned:
                warnings.warn(f"{where}; replaced by 0 (env.nonfinite: replace)", stacklevel=2)
                self.warned = True
            obs = {**obs, key: np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)}
        return obs


def _start(factory: Callable[[], Env]) -> tuple[_Runner | None, Reply]:
    """Builds a runner; the reply carries its spaces or the error."""
    try:
        runner = _Runner(factory)
    except Exception as error:
        return None, (False, _RemoteError.capture(error))
    return runner, (True, runner.spaces())


class _Worker(Protocol):
    def send(self, command: str, argument: Any) -> None: ...

    def recv(self) -> Reply: ...

    def close(self) -> None: ...


class _SerialWorker:
    """Runs each command when it is sent."""

    def __init__(self, factory: Callable[[], Env]) -> None:
        self._runner, self._reply = _start(factory)

    def send(self, command: str, argument: Any) -> None:
        assert self._runner is not None, "the environment failed to start"
        self._reply = self._runner.call(command, argument)

    def recv(self) -> Reply:
        return self._reply

    def close(self) -> None:
        if self._runner is not None:
            self._runner.env.close()


class _ThreadWorker:
    """Runs commands on a thread of its own, so thread-bound simulators (GL contexts) work."""

    def __init__(self, factory: Callable[[], Env]) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="dreamworld-env")
        self._runner: _Runner | None = None
        self._future: Future[Reply] = self._executor.submit(self._start, factory)

    def _start(self, factory: Callable[[], Env]) -> Reply:
        self._runner, reply = _start(factory)
        return reply

    def send(self, command: str, argument: Any) -> None:
        assert self._runner is not None, "the environment failed to start"
        self._future = self._executor.submit(self._runner.call, command, argument)

    def recv(self) -> Reply:
        return self._future.result()

    def close(self) -> None:
        if self._runner is not None:
            self._executor.submit(self._runner.env.close)
        self._executor.shutdown(wait=True)


class _ProcessWorker:
    """Runs commands in a worker process, over a pipe."""

    def __init__(self, factory: Callable[[], Env]) -> None:
        context = mp.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_work, args=(child, factory), daemon=True)
        try:
            self._process.start()
        except (pickle.PicklingError, AttributeError, TypeError) as error:
            raise EnvError(
                f"cannot send the environment factory {_label(factory)} to a worker "
                f"process (it must be picklable, e.g. a functools.partial of a "
                f"module-level function): {error}"
            ) from None
        # Only the child may hold its end, so that its death reads as end-of-file here.
        child.close()

    def send(self, command: str, argument: Any) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._conn.send((command, argument))  # if the worker died, recv() reports it

    def recv(self) -> Reply:
        while not self._conn.poll(_POLL_SECONDS):
            if not self._process.is_alive():
                break
        try:
            return self._conn.recv()
        except (EOFError, ConnectionResetError):
            self._process.join(_JOIN_SECONDS)
            return False, _RemoteError.died(self._process.exitcode)

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
            self._conn.send(("close", None))
        self._process.join(_JOIN_SECONDS)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(_JOIN_SECONDS)
        if self._process.is_alive():  # it ignores SIGTERM (_work) while busy in a step
            self._process.kill()
            self._process.join(_JOIN_SECONDS)
        self._conn.close()


def _work(conn: Connection, factory: Callable[[], Env]) -> None:
    """The loop of a worker process: build the environment, then answer commands until closed."""
    # Ctrl-C reaches the whole process group: the main process saves, then closes the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    runner, reply = _start(factory)
    conn.send(reply)
    if runner is None:
        return
    try:
        while True:
            command, argument = conn.recv()
            if command == "close":
                break
            conn.send(runner.call(command, argument))
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass  # the main process is gone or interrupted; it reports on its side
    finally:
        runner.env.close()


@contextlib.contextmanager
def _worker_environ() -> Iterator[None]:
    """Sets :data:`WORKER_ENVIRON` while workers start, so they inherit it from their first line."""
    saved = {key: os.environ.get(key) for key in WORKER_ENVIRON}
    os.environ.update(WORKER_ENVIRON)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class _RemoteError:
    """A worker's exception, made picklable and turned into one line in the main process."""

    error: DreamworldError | None
    description: str
    traceback: str

    @classmethod
    def capture(cls, error: Exception) -> _RemoteError:
        description = f"{type(error).__name__}: {' '.join(str(error).split())}"
        keep = error if isinstance(error, DreamworldError) else None
        if keep is None and (frame := _culprit(error)) is not None:
            description += f" (at {frame.filename}:{frame.lineno}, in {frame.name})"
        return cls(keep, description, traceback.format_exc())

    @classmethod
    def died(cls, exitcode: int | None) -> _RemoteError:
        if exitcode == REIMPORTED_EXIT:
            return cls(reimported_error(), "", "")
        return cls(None, f"the worker process died (exit code {exitcode})", "")

    def exception(self, index: int, label: str) -> Exception:
        where = f"environment worker {index} ({label})"
        if self.error is not None:
            exception: Exception = type(self.error)(f"{where}: {self.error}")
        else:
            exception = EnvError(f"{where} failed: {self.description}")
        if self.traceback and self.error is None:
            # Chained like concurrent.futures does, so the worker's traceback shows when printed.
            exception.__cause__ = _RemoteTraceback(self.traceback)
        return exception


def _culprit(error: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of the environment's own code in ``error``'s traceback: not dreamworld,
    Gymnasium, NumPy or the standard library (the innermost frame of all when every one is)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return None
    skipped = [os.path.dirname(module.__file__ or "") for module in (gym, np)]
    skipped += [os.path.dirname(os.path.dirname(__file__)), os.path.dirname(os.__file__)]
    skipped = [os.path.join(path, "") for path in skipped if path]
    for frame in reversed(frames):
        filename = os.path.abspath(frame.filename)
        if not any(filename.startswith(path) for path in skipped) and not _installed(filename):
            return frame
    for frame in reversed(frames):  # an installed environment package
        filename = os.path.abspath(frame.filename)
        if not any(filename.startswith(path) for path in skipped):
            return frame
    return frames[-1]


def _installed(filename: str) -> bool:
    return "site-packages" in filename or "dist-packages" in filename


class _RemoteTraceback(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def _stack(observations: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    # np.array of same-shaped arrays stacks in C, 3-5x faster than np.stack for small arrays.
    return {key: np.array([obs[key] for obs in observations]) for key in observations[0]}


def _label(factory: Callable[[], Env]) -> str:
    """The environment id of a ``partial(make_env, id, ...)``, else the factory's name."""
    if isinstance(factory, functools.partial) and factory.func is _guarded:
        return _label(factory.args[0])
    if isinstance(factory, functools.partial) and factory.args and isinstance(factory.args[0], str):
        return factory.args[0]
    return getattr(factory, "__qualname__", type(factory).__name__)
