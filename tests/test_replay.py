"""Sequence replay: window contents, episode boundaries, eviction, coverage, restore from disk."""

from __future__ import annotations

import numpy as np
import pytest

from dreamworld.data.replay import Replay
from dreamworld.data.store import EpisodeStore


def episode(episode_id: int, length: int) -> dict[str, np.ndarray]:
    """An episode whose vector is (episode id, time index), so windows can be checked exactly."""
    t = np.arange(length)
    return {
        "vector": np.stack([np.full(length, episode_id), t], -1).astype(np.float32),
        "reward": t.astype(np.float32),
        "is_first": t == 0,
        "is_last": t == length - 1,
        "is_terminal": np.zeros(length, bool),
        "action": np.zeros((length, 2), np.float32),
    }


def fill_streams(replay: Replay, lengths_per_stream: list[list[int]]) -> None:
    """Steps several streams in lockstep, each playing its episodes back to back."""
    flats = []
    next_id = 0
    for lengths in lengths_per_stream:
        parts = []
        for length in lengths:
            parts.append(episode(next_id, length))
            next_id += 1
        flats.append({key: np.concatenate([p[key] for p in parts]) for key in parts[0]})
    steps = min(len(flat["reward"]) for flat in flats)
    for t in range(steps):
        replay.add({key: np.stack([flat[key][t] for flat in flats]) for key in flats[0]})


def check_window(window: dict[str, np.ndarray]) -> None:
    ids, times = window["vector"][..., 0], window["vector"][..., 1]
    same = (ids[:, 1:] == ids[:, :-1]) & (times[:, 1:] == times[:, :-1] + 1)
    new_episode = window["is_first"][:, 1:] & (times[:, 1:] == 0)
    assert np.all(same | new_episode), "a window crossed an episode boundary without is_first"
    assert np.all(window["is_first"] == (times == 0))


def test_windows_have_shape_and_respect_episode_boundaries():
    replay = Replay(capacity=1000, length=16, seed=1)
    fill_streams(replay, [[5, 30, 12, 40], [17, 9, 60], [100]])
    batch = replay.sample(256)
    assert batch["vector"].shape == (256, 16, 2)
    assert batch["action"].shape == (256, 16, 2)
    assert batch["is_first"].dtype == bool
    check_window(batch)
    # Short episodes still appear: windows cross into the next episode at its is_first.
    assert batch["is_first"][:, 1:].any()


def test_windows_never_join_two_streams():
    replay = Replay(capacity=500, length=8)
    fill_streams(replay, [[200], [200]])  # two streams, each one long episode with distinct ids
    batch = replay.sample(512)
    ids = batch["vector"][..., 0]
    assert np.all(ids == ids[:, :1])


def test_eviction_is_oldest_first():
    replay = Replay(capacity=50, length=4)
    for t in range(120):
        replay.add({"reward": np.array([t], np.float32), "is_first": np.array([t == 0])})
    assert len(replay) == 50 and replay.total == 120
    held = set(replay.sample(2000)["reward"].ravel().astype(int).tolist())
    assert held == set(range(70, 120))


def test_eviction_across_streams_keeps_links_valid():
    """A stream that pauses long enough to be evicted restarts cleanly when it resumes."""
    replay = Replay(capacity=40, length=5)
    for t in range(10):
        replay.add({"vector": np.array([[0, t], [1, t]], np.float32), "is_first": np.array([t == 0] * 2)})
    for t in range(10, 60):  # stream 1 alone: stream 0's steps are evicted
        replay.add({"vector": np.array([[1, t]], np.float32), "is_first": np.array([False])}, [1])
    for t in range(100, 110):  # stream 0 resumes as a new episode
        vector = np.array([[0, t]], np.float32)
        replay.add({"vector": vector, "is_first": np.array([t == 100])}, [0])
    batch = replay.sample(1000)
    ids, times = batch["vector"][..., 0], batch["vector"][..., 1]
    assert np.all(ids == ids[:, :1])
    assert np.all(np.diff(times, axis=1) == 1), "a window followed a link into overwritten data"
    assert times.min() >= 30


def test_uniform_coverage_of_window_starts():
    length, steps = 10, 110
    replay = Replay(capacity=1000, length=length, seed=3)
    replay.add_sequence(episode(0, steps), stream=0)
    starts = replay.sample(20_000)["vector"][:, 0, 1].astype(int)
    counts = np.bincount(starts, minlength=steps)
    valid = steps - length + 1
    assert counts[valid:].sum() == 0, "a window ran past the newest step"
    expected = 20_000 / valid
    assert np.all(np.abs(counts[:valid] - expected) < 5 * np.sqrt(expected))


def test_sampling_before_a_full_window_exists_is_an_error():
    replay = Replay(capacity=100, length=10)
    replay.add_sequence(episode(0, 9), stream=0)
    with pytest.raises(ValueError, match="no sequence of 10 steps"):
        replay.sample(1)
    replay.add_sequence(episode(1, 1), stream=0)
    assert replay.sample(4)["vector"].shape == (4, 10, 2)


def test_a_sequence_longer_than_the_capacity_keeps_its_newest_steps():
    replay = Replay(capacity=20, length=5)
    replay.add_sequence(episode(0, 30), stream=0)
    times = replay.sample(500)["vector"][..., 1]
    assert times.min() == 10 and times.max() == 29


def test_restore_from_disk_equals_what_was_written(tmp_path):
    store = EpisodeStore(tmp_path / "episodes")
    written = [episode(i, length) for i, length in enumerate([7, 20, 3, 15])]
    for ep in written:
        store.save(ep)
    replay = Replay(capacity=1000, length=4)
    assert replay.restore(store) == 45
    order = np.argsort(replay.seq[: replay.size])
    for key, value in written[0].items():
        restored = replay.data[key][: replay.size][order]
        np.testing.assert_array_equal(restored, np.concatenate([ep[key] for ep in written]))
        assert restored.dtype == value.dtype
    check_window(replay.sample(300))


def test_restore_reads_only_the_newest_episodes_that_fit(tmp_path):
    store = EpisodeStore(tmp_path)
    for i in range(5):
        store.save(episode(i, 10))
    replay = Replay(capacity=25, length=4)
    assert replay.restore(store) == 30  # episodes 2, 3, 4: the fewest newest that fill 25 steps
    ids = set(replay.sample(500)["vector"][..., 0].ravel().astype(int).tolist())
    assert ids <= {2, 3, 4} and 4 in ids


def test_save_and_load_restore_every_slot_and_the_sampler(tmp_path):
    from dreamworld.data.replay import CHUNK

    replay = Replay(capacity=3 * CHUNK, length=8, seed=1)
    fill_streams(replay, [[700, 900, 400], [1500, 1200]])  # wraps around the ring
    manifest = replay.save(tmp_path)
    copy = Replay(capacity=3 * CHUNK, length=8, seed=99)
    copy.load(tmp_path, manifest)
    for name in ("stream", "seq", "next", "last", "count"):
        np.testing.assert_array_equal(getattr(copy, name), getattr(replay, name), err_msg=name)
    assert (copy.pos, copy.size, copy.total) == (replay.pos, replay.size, replay.total)
    a, b = replay.sample(16), copy.sample(16)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_saves_write_only_changed_chunks_and_prune_old_files(tmp_path):
    from dreamworld.data.replay import CHUNK

    replay = Replay(capacity=4 * CHUNK, length=4)
    fill_streams(replay, [[CHUNK + 10]])
    first = replay.save(tmp_path)
    replay.prune(tmp_path, first)
    assert sorted(first["files"]) == [0, 1]
    fill_streams(replay, [[20]])  # new steps land in chunk 1 only
    second = replay.save(tmp_path)
    assert second["files"][0] == first["files"][0] and second["files"][1] != first["files"][1]
    # Until the checkpoint holding ``second`` is written, the files of ``first`` must all survive.
    assert {p.name for p in tmp_path.iterdir()} >= set(first["files"].values())
    replay.prune(tmp_path, second)
    assert {p.name for p in tmp_path.iterdir()} == set(second["files"].values())


def test_loading_a_foreign_or_damaged_replay_is_a_checkpoint_error(tmp_path):
    from dreamworld.errors import CheckpointError

    replay = Replay(capacity=100, length=4)
    fill_streams(replay, [[30]])
    manifest = replay.save(tmp_path)
    with pytest.raises(CheckpointError, match="capacity"):
        Replay(capacity=200, length=4).load(tmp_path, manifest)
    next(tmp_path.glob("chunk-*.npz")).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable"):
        Replay(capacity=100, length=4).load(tmp_path, manifest)


def test_a_full_disk_during_save_keeps_the_last_saved_replay(tmp_path, monkeypatch):
    import errno
    import os

    from dreamworld.errors import StorageError

    replay = Replay(capacity=100, length=4)
    fill_streams(replay, [[30]])
    manifest = replay.save(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    fill_streams(replay, [[10]])

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StorageError, match="disk is full"):
        replay.save(tmp_path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    restored = Replay(capacity=100, length=4)
    restored.load(tmp_path, manifest)
    assert restored.total == 30
