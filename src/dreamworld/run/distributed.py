"""Data-parallel runs on ``torch.distributed``: the ranks of a run, its launcher, gradient averaging.

A run of N ranks is N processes, each with its own environments, replay and batch; after every
backward pass the gradients are averaged over the ranks (:func:`average_gradients`, one all-reduce of
the flattened gradients, outside any compiled or captured graph), so every rank takes the same step
and keeps the same parameters. Statistics that a batch sets (DreamerV3's return percentiles, the
vector normalisation) are computed over the batches of all ranks (:func:`gather`), so that N ranks of
batch B take exactly the update of one rank of batch N x B.

Ranks come from the environment that ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``): ``torchrun --nnodes M --nproc-per-node N -m dreamworld train ...``
runs on several machines, and ``dreamworld train --nproc N`` starts N ranks on this one
(:func:`launch`). NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from dreamworld.errors import DreamworldError, RunInterrupted

TIMEOUT = datetime.timedelta(minutes=30)
"""How long a rank waits for the others at a collective (rank 0 evaluates while they wait)."""


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a run: its rank, the number of ranks, its rank on this machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes the logs, videos and checkpoints."""
        return self.rank == 0


_RANKS = Ranks()  # set once by setup(); a plain global, so that compiled code reads a constant
_CONTROL: object | None = None  # a gloo group for the loop's small decisions: no GPU synchronisation


def setup() -> Ranks:
    """Joins the process group the environment describes (torchrun's variables); a single process
    without them. Idempotent."""
    global _RANKS
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _RANKS
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend, timeout=TIMEOUT)
    global _CONTROL
    _CONTROL = dist.new_group(backend="gloo", timeout=TIMEOUT) if dist.get_backend() == "nccl" else None
    _RANKS = Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return _RANKS


def current() -> Ranks:
    """This process's :class:`Ranks` (rank 0 of 1 before :func:`setup` joined a process group)."""
    return _RANKS


def average_gradients(params: Sequence[Tensor]) -> None:
    """Replaces the gradients of ``params`` by their mean over the ranks (one all-reduce)."""
    if current().world <= 1:
        return
    grads = [param.grad for param in params if param.grad is not None]
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for grad, averaged in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads), strict=True):
        grad.copy_(averaged)


def gather(tensor: Tensor) -> Tensor:
    """``tensor`` of every rank, concatenated along the first axis (itself outside a process group)."""
    if current().world <= 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def gather_objects(value: object) -> list[object]:
    """``value`` of every rank, in rank order, on rank 0 (an empty list on the others)."""
    if current().world <= 1:
        return [value]
    parts: list[object] | None = [None] * dist.get_world_size() if current().main else None
    dist.gather_object(value, parts, dst=0, group=_CONTROL)  # type: ignore[arg-type]
    return parts or []


def barrier() -> None:
    """Waits until every rank is here."""
    if current().world > 1:
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank (each rank must call it at the same point)."""
    if current().world <= 1:
        return flag
    value = torch.tensor([float(flag)])  # on the CPU, through gloo (the control group on GPUs)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_CONTROL)
    return bool(value.item() > 0)


def check_replicas(module: torch.nn.Module) -> None:
    """Raises when the ranks' parameters differ (a rank that skipped or repeated an update).

    Each rank calls it at the same point; one all-gather of a checksum per rank.
    """
    if current().world <= 1:
        return
    checksum = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum().reshape(1)
    sums = gather(checksum.to(next(module.parameters()).device)).cpu()
    if not torch.all(sums == sums[0]):
        raise DreamworldError(
            f"the ranks' parameters differ (checksums {sums.tolist()}): a rank missed an update; resume "
            "from the last checkpoint"
        )


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank."""
    if current().world <= 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, 0)


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Runs ``dreamworld ARGV`` as ``nproc`` ranks on this machine, as torchrun does.

    Rank 0 prints to this terminal; the others write only their errors. When a rank fails, the
    others are stopped (no rank waits forever at a collective) and the error names the rank.

    Returns:
        0 when every rank finished.

    Raises:
        DreamworldError: A rank failed; the message names it and gives its last line.
    """
    port = _free_port()
    logs = Path(tempfile.mkdtemp(prefix="dreamworld-ranks-"))
    processes: list[subprocess.Popen[bytes]] = []
    for rank in range(nproc):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": str(nproc),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(nproc),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        errors = open(logs / f"rank-{rank}.err", "wb")  # noqa: SIM115 (closed below)
        output = None if rank == 0 else subprocess.DEVNULL
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "dreamworld.cli", *argv], env=env, stdout=output, stderr=errors
            )
        )
        errors.close()
    try:
        while True:
            codes = [process.poll() for process in processes]
            failed = [rank for rank, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                rank = failed[0]
                _stop(processes)
                text = (logs / f"rank-{rank}.err").read_text(errors="replace").strip().splitlines()
                last = text[-1] if text else "no message"
                if rank == 0 and codes[0] in (2, 130, 143):  # rank 0's own one-line error or interrupt
                    sys.stderr.write("\n".join(text[-1:]) + "\n" if text else "")
                    return int(codes[0] or 0)
                reason = last.removeprefix("error: ")
                raise DreamworldError(
                    f"rank {rank} of {nproc} failed (exit code {codes[rank]}): {reason}; the other ranks "
                    "were stopped"
                )
            if all(code == 0 for code in codes):
                sys.stderr.write((logs / "rank-0.err").read_text(errors="replace"))
                return 0
            time.sleep(0.2)
    except KeyboardInterrupt as stop:
        # Ctrl-C reached every rank (one process group); a SIGTERM sent to the launcher alone is
        # passed on. Each rank then saves and stops on its own.
        if isinstance(stop, RunInterrupted):
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait()
        return 143 if isinstance(stop, RunInterrupted) else 130
    finally:
        _stop(processes)
        shutil.rmtree(logs, ignore_errors=True)


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
