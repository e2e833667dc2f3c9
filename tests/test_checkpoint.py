"""Checkpoints: exact round trips, atomic under SIGKILL, one-line errors for bad files."""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import dreamworld
from dreamworld.errors import CheckpointError, StorageError
from dreamworld.run.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT,
    FORMAT_VERSION,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from dreamworld.run.seeding import rng_state

SRC = str(Path(dreamworld.__file__).resolve().parents[1])


def trained(steps: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A small model and an Adam optimiser with non-trivial moments."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ELU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        update(model, optimizer)
    return model, optimizer


def update(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    loss = model(torch.linspace(-1, 1, 20).reshape(5, 4)).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


def test_round_trip_is_exact_and_training_continues_identically(tmp_path):
    model, optimizer = trained(steps=3)
    config = {"lr": 1e-2, "units": [8, 8], "act": "elu", "kl": {"free": 1.0, "balance": None}}
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": 1234,
        "rng": rng_state(),
        "generator": np.random.default_rng(5).bit_generator.state,
        "config": config,
        "shape": torch.Size([3, 4]),
    }
    path = save_checkpoint(tmp_path / "run" / CHECKPOINT_NAME, state, kind="dreamer")
    loaded = load_checkpoint(path, kind="dreamer")
    assert_same(loaded, state)

    restored, restored_optimizer = trained(steps=0)
    restored.load_state_dict(loaded["model"])
    restored_optimizer.load_state_dict(loaded["optimizer"])
    update(model, optimizer)
    update(restored, restored_optimizer)
    for a, b in zip(model.parameters(), restored.parameters(), strict=True):
        assert torch.equal(a, b)


def test_state_that_would_not_load_safely_is_refused_when_saving(tmp_path):
    state = {"config": {"lr": np.float64(0.1)}}
    with pytest.raises(TypeError, match=r"state\['config'\]\['lr'\], a numpy.float64"):
        save_checkpoint(tmp_path / CHECKPOINT_NAME, state, kind="dreamer")
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_latest_checkpoint_and_stale_temporaries(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    stale = tmp_path / f".{CHECKPOINT_NAME}.999-dead.tmp"
    other = tmp_path / ".vae.pt.999-dead.tmp"
    stale.write_bytes(b"half a checkpoint")
    other.write_bytes(b"another target's")
    assert latest_checkpoint(tmp_path) is None
    path = save_checkpoint(tmp_path / CHECKPOINT_NAME, {"step": 1}, kind="dreamer")
    assert latest_checkpoint(tmp_path) == path
    assert sorted(os.listdir(tmp_path)) == sorted([CHECKPOINT_NAME, other.name])


SAVER = """
import sys, time
import torch
from dreamworld.run.checkpoint import save_checkpoint
big = torch.empty(4_000_000)
sys.stdin.readline()
deadline = time.monotonic() + 60
i = 0
while time.monotonic() < deadline:
    i += 1
    big.fill_(i)
    save_checkpoint(sys.argv[1], {"i": i, "big": big}, kind="test")
    print(i, flush=True)
"""


def test_sigkill_during_saves_never_leaves_a_broken_checkpoint(tmp_path):
    target = save_checkpoint(tmp_path / CHECKPOINT_NAME, {"i": 0}, kind="test")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    # Start every saver at once so that their imports overlap; each waits for its turn.
    savers = [
        subprocess.Popen(
            [sys.executable, "-c", SAVER, str(target)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    rng = random.Random(0)
    try:
        for saver in savers:
            assert saver.stdin is not None and saver.stdout is not None and saver.stderr is not None
            saver.stdin.write("go\n")
            saver.stdin.flush()
            assert saver.stdout.readline(), saver.stderr.read()  # one save done: now overwriting
            time.sleep(rng.uniform(0.0, 0.3))
            saver.kill()
            saver.wait()
            state = load_checkpoint(target, kind="test")
            assert state["i"] >= 1 and torch.all(state["big"] == state["i"])
    finally:
        for saver in savers:
            saver.kill()
            saver.wait()
    save_checkpoint(target, {"i": -1}, kind="test")
    assert os.listdir(tmp_path) == [CHECKPOINT_NAME]  # the killed saves' temporaries are gone


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path):
    import resource

    target = save_checkpoint(tmp_path / CHECKPOINT_NAME, {"i": 0}, kind="test")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Past the size limit a write fails with EFBIG, like ENOSPC on a full disk, once SIGXFSZ
    # no longer kills the process.
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
    try:
        with pytest.raises(StorageError) as error:
            save_checkpoint(target, {"i": 1, "big": torch.zeros(1_000_000)}, kind="test")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    message = str(error.value)
    assert "File too large" in message and str(target) in message and "\n" not in message
    assert load_checkpoint(target, kind="test") == {"i": 0}
    assert os.listdir(tmp_path) == [CHECKPOINT_NAME]


def test_unwritable_location_is_a_storage_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StorageError, match="could not save checkpoint"):
        save_checkpoint(tmp_path / "file" / CHECKPOINT_NAME, {"i": 0}, kind="test")


class RunsCode:
    """Unpickling this creates a directory: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def write_bad_file(path: Path, case: str) -> None:
    valid = path.parent / "valid.pt"
    save_checkpoint(valid, {"weights": torch.arange(10_000.0)}, kind="dreamer")
    envelope = {"format": FORMAT, "version": FORMAT_VERSION, "kind": "dreamer", "state": {}}
    if case == "truncated":
        path.write_bytes(valid.read_bytes()[: valid.stat().st_size // 2])
    elif case == "bit flip":
        data = bytearray(valid.read_bytes())
        data[len(data) // 2] ^= 0x10  # inside the tensor's bytes
        path.write_bytes(bytes(data))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif case == "plain torch file":
        torch.save({"a": 1}, path)
    elif case == "legacy torch file":
        torch.save({"a": 1}, path, _use_new_zipfile_serialization=False)
    elif case == "pickle":
        path.write_bytes(pickle.dumps({"a": 1}))
    elif case == "newer format":
        torch.save({**envelope, "version": FORMAT_VERSION + 1, "dreamworld": "9.0.0"}, path)
    elif case == "other kind":
        save_checkpoint(path, {}, kind="worldmodels-vae")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no checkpoint at"),
        ("truncated", "is truncated or corrupt"),
        ("bit flip", "is corrupt (checksum mismatch"),
        ("empty", "is empty"),
        ("random bytes", "not a dreamworld checkpoint"),
        ("plain torch file", "not a dreamworld checkpoint"),
        ("legacy torch file", "not a dreamworld checkpoint"),
        ("pickle", "not a dreamworld checkpoint"),
        ("newer format", f"checkpoint format {FORMAT_VERSION + 1}, written by dreamworld 9.0.0"),
        ("other kind", "is a 'worldmodels-vae' checkpoint, expected 'dreamer'"),
    ],
)
def test_bad_files_are_one_line_checkpoint_errors(tmp_path, case, message):
    path = tmp_path / "bad.pt"
    write_bad_file(path, case)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, kind="dreamer")
    assert message in str(error.value) and "\n" not in str(error.value)
    chained = error.value.__cause__ or (not error.value.__suppress_context__ and error.value.__context__)
    assert not chained, "a CheckpointError carries no traceback of the failure inside torch"


@pytest.mark.parametrize("container", ["torch", "pickle"])
def test_a_file_with_code_in_it_is_refused_without_running_the_code(tmp_path, container):
    marker, path = tmp_path / "code-ran", tmp_path / "evil.pt"
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": "dreamer",
        "x": RunsCode(marker),
    }
    if container == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError, match="not a dreamworld checkpoint") as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)
    assert not marker.exists()
    if container == "torch":
        assert "posix.mkdir" in str(error.value) or "nt.mkdir" in str(error.value)
        torch.load(path, weights_only=False)  # the control: an unsafe load does run it
        assert marker.exists()
