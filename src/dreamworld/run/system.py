"""Process-wide settings that make CPU training fast."""

from __future__ import annotations

import ctypes
import sys

import torch

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator() -> bool:
    """Keeps freed tensor memory inside the process instead of returning it to the system.

    glibc serves large allocations with fresh ``mmap`` pages and unmaps them when freed, so every
    megabyte-sized temporary of an update (Dreamer makes thousands) page-faults anew; on a 2-core
    machine that doubled the time of imagination (docs/benchmarks.md). Raising the mmap and trim
    thresholds lets freed blocks be reused. Does nothing outside glibc-based Linux.

    Returns:
        Whether the allocator was tuned.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 31))


def pick_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
