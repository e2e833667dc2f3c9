"""How Dreamer's update runs (``dreamer.compile``): eagerly, through ``torch.compile``, or compiled and
captured in CUDA graphs, and the warm-up that compiles it before training.

Three parts of an update are compiled whole (``fullgraph=True``, static shapes): the world-model loss
with the observe loop over ``T``, the imagination over ``H`` steps with the actor and critic losses,
and each optimiser's step. Their backward passes are compiled with them. On a GPU the eager update is
bound by launching ~10,000 small kernels (../shared/GPU.md); compiled, they fuse, and captured in
CUDA graphs, a whole graph launches at once. On a CPU the eager update is faster (docs/benchmarks.md).
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from dreamworld.algos.dreamer.agent import Dreamer

MODES = ("none", "compile", "cudagraphs")


def compile_mode(name: str, device: torch.device) -> str:
    """``dreamer.compile`` resolved for a device: ``auto`` captures CUDA updates in CUDA graphs and
    keeps the CPU eager, its fastest measured path."""
    if name == "auto":
        return "cudagraphs" if device.type == "cuda" else "none"
    assert name in MODES, name
    return name


def compile_options(mode: str) -> dict[str, Any]:
    """``torch.compile``'s arguments for a mode other than ``none``."""
    return {"fullgraph": True, "dynamic": False, "mode": "reduce-overhead" if mode == "cudagraphs" else None}


def use_mode(agent: Dreamer, mode: str) -> None:
    """Sets how ``agent``'s update runs.

    The eager update takes two CPU shortcuts that depend on values: one-hot latents as indices (a
    custom kernel) and skipping resets at steps where no sequence starts (read on the host). A
    compiled update keeps every shape and branch static instead.
    """
    agent.compile_mode, agent.sparse = mode, mode == "none"
    if mode == "none":
        agent._world_model_loss, agent._behaviour = agent.world_model_loss, agent.behaviour
        for opt in agent.opts.values():
            opt.__dict__.pop("apply", None)  # the class's eager step again
        return
    # Each agent's graphs are its own (its parameters are their inputs): a process that builds several
    # agents (seeds in a notebook, a benchmark's rows) needs more versions of a function than dynamo's
    # default of 8.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    options = compile_options(mode)
    agent._world_model_loss = torch.compile(agent.world_model_loss, **options)
    agent._behaviour = torch.compile(agent.behaviour, **options)
    for opt in agent.opts.values():
        opt.compile(options)


def warmup(agent: Dreamer, data: dict[str, np.ndarray], steps: int = 3) -> float:
    """Compiles (and captures) ``agent``'s update before training: ``steps`` updates on ``data``, after
    which networks, optimisers and random state are put back as they were.

    A compiler that fails (no C compiler, no Triton, an unsupported operation) leaves the agent eager
    with one warning naming the reason. Returns the seconds it took; an eager agent needs none (0).
    """
    if agent.compile_mode == "none":
        return 0.0
    saved = copy.deepcopy(agent.training_state())
    rng = torch.random.get_rng_state()
    cuda = agent.device.type == "cuda"
    cuda_rng = torch.cuda.get_rng_state_all() if cuda else None
    began = time.perf_counter()
    try:
        for _ in range(steps):
            agent.train_step(data)
        if cuda:
            torch.cuda.synchronize(agent.device)
    except Exception as error:  # a compiler that cannot build here must not stop the training
        warnings.warn(
            f"dreamer.compile {agent.compile_mode} failed ({_reason(error)}); training eagerly (set "
            "--dreamer.compile none to skip the attempt)",
            stacklevel=3,
        )
        use_mode(agent, "none")
    seconds = time.perf_counter() - began
    agent.load_training_state(saved)
    agent.nonfinite_streak.zero_()
    torch.random.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state_all(cuda_rng)
    return seconds


def _reason(error: BaseException) -> str:
    """The innermost cause of a compiler's error, on one line."""
    while (inner := error.__cause__ or getattr(error, "inner_exception", None)) is not None:
        error = inner
    first = (str(error).strip().splitlines() or [""])[0][:200]
    return f"{type(error).__name__}: {first}"
