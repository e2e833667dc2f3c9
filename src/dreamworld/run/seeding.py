"""One seeding entry point, and the global random state as plain data for checkpoints.

:func:`seed_everything` seeds every global generator a run draws from (python ``random``,
numpy's legacy global generator, torch on CPU and CUDA) and hands back a fresh
:class:`numpy.random.Generator` for the caller's own streams. :func:`rng_state` and
:func:`set_rng_state` capture and restore the global generators, so that a resumed run continues
the exact random sequence of the interrupted one.

The state is built from dicts, lists, tuples, ints, floats and tensors only, so it loads with
``torch.load(weights_only=True)`` (see :mod:`dreamworld.run.checkpoint`). A caller's own
``numpy.random.Generator`` is saved as ``gen.bit_generator.state`` (a dict of Python ints, safe as
it is) and restored by assigning that dict back.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = False) -> np.random.Generator:
    """Seeds python ``random``, numpy's global generator and torch (CPU and every CUDA device).

    ``PYTHONHASHSEED`` is left alone: the hash seed of a running interpreter is fixed at start-up,
    so setting it here would only change child processes, and no result of dreamworld depends on
    the iteration order of sets of strings.

    Args:
        seed: An integer in ``[0, 2**64)``.
        deterministic: Also make torch refuse nondeterministic kernels
            (``torch.use_deterministic_algorithms(True)``, cuDNN autotuning off). Slower on a GPU,
            and an op without a deterministic kernel then raises instead of silently varying.

    Returns:
        A new generator seeded from ``seed``, for the caller's own random streams.

    Example:
        >>> rng = seed_everything(0)
        >>> first = torch.rand(1)
        >>> _ = seed_everything(0)
        >>> bool(torch.rand(1) == first)
        True
    """
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # the legacy global generator only takes 32-bit seeds
    torch.manual_seed(seed)  # also seeds every CUDA device, lazily
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic on CUDA >= 10.2; it reads this
        # variable when it first initialises, so it is set before any GPU work.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)
    return np.random.default_rng(seed)


def rng_state() -> dict[str, Any]:
    """Captures the state of the global generators as data that loads with ``weights_only=True``.

    Returns:
        A dict with ``python`` (``random.getstate()``), ``numpy`` (the legacy global generator, its
        key as a list of ints), ``torch`` (the CPU state tensor) and, when CUDA is available,
        ``torch_cuda`` (one state tensor per device).

    Example:
        >>> state = rng_state()
        >>> a = random.random()
        >>> set_rng_state(state)
        >>> random.random() == a
        True
    """
    numpy_state = np.random.get_state(legacy=False)
    # The MT19937 key is a uint32 array, which weights_only loading refuses; plain ints load.
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": numpy_state,
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restores the global generators from :func:`rng_state`'s output.

    A CUDA state is restored on as many devices as both the saved state and this machine have, and
    ignored on a machine without CUDA: the run continues, but its GPU draws differ from the
    original's.

    Args:
        state: The dict returned by :func:`rng_state`, possibly after a checkpoint round trip
            (tensors on any device, tuples turned into lists).

    Example:
        >>> saved = rng_state()
        >>> x = np.random.rand()
        >>> set_rng_state(saved)
        >>> np.random.rand() == x
        True
    """
    version, internal, gauss_next = state["python"]
    # random.setstate insists on a tuple of ints, which a serialiser may have turned into a list.
    random.setstate((version, tuple(internal), gauss_next))
    np.random.set_state(dict(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())
    if "torch_cuda" in state and torch.cuda.is_available():
        cuda_states = list(state["torch_cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
