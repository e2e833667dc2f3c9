"""Episode store: round trip, order, atomic writes, a full disk, unreadable files."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from dreamworld.data.store import EpisodeStore
from dreamworld.errors import StorageError


def make_episode(length: int, value: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "image": np.full((length, 8, 8, 3), 7, np.uint8),
        "reward": np.full(length, value, np.float32),
        "is_first": np.arange(length) == 0,
        "action": np.zeros(length, np.int64),
    }


def test_round_trip_keeps_values_and_dtypes(tmp_path):
    store = EpisodeStore(tmp_path)
    episode = make_episode(12, 1.5)
    loaded = store.load(store.save(episode))
    assert loaded.keys() == episode.keys()
    for key, value in episode.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == value.dtype
    assert store.num_steps() == 12 and len(store) == 1


def test_files_sort_oldest_first(tmp_path):
    store = EpisodeStore(tmp_path)
    for i in range(5):
        store.save(make_episode(3, float(i)))
    values = [float(ep["reward"][0]) for ep in store.episodes()]
    assert values == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_mismatched_lengths_are_refused(tmp_path):
    with pytest.raises(ValueError, match="share their length"):
        EpisodeStore(tmp_path).save({"reward": np.zeros(3), "is_first": np.zeros(4, bool)})


def test_full_disk_keeps_existing_episodes_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    store = EpisodeStore(tmp_path)
    first = store.save(make_episode(4))

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StorageError, match="disk is full") as error:
        store.save(make_episode(4))
    assert "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]
    assert store.load(first)["reward"].shape == (4,)


def test_unreadable_file_is_skipped_with_a_warning(tmp_path):
    store = EpisodeStore(tmp_path)
    store.save(make_episode(3))
    (tmp_path / "20000101T000000-000000-deadbeef-len5.npz").write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="skipping unreadable episode"):
        episodes = list(store.episodes())
    assert len(episodes) == 1
