"""Dreamer training throughput: updates/s, FLOP rate against the machine's matmul rate, memory.

For DreamerV3 at batch 16 x 64 on dmc walker-walk (proprio), two model sizes:

- ``small``: deter 128, units 128, 32 x 32 categorical latents (about 1.5M parameters);
- ``medium``: deter 512, units 512, 32 x 32 (about 10M parameters).

Printed per size: parameters, seconds to the first update (building the agent included), train
updates/s (median over ``--blocks`` blocks, and their range), floating-point operations of one update
(counted by torch's FLOP counter), achieved GFLOP/s and its fraction of a large matmul's rate measured
right after each block (median), peak resident memory, and environment steps/s of the full training
loop (acting, replay, updates at the preset's train ratio).

Usage::

    python benchmarks/throughput.py --threads 1 --updates 5
    python benchmarks/throughput.py --sizes small --threads 2 --loop-steps 400
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from dreamworld.algos.dreamer.agent import Dreamer
from dreamworld.config import load_config
from dreamworld.data import Replay
from dreamworld.envs import make_env
from dreamworld.run.system import tune_allocator
from dreamworld.run.train import pick_device, train

SIZES = {
    "small": {"deter": 128, "units": 128},
    "medium": {"deter": 512, "units": 512},
}


def size_overrides(name: str) -> dict[str, str]:
    size = SIZES[name]
    return {
        "dreamer.world_model.deter": str(size["deter"]),
        "dreamer.world_model.units": str(size["units"]),
        "dreamer.actor.units": str(size["units"]),
        "dreamer.critic.units": str(size["units"]),
    }


def matmul_rate(device: torch.device, n: int = 1024, repeats: int = 20) -> float:
    """GFLOP/s of an n x n float32 matmul, the machine's practical peak for these models."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def replay_batch(env_name: str, batch: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A realistic batch: random-policy episodes of the real task, sampled from a replay."""
    env = make_env(env_name, obs="vector")
    replay = Replay(capacity=100_000, length=length, seed=seed)
    rng = np.random.default_rng(seed)
    obs = env.reset(seed=seed)
    for _ in range(batch * length + length):
        action = rng.uniform(-1, 1, env.act_space.shape).astype(np.float32)
        replay.add({key: np.asarray(value)[None] for key, value in {**obs, "action": action}.items()})
        obs = env.reset() if obs["is_last"] else env.step(action)
    return replay.sample(batch)


def measure_updates(args: argparse.Namespace, size: str) -> dict[str, float]:
    began = time.perf_counter()
    config = load_config(["dreamerv3", "dmc_proprio"], overrides=size_overrides(size))
    device = pick_device(args.device)
    env = make_env(args.env, obs="vector")
    data = replay_batch(args.env, config.replay.batch, config.replay.length)
    torch.manual_seed(0)
    agent = Dreamer(config.dreamer, env.obs_space, env.act_space, device)
    agent.train_step(data)
    _sync(device)
    first = time.perf_counter() - began
    with FlopCounterMode(display=False) as counter:
        agent.train_step(data)
    flops = counter.get_total_flops()
    # The speed of a shared VM drifts by a quarter within minutes: time the updates in blocks, each
    # followed by the matmul rate of that moment, and report medians (and the range of updates/s).
    rates, fractions, matmuls = [], [], []
    for _ in range(args.blocks):
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.updates):
            agent.train_step(data)
        _sync(device)
        seconds = (time.perf_counter() - start) / args.updates
        matmuls.append(matmul_rate(device))
        rates.append(1 / seconds)
        fractions.append(flops / 1e9 / seconds / matmuls[-1])
    params = sum(p.numel() for p in agent.parameters() if p.requires_grad)
    peak = _peak_memory_gb(device)
    rate = float(np.median(rates))
    return {
        "params_m": params / 1e6,
        "first_update_s": first,
        "updates_per_s": rate,
        "updates_per_s_min": min(rates),
        "updates_per_s_max": max(rates),
        "gflop_per_update": flops / 1e9,
        "gflop_per_s": flops / 1e9 * rate,
        "matmul_gflop_per_s": float(np.median(matmuls)),
        "fraction_of_matmul": float(np.median(fractions)),
        "peak_memory_gb": peak,
    }


def measure_loop(args: argparse.Namespace, size: str) -> float:
    """Environment steps/s of the whole training loop after prefill."""
    with tempfile.TemporaryDirectory() as logdir:
        overrides = {
            **size_overrides(size),
            "logdir": logdir,
            "env.name": args.env,
            "env.parallel": "serial",
            "dreamer.prefill": "1100",
            "dreamer.eval_every": "0",
            "dreamer.eval_episodes": "0",
            "dreamer.report_every": "0",
            "log.progress": "false",
            "dreamer.device": args.device,
        }
        config = load_config(["dreamerv3", "dmc_proprio"], overrides={**overrides, "dreamer.steps": "1100"})
        train(config)  # prefill and the first updates
        config = load_config(
            ["dreamerv3", "dmc_proprio"],
            overrides={**overrides, "dreamer.steps": str(1100 + args.loop_steps)},
        )
        start = time.perf_counter()
        train(config)
        return args.loop_steps / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--env", default="dmc/walker-walk")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--updates", type=int, default=5, help="timed updates per block")
    parser.add_argument("--blocks", type=int, default=3, help="timed blocks, each with a matmul rate")
    parser.add_argument("--loop-steps", type=int, default=0, help="policy steps of the full-loop measurement")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_allocator()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {pick_device(args.device)}")
    for size in args.sizes:
        row = measure_updates(args, size)
        if args.loop_steps:
            row["loop_env_steps_per_s"] = measure_loop(args, size)
        print(size, " ".join(f"{key}={value:.3g}" for key, value in row.items()), flush=True)


if __name__ == "__main__":
    main()
