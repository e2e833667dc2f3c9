"""Process-wide settings that make CPU training fast."""

from __future__ import annotations

import ctypes
import os
import sys
import time

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


def free_cores(seconds: float = 0.3) -> float | None:
    """How many of this process's cores were idle over the next ``seconds`` (from ``/proc/stat``);
    None where that cannot be read (not Linux)."""
    try:
        before = _cpu_times()
        time.sleep(seconds)
        after = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    total = sum(after) - sum(before)
    if total <= 0:
        return None
    idle = (after[3] + after[4]) - (before[3] + before[4])  # idle + iowait
    machine = os.cpu_count() or 1
    return min(len(os.sched_getaffinity(0)), machine * idle / total)


def learner_threads(configured: int) -> int:
    """The torch threads of a learner: ``configured`` when positive, else the cores free right now.

    OpenMP threads that find their core taken spin-wait for each other: on 2 cores beside one busy
    process, a 2-thread update ran several times slower than a 1-thread one (docs/benchmarks.md,
    "learner under load"). So a run takes the cores that are idle when it starts, at least one.
    """
    if configured > 0:
        return configured
    free = free_cores()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if free is None:
        return torch.get_num_threads()
    # A core counts as free when it is at least half idle: round to nearest.
    return max(1, min(cores, int(free + 0.5)))


def _cpu_times() -> list[int]:
    with open("/proc/stat", encoding="ascii") as file:
        fields = file.readline().split()
    return [int(value) for value in fields[1:9]]
