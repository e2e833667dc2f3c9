"""Dreamer training throughput: time per update, FLOP rate against the device's peak, kernels, memory.

DreamerV3 updates on replayed batches of ``B x 64`` for every combination of the chosen model sizes,
observations, precisions, compile modes and batch sizes:

- sizes: ``small`` (deter 128, units 128, about 1.5M parameters) and ``medium`` (deter 512, units
  512, about 10M), the CPU records' sizes; ``size1m``, ``size12m``, ``size25m``, ``size50m``, DreamerV3's
  scaling presets (the block-diagonal core);
- observations: ``vector`` (the proprioception of ``--env``, random-policy episodes of the real task
  when it can be built, else random data of dmc walker-walk's shapes) or ``image`` (64x64x3 frames,
  random pixels: an update costs the same whatever they show);
- ``--compile``: none, compile (torch.compile), cudagraphs (compiled and captured), auto;
- ``--imagine-starts``: replayed states that start imagined trajectories (0: all of them).

Printed per row: parameters, build and warm-up seconds (compilation included), ms per update and
updates/s (median over ``--blocks`` blocks, with the range), GFLOP per update (torch's FLOP counter,
on an eager update), the achieved TFLOP/s and its fraction of the device's peak (an 8192^3 product on
a GPU in tf32 for float32 and in bfloat16 for bfloat16, measured once; on a CPU a 1024^2 float32
product after each block), the operations of one update (``--profile``: kernels launched and the GPU's
busy fraction from torch.profiler on CUDA; aten operations on a CPU), peak memory, and with
``--loop-steps`` the whole training loop's environment steps/s (acting, replay and updates at the
preset's train ratio).

Usage::

    python benchmarks/throughput.py --sizes small medium --threads 2 --updates 4 --blocks 5
    python benchmarks/throughput.py --sizes dmc_proprio_cpu --imagine-starts 0 128 --threads 1
    python benchmarks/throughput.py --sizes dmc_proprio_cpu --imagine-starts 128 \\
        -- --dreamer.explore.disag 0.1
    python benchmarks/throughput.py --device cuda --sizes size12m size50m --obs vector image \\
        --precision float32 bfloat16 --compile none cudagraphs --batch 16 64 --profile --json out.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import tempfile
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from dreamworld.algos.dreamer.agent import Dreamer
from dreamworld.algos.dreamer.loop import train
from dreamworld.config import available_presets, load_config, parse_overrides
from dreamworld.data import Replay
from dreamworld.envs.base import flag_spaces
from dreamworld.errors import ConfigError
from dreamworld.run.system import pick_device, tune_allocator

CPU_SIZES = {"small": 128, "medium": 512}
PRESET_SIZES = ("size1m", "size12m", "size25m", "size50m")


def presets_of(size: str, obs: str) -> tuple[list[str], dict[str, str]]:
    """The presets and overrides of a size: DreamerV3 with its suite preset for the observations, or
    any other shipped preset (``dmc_proprio_cpu``, ``carracing_cpu``) on top of DreamerV3 alone."""
    if size not in CPU_SIZES and size not in PRESET_SIZES:
        return ["dreamerv3", size], {}
    presets = ["dreamerv3", "dmc_proprio" if obs == "vector" else "dmc_vision"]
    if size in CPU_SIZES:
        units = str(CPU_SIZES[size])
        keys = ("world_model.deter", "world_model.units", "actor.units", "critic.units")
        return presets, {f"dreamer.{key}": units for key in keys}
    return [*presets, size], {}


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 10) -> float:
    """TFLOP/s of an ``n x n`` matrix product: the device's practical peak for these models."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def gpu_peaks(device: torch.device) -> dict[str, float]:
    """The card's measured peaks: float32 with tf32 matmuls (what float32 training uses) and bfloat16."""
    return {
        "float32": matmul_tflops(device, torch.float32, 8192),
        "bfloat16": matmul_tflops(device, torch.bfloat16, 8192),
    }


def env_batch(env_name: str, batch: int, length: int, seed: int = 0) -> dict[str, np.ndarray] | None:
    """Random-policy episodes of the real task, sampled from a replay; None if it cannot be built."""
    from dreamworld.envs import make_env
    from dreamworld.errors import DreamworldError

    try:
        env = make_env(env_name, obs="vector")
    except (DreamworldError, ImportError) as error:
        print(f"note: {env_name} unavailable ({error}); random vectors of its shapes instead")
        return None
    replay = Replay(capacity=100_000, length=length, seed=seed)
    rng = np.random.default_rng(seed)
    obs = env.reset(seed=seed)
    for _ in range(batch * length + length):
        action = rng.uniform(-1, 1, env.act_space.shape).astype(np.float32)
        replay.add({key: np.asarray(value)[None] for key, value in {**obs, "action": action}.items()})
        obs = env.reset() if obs["is_last"] else env.step(action)
    return replay.sample(batch)


def synthetic_batch(obs: str, batch: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random data of dmc walker-walk's shapes: a 24-dimensional vector or 64x64x3 pixels, 6 actions."""
    rng = np.random.default_rng(seed)
    data = {
        "action": rng.uniform(-1, 1, (batch, length, 6)).astype(np.float32),
        "reward": rng.normal(size=(batch, length)).astype(np.float32),
        "is_first": np.zeros((batch, length), bool),
        "is_last": np.zeros((batch, length), bool),
        "is_terminal": np.zeros((batch, length), bool),
    }
    if obs == "vector":
        data["vector"] = rng.normal(size=(batch, length, 24)).astype(np.float32)
    else:
        data["image"] = rng.integers(0, 256, (batch, length, 64, 64, 3), dtype=np.uint8)
    return data


def spaces_of(data: dict[str, np.ndarray]) -> tuple[dict[str, gym.spaces.Space], gym.spaces.Space]:
    obs: dict[str, gym.spaces.Space] = dict(flag_spaces())
    if "vector" in data:
        obs["vector"] = gym.spaces.Box(-np.inf, np.inf, data["vector"].shape[2:], np.float32)
    if "image" in data:
        obs["image"] = gym.spaces.Box(0, 255, data["image"].shape[2:], np.uint8)
    return obs, gym.spaces.Box(-1, 1, data["action"].shape[2:], np.float32)


def measure(args: argparse.Namespace, device: torch.device, case: dict[str, Any]) -> dict[str, Any]:
    """One row: an agent of ``case``'s size, observations, precision, compile mode and batch."""
    presets, overrides = presets_of(case["size"], case["obs"])
    overrides.update({"dreamer.precision": case["precision"], "dreamer.compile": case["compile"]})
    overrides["replay.batch"] = str(case["batch"])
    overrides["dreamer.imagine_starts"] = str(case["imagine_starts"])
    overrides.update(args.overrides)
    config = load_config(presets, overrides=overrides)
    length = config.replay.length
    data = env_batch(args.env, case["batch"], length) if case["obs"] == "vector" and args.env else None
    data = data if data is not None else synthetic_batch(case["obs"], case["batch"], length)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    torch.manual_seed(0)
    agent = Dreamer(config.dreamer, *spaces_of(data), device)
    build = time.perf_counter() - began
    warmup = agent.warmup(data)
    agent.train_step(data)  # the first eager update allocates; a compiled one replays
    _sync(device)
    row: dict[str, Any] = {**case, "params_m": _params(agent) / 1e6, "build_s": build, "warmup_s": warmup}
    flops = _flops(config, data, device)
    seconds, matmuls = [], []
    for _ in range(args.blocks):
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.updates):
            agent.train_step(data)
        _sync(device)
        seconds.append((time.perf_counter() - start) / args.updates)
        if device.type == "cpu":  # a shared CPU's speed drifts: its peak is measured beside each block
            matmuls.append(matmul_tflops(device, torch.float32, 1024, repeats=20))
    median = statistics.median(seconds)
    peak = statistics.median(matmuls) if matmuls else args.peaks[case["precision"]]
    row.update(
        ms_per_update=1e3 * median,
        updates_per_s=1 / median,
        updates_per_s_min=1 / max(seconds),
        updates_per_s_max=1 / min(seconds),
        gflop_per_update=flops / 1e9,
        tflop_per_s=flops / median / 1e12,
        peak_tflop_per_s=peak,
        fraction_of_peak=flops / median / 1e12 / peak,
    )
    if args.profile:
        row.update(_profile(agent, data, device))
    row["peak_memory_gb"] = _peak_memory_gb(device)
    if args.loop_steps:
        row["loop_env_steps_per_s"] = measure_loop(args, presets, overrides)
    return row


def _flops(config: Any, data: dict[str, np.ndarray], device: torch.device) -> int:
    """FLOPs of one update, counted on an eager agent of the same configuration."""
    from dreamworld.config import config_from_dict, config_to_dict

    values = config_to_dict(config)
    values["dreamer"]["compile"] = "none"
    torch.manual_seed(0)
    agent = Dreamer(config_from_dict(values).dreamer, *spaces_of(data), device)
    with FlopCounterMode(display=False) as counter:
        agent.train_step(data)
    return int(counter.get_total_flops())


def _profile(
    agent: Dreamer, data: dict[str, np.ndarray], device: torch.device, updates: int = 3
) -> dict[str, float]:
    """Kernel launches and GPU busy fraction per update (CUDA), or aten operations (CPU)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    _sync(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(updates):
            agent.train_step(data)
        _sync(device)
        wall = time.perf_counter() - start
    events = prof.key_averages()
    if device.type != "cuda":
        ops = sum(event.count for event in events if event.key.startswith("aten::"))
        return {"aten_ops_per_update": ops / updates}
    launches = {"cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cudaGraphLaunch"}
    launched = sum(event.count for event in events if event.key in launches)
    graphs = sum(event.count for event in events if event.key == "cudaGraphLaunch")
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.device_time for e in kernels) / 1e6  # microseconds
    return {
        "launches_per_update": launched / updates,
        "graph_launches_per_update": graphs / updates,
        "kernels_per_update": len(kernels) / updates,
        "gpu_busy_fraction": busy / wall,
    }


def measure_loop(args: argparse.Namespace, presets: list[str], overrides: dict[str, str]) -> float:
    """Environment steps/s of the whole training loop after prefill (and the warm-up)."""
    with tempfile.TemporaryDirectory() as logdir:
        values = {
            **overrides,
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
        train(load_config(presets, overrides={**values, "dreamer.steps": "1100"}))  # prefill, warm-up
        config = load_config(presets, overrides={**values, "dreamer.steps": str(1100 + args.loop_steps)})
        start = time.perf_counter()
        train(config)
        return args.loop_steps / (time.perf_counter() - start)


def _params(agent: Dreamer) -> int:
    return sum(p.numel() for p in agent.parameters() if p.requires_grad)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["small", "medium"],
        help=f"{', '.join([*CPU_SIZES, *PRESET_SIZES])}, or a shipped preset such as dmc_proprio_cpu",
    )
    parser.add_argument("--obs", nargs="+", default=["vector"], choices=["vector", "image"])
    parser.add_argument("--precision", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument(
        "--compile", nargs="+", default=["auto"], choices=["auto", "none", "compile", "cudagraphs"]
    )
    parser.add_argument("--batch", nargs="+", type=int, default=[16])
    parser.add_argument(
        "--imagine-starts", nargs="+", type=int, default=[0], help="dreamer.imagine_starts (0: every state)"
    )
    parser.add_argument("--env", default="dmc/walker-walk", help="the task of vector batches ('' for random)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--updates", type=int, default=5, help="timed updates per block")
    parser.add_argument("--blocks", type=int, default=3, help="timed blocks")
    parser.add_argument(
        "--profile", action="store_true", help="kernels and GPU busy fraction (CUDA), ops (CPU)"
    )
    parser.add_argument("--loop-steps", type=int, default=0, help="policy steps of the full-loop measurement")
    parser.add_argument("--device", default="auto")
    parser.add_argument("extra", nargs="*", help="config overrides for every row, after --")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    try:
        args.overrides = parse_overrides(args.extra)
    except ConfigError as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    tune_allocator()
    device = pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # as training does: tf32 matmuls for float32
        args.peaks = gpu_peaks(device)
        print(f"peak TFLOP/s (8192^3): tf32 {args.peaks['float32']:.0f}, bf16 {args.peaks['bfloat16']:.0f}")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device} ({name})", flush=True
    )
    if args.overrides:
        print("every row with " + " ".join(f"{k}={v}" for k, v in args.overrides.items()), flush=True)
    rows = []
    for size in args.sizes:
        if size not in CPU_SIZES and size not in PRESET_SIZES and size not in available_presets():
            parser.error(f"unknown size or preset {size!r}")
    keys = ("size", "obs", "precision", "compile", "batch", "imagine_starts")
    grid = (args.sizes, args.obs, args.precision, args.compile, args.batch, args.imagine_starts)
    for values in itertools.product(*grid):
        case = dict(zip(keys, values, strict=True))
        try:
            row = measure(args, device, case)
        except Exception as error:  # one failing row (out of memory, a compiler error) ends only itself
            print(
                " ".join(str(v) for v in values), f"failed: {type(error).__name__}: {error}"[:400], flush=True
            )
            continue
        rows.append(row)
        fields = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        print(fields, flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {"device": name, "torch": torch.__version__, "overrides": args.overrides, "rows": rows},
                file,
                indent=1,
            )


if __name__ == "__main__":
    main()
