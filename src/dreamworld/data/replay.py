"""In-memory sequence replay: uniform windows of ``T`` consecutive steps, oldest-first eviction.

Steps arrive in *streams*: each parallel environment is one stream, and episodes restored from disk are
appended to a stream of their own. Within a stream episodes follow each other, so a window may cross
an episode boundary; the step that starts the new episode carries ``is_first=True`` (as stored by the
driver), which is how a world model knows to reset its state there. Windows never join two streams.

All streams share one ring buffer of ``capacity`` steps; when it is full the globally oldest step is
overwritten. Each slot remembers the slot of the next step of its stream, so a window is gathered by
following those links: ``T`` vectorised lookups for the whole batch, no Python loop over the batch.
A slot is a valid window start when its stream holds at least ``T - 1`` newer steps; starts are drawn
uniformly over all valid slots (rejection sampling over the filled slots).

A replay persists exactly (:meth:`Replay.save` / :meth:`Replay.load`): the ring buffer is cut into
chunks of :data:`CHUNK` slots, each one ``.npz`` file under ``<logdir>/replay/``. A save writes only
the chunks changed since the previous save, each under a new name (copy on write), and returns a small
manifest (counters, stream tails, sampler state, chunk names) that goes into the checkpoint; files no
longer named by the newest manifest are deleted once that checkpoint is on disk. A kill at any moment
leaves the files of the last checkpoint intact, so the replay resumes slot for slot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dreamworld.data.store import EpisodeStore, write_npz
from dreamworld.errors import CheckpointError

REPLAY_DIR = "replay"
"""Folder of the replay's chunk files inside a run directory."""

CHUNK = 1024
"""Slots per chunk file: small enough that a save rewrites little beyond the new steps."""


class Replay:
    """A ring buffer of steps from several streams, sampled as ``(B, T, ...)`` windows.

    Args:
        capacity: Maximum number of steps held.
        length: Window length ``T`` returned by :meth:`sample`.
        seed: Seed of the sampling generator.

    Example:
        >>> replay = Replay(capacity=100, length=4)
        >>> for t in range(10):
        ...     replay.add({"reward": np.full(2, t, np.float32)})  # one step of streams 0 and 1
        >>> replay.sample(3)["reward"].shape
        (3, 4)
    """

    def __init__(self, capacity: int, length: int, seed: int = 0) -> None:
        if capacity < length:
            raise ValueError(f"replay capacity {capacity} is smaller than the window length {length}")
        self.capacity = capacity
        self.length = length
        self.rng = np.random.default_rng(seed)
        self._clear()

    def _clear(self) -> None:
        self.data: dict[str, np.ndarray] = {}
        self.stream = np.full(self.capacity, -1, np.int64)
        self.seq = np.zeros(self.capacity, np.int64)
        self.next = np.full(self.capacity, -1, np.int64)
        self.last = np.full(0, -1, np.int64)  # per stream: slot of its newest step, -1 if none held
        self.count = np.zeros(0, np.int64)  # per stream: steps ever added
        self.pos = 0
        self.size = 0
        self.total = 0
        self._dirty: set[int] = set()  # chunks changed since the last save
        self._files: dict[int, str] = {}  # chunk -> file name of its last save
        self._generation = 0

    def add(self, steps: Mapping[str, np.ndarray], streams: Iterable[int] | None = None) -> None:
        """Appends one step to each of ``N`` streams.

        Args:
            steps: Arrays with a leading axis ``N``: one step per stream.
            streams: The stream id of each row; by default ``0 .. N-1`` (one per parallel environment).
        """
        n = len(next(iter(steps.values())))
        ids = np.arange(n) if streams is None else np.asarray(list(streams), np.int64)
        assert len(ids) == n and len(np.unique(ids)) == n, f"need {n} distinct stream ids, got {ids}"
        assert n <= self.capacity, f"{n} streams do not fit a replay of capacity {self.capacity}"
        self._grow_streams(int(ids.max()) + 1)
        slots = self._claim(n, steps)
        self._link(self.last[ids], slots)
        self.next[slots] = -1
        self._register(slots, ids, self.count[ids])
        self.count[ids] += 1
        self.last[ids] = slots

    def add_sequence(self, steps: Mapping[str, np.ndarray], stream: int) -> None:
        """Appends ``T`` consecutive steps (leading axis ``T``) to one stream."""
        n = len(next(iter(steps.values())))
        self._grow_streams(stream + 1)
        if n > self.capacity:
            # Only the newest steps fit; the rest would be evicted by this very call.
            steps = {key: value[n - self.capacity :] for key, value in steps.items()}
            self.count[stream] += n - self.capacity
            self.last[stream] = -1
            n = self.capacity
        if n == 0:
            return
        slots = self._claim(n, steps)
        self._link(self.last[[stream]], slots[:1])
        self.next[slots[:-1]] = slots[1:]
        self.next[slots[-1]] = -1
        self._register(slots, np.full(n, stream), self.count[stream] + np.arange(n))
        self.count[stream] += n
        self.last[stream] = slots[-1]

    def add_episodes(self, episodes: Iterable[Mapping[str, np.ndarray]]) -> int:
        """Appends whole episodes, in order, to one new stream; returns the steps added."""
        stream = len(self.count)
        self._grow_streams(stream + 1)
        added = 0
        for episode in episodes:
            self.add_sequence(episode, stream)
            added += len(episode["is_first"])
        return added

    def restore(self, store: EpisodeStore) -> int:
        """Fills the replay with the newest stored episodes that fit; returns the steps restored."""
        return self.add_episodes(store.episodes(newest_steps=self.capacity))

    def save(self, directory: str | Path) -> dict[str, Any]:
        """Writes the chunks changed since the last save; returns the manifest to checkpoint.

        Args:
            directory: The replay folder, usually ``<logdir>/replay``.

        Returns:
            Plain data (ints, lists, a dict) for :func:`~dreamworld.run.checkpoint.save_checkpoint`;
            :meth:`load` needs it back. Call :meth:`prune` once the checkpoint holding it is written.

        Raises:
            StorageError: A chunk could not be written (full disk); files of earlier saves are intact.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._generation += 1
        for chunk in sorted(self._dirty):
            lo, hi = chunk * CHUNK, min((chunk + 1) * CHUNK, self.capacity)
            arrays = {f"data.{key}": value[lo:hi] for key, value in self.data.items()}
            arrays.update(stream=self.stream[lo:hi], seq=self.seq[lo:hi], next=self.next[lo:hi])
            name = f"chunk-{chunk:06d}-{self._generation:08d}.npz"
            write_npz(directory / name, arrays, compress=False, what="the replay")
            self._files[chunk] = name
        self._dirty.clear()
        return {
            "capacity": self.capacity,
            "length": self.length,
            "pos": self.pos,
            "size": self.size,
            "total": self.total,
            "generation": self._generation,
            "last": self.last.tolist(),
            "count": self.count.tolist(),
            "rng": self.rng.bit_generator.state,
            "files": dict(self._files),
        }

    def mark_unsaved(self) -> None:
        """Makes the next :meth:`save` write every chunk (into a folder other than the one loaded)."""
        self._dirty.update(self._files)
        self._files = {}

    def prune(self, directory: str | Path, manifest: Mapping[str, Any]) -> None:
        """Deletes chunk files that ``manifest`` (the checkpointed one) does not name."""
        keep = set(manifest["files"].values())
        for path in Path(directory).glob("chunk-*.npz"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
        for path in Path(directory).glob(".chunk-*.npz.tmp"):
            path.unlink(missing_ok=True)

    def load(self, directory: str | Path, manifest: Mapping[str, Any]) -> None:
        """Restores the state :meth:`save` wrote: the same slots, links and sampler state.

        Raises:
            CheckpointError: The manifest belongs to a replay of another capacity or window length,
                or a chunk file is missing or unreadable.
        """
        directory = Path(directory)
        if (manifest["capacity"], manifest["length"]) != (self.capacity, self.length):
            raise CheckpointError(
                f"the saved replay has capacity {manifest['capacity']} and length {manifest['length']}, "
                f"this run {self.capacity} and {self.length}; keep replay.capacity/length or use --fresh"
            )
        self._clear()
        for chunk, name in sorted((int(c), n) for c, n in manifest["files"].items()):
            try:
                with np.load(directory / name, allow_pickle=False) as arrays:
                    lo = chunk * CHUNK
                    hi = lo + len(arrays["stream"])
                    for key in arrays.files:
                        if key.startswith("data."):
                            value = arrays[key]
                            if key[5:] not in self.data:
                                self.data[key[5:]] = np.zeros((self.capacity, *value.shape[1:]), value.dtype)
                            self.data[key[5:]][lo:hi] = value
                    self.stream[lo:hi], self.seq[lo:hi] = arrays["stream"], arrays["seq"]
                    self.next[lo:hi] = arrays["next"]
            except (OSError, ValueError, KeyError) as error:
                raise CheckpointError(
                    f"replay chunk {directory / name} is missing or unreadable ({error}); "
                    "start over with --fresh"
                ) from None
        self._files = {int(c): n for c, n in manifest["files"].items()}
        self.pos, self.size, self.total = manifest["pos"], manifest["size"], manifest["total"]
        self._generation = manifest["generation"]
        self.last = np.asarray(manifest["last"], np.int64)
        self.count = np.asarray(manifest["count"], np.int64)
        self.rng.bit_generator.state = manifest["rng"]

    def sample(self, batch: int) -> dict[str, np.ndarray]:
        """Draws ``batch`` windows uniformly over all valid starts.

        Args:
            batch: Number of windows ``B``.

        Returns:
            Every stored key as an array of shape ``(B, T, ...)``.

        Raises:
            ValueError: No stream holds ``T`` consecutive steps yet.
        """
        starts = self._sample_starts(batch)
        index = np.empty((batch, self.length), np.int64)
        index[:, 0] = starts
        for t in range(1, self.length):
            index[:, t] = self.next[index[:, t - 1]]
        return {key: value[index] for key, value in self.data.items()}

    def num_valid_starts(self) -> int:
        """How many windows of length ``T`` the replay holds."""
        return int(self._valid(np.arange(self.size)).sum())

    def stats(self) -> dict[str, float]:
        """Replay metrics under the ``replay/`` namespace."""
        return {
            "replay/size": float(self.size),
            "replay/inserted": float(self.total),
            "replay/streams": float((self.last >= 0).sum()),
        }

    def __len__(self) -> int:
        return self.size

    def _valid(self, slots: np.ndarray) -> np.ndarray:
        streams = self.stream[slots]
        newer = self.count[np.maximum(streams, 0)] - 1 - self.seq[slots]
        return (streams >= 0) & (newer >= self.length - 1)

    def _sample_starts(self, batch: int) -> np.ndarray:
        chosen: list[np.ndarray] = []
        needed = batch
        for _ in range(20 if self.size else 0):
            candidates = self.rng.integers(0, self.size, size=2 * needed + 8)
            chosen.append(candidates[self._valid(candidates)][:needed])
            needed -= len(chosen[-1])
            if needed == 0:
                return np.concatenate(chosen)
        # Few valid starts (little data so far): draw among them directly.
        valid = np.flatnonzero(self._valid(np.arange(self.size)))
        if len(valid) == 0:
            raise ValueError(
                f"the replay holds no sequence of {self.length} steps yet ({self.size} steps stored)"
            )
        return np.concatenate([*chosen, self.rng.choice(valid, size=needed)])

    def _grow_streams(self, n: int) -> None:
        if n > len(self.last):
            grow = n - len(self.last)
            self.last = np.concatenate([self.last, np.full(grow, -1, np.int64)])
            self.count = np.concatenate([self.count, np.zeros(grow, np.int64)])

    def _claim(self, n: int, steps: Mapping[str, np.ndarray]) -> np.ndarray:
        """Takes the next ``n`` ring slots, forgetting what they held, and writes ``steps`` there."""
        slots = (self.pos + np.arange(n)) % self.capacity
        old = self.stream[slots]
        held = old >= 0
        # A stream whose newest step is overwritten holds nothing any more: eviction is oldest-first.
        newest = held & (self.last[np.maximum(old, 0)] == slots)
        self.last[old[newest]] = -1
        self._write(slots, steps)
        self._dirty.update(np.unique(slots // CHUNK).tolist())
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        self.total += n
        return slots

    def _link(self, previous: np.ndarray, first: np.ndarray) -> None:
        linked = previous >= 0
        self.next[previous[linked]] = first[linked]
        self._dirty.update(np.unique(previous[linked] // CHUNK).tolist())

    def _register(self, slots: np.ndarray, ids: np.ndarray, seq: np.ndarray) -> None:
        self.stream[slots] = ids
        self.seq[slots] = seq

    def _write(self, slots: np.ndarray, steps: Mapping[str, np.ndarray]) -> None:
        for key, value in steps.items():
            value = np.asarray(value)
            if key not in self.data:
                if self.size:
                    raise KeyError(f"replay got a new key '{key}' after {self.size} steps without it")
                self.data[key] = np.zeros((self.capacity, *value.shape[1:]), value.dtype)
            self.data[key][slots] = value
        missing = self.data.keys() - steps.keys()
        if missing:
            raise KeyError(f"replay step lacks keys {sorted(missing)}")
