"""Seeding: the same seed gives the same draws, and a saved RNG state resumes the exact sequence."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from dreamworld.run.checkpoint import load_checkpoint, save_checkpoint
from dreamworld.run.seeding import rng_state, seed_everything, set_rng_state


def draws(generator: np.random.Generator | None = None) -> list[float]:
    """One draw from every global generator and the caller's; gaussians test their caches."""
    values = [
        random.random(),
        random.gauss(0, 1),
        float(np.random.rand()),
        float(np.random.randn()),
    ]
    values += torch.rand(3).tolist() + torch.randn(2).tolist()
    if generator is not None:
        values += generator.random(2).tolist()
    return values


def test_same_seed_same_draws_and_another_seed_differs():
    first = draws(seed_everything(7))
    again = draws(seed_everything(7))
    other = draws(seed_everything(8))
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))


def test_rng_state_round_trip_restores_the_next_draws():
    seed_everything(3)
    random.gauss(0, 1), np.random.randn()  # leave a cached gaussian in python and numpy
    state = rng_state()
    expected = draws()
    assert draws() != expected
    set_rng_state(state)
    assert draws() == expected


def test_rng_state_survives_a_checkpoint(tmp_path):
    generator = seed_everything(11)
    random.gauss(0, 1), np.random.randn(), generator.normal()
    # PCG64's state holds 128-bit Python ints, stored as they are.
    saved = {"rng": rng_state(), "generator": generator.bit_generator.state}
    save_checkpoint(tmp_path / "checkpoint.pt", saved, kind="test")
    expected = draws(generator)

    seed_everything(0)  # disturb everything before restoring
    state = load_checkpoint(tmp_path / "checkpoint.pt", kind="test")
    set_rng_state(state["rng"])
    restored = np.random.default_rng()
    restored.bit_generator.state = state["generator"]
    assert draws(restored) == expected


def test_deterministic_mode_is_switched_on_only_when_asked(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own setting is kept
    before = torch.are_deterministic_algorithms_enabled()
    try:
        seed_everything(0)
        assert torch.are_deterministic_algorithms_enabled() == before
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    finally:
        torch.use_deterministic_algorithms(before)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_out_of_range_is_refused(seed):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(seed)
