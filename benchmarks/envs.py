"""Environment stepping speed: raw simulators vs dreamworld.envs, VectorEnv backends, and a learner
beside environment workers.

Usage::

    python benchmarks/envs.py                      # everything, ~6 minutes on 2 cores
    python benchmarks/envs.py --only single,vector --steps 0.5 --rounds 2

Each measurement runs a fixed number of steps from a seeded reset with fixed actions, so the raw
and the wrapped environment do exactly the same work.

Each figure is the best of ``--rounds`` interleaved rounds (the cases of a table take turns): on a
small shared VM, other work and the host slow a measurement down by tens of percent at random
moments but never speed it up, so the best round is the closest to the machine's real speed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from typing import Any, NamedTuple

import numpy as np

from dreamworld.envs import make_env, make_vector_env
from dreamworld.envs.rendering import configure_mujoco_gl, fast_rendering


class Case(NamedTuple):
    """One thing to time: ``reset()`` restarts the same trajectory, ``step()`` advances it."""

    reset: Callable[[], None]
    step: Callable[[], None]
    envs: int = 1


SIZE = 64
TASKS = {  # label: (dreamworld id, make_env options, agent steps per measurement)
    "CartPole-v1 (vector)": ("gym/CartPole-v1", {}, 20_000),
    "dmc walker-walk (64x64 pixels, repeat 2)": ("dmc/walker-walk", {"obs": "image"}, 400),
    "CarRacing-v3 (96x96 -> 64x64)": ("carracing", {}, 250),
}


def action_list(shape: tuple[int, ...], discrete: int | None, count: int = 512) -> list[Any]:
    """Fixed random actions in the contract's form, so that no sampling is timed."""
    rng = np.random.default_rng(0)
    if discrete is not None:
        return rng.integers(0, discrete, (count, *shape)).tolist()
    return list(rng.uniform(-1, 1, (count, *shape)).astype(np.float32))


def cycling(actions: list[Any]) -> Callable[[], Iterator[Any]]:
    return lambda: itertools.cycle(actions)


def raw_cartpole(stack: ExitStack) -> Case:
    import gymnasium as gym

    env = stack.enter_context(closing(gym.make("CartPole-v1")))
    restart = cycling(action_list((), 2))
    actions = restart()

    def reset() -> None:
        nonlocal actions
        env.reset(seed=0)
        actions = restart()

    def step() -> None:
        _, _, terminated, truncated, _ = env.step(next(actions))
        if terminated or truncated:
            env.reset()

    return Case(reset, step)


def raw_walker(stack: ExitStack, quality: str) -> Case:
    """dm_control as its documentation shows it: ``physics.render`` after each agent step."""
    configure_mujoco_gl()
    from dm_control import suite

    env = stack.enter_context(closing(suite.load("walker", "walk", task_kwargs={"random": 0})))
    if quality == "fast":
        fast_rendering(env.physics.model, SIZE)
    restart = cycling(action_list((6,), None))
    actions = restart()

    def reset() -> None:
        nonlocal actions
        env.task.random.seed(0)
        env.reset()
        actions = restart()

    def step() -> None:
        action = next(actions)
        for _ in range(2):  # Dreamer's action repeat
            timestep = env.step(action)
            if timestep.last():
                break
        env.physics.render(SIZE, SIZE, camera_id=0)
        if timestep.last():
            env.reset()

    return Case(reset, step)


def raw_carracing(stack: ExitStack) -> Case:
    import cv2
    import gymnasium as gym

    env = stack.enter_context(closing(gym.make("CarRacing-v3")))
    low, high = env.action_space.low, env.action_space.high
    restart = cycling([low + (a + 1) / 2 * (high - low) for a in action_list((3,), None)])
    actions = restart()

    def reset() -> None:
        nonlocal actions
        env.reset(seed=0)
        actions = restart()

    def step() -> None:
        obs, _, terminated, truncated, _ = env.step(next(actions))
        cv2.resize(obs, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        if terminated or truncated:
            env.reset()

    return Case(reset, step)


def space_actions(space: Any, batch: int | None = None) -> Callable[[], Iterator[Any]]:
    prefix = () if batch is None else (batch,)
    discrete = int(space.n) if hasattr(space, "n") else None
    return cycling(action_list((*prefix, *(() if discrete else space.shape)), discrete))


def wrapped(stack: ExitStack, name: str, options: dict[str, Any]) -> Case:
    env = make_env(name, **options)
    stack.callback(env.close)
    restart = space_actions(env.act_space)
    actions = restart()

    def reset() -> None:
        nonlocal actions
        env.reset(seed=0)
        actions = restart()

    def step() -> None:
        if env.step(next(actions))["is_last"]:
            env.reset()

    return Case(reset, step)


def vector(stack: ExitStack, name: str, options: dict[str, Any], num_envs: int, parallel: str) -> Case:
    envs = stack.enter_context(make_vector_env(name, num_envs, parallel=parallel, **options))
    restart = space_actions(envs.act_space, batch=num_envs)
    actions = restart()

    def reset() -> None:
        nonlocal actions
        envs.reset(seed=0)
        actions = restart()

    def step() -> None:
        envs.step(next(actions))

    return Case(reset, step, num_envs)


def rate(case: Case, steps: int) -> float:
    """Environment steps per second over ``steps`` agent steps from a seeded reset."""
    case.reset()
    for _ in range(5):  # first calls pay for lazy set-up (rendering contexts, caches)
        case.step()
    start = time.perf_counter()
    for _ in range(steps):
        case.step()
    return case.envs * steps / (time.perf_counter() - start)


def interleaved(cases: dict[str, Case], rounds: int, steps: int) -> dict[str, float]:
    """Best steps/s per case, measuring the cases in turn (order rotated) each round."""
    results: dict[str, list[float]] = {label: [] for label in cases}
    labels = list(cases)
    for round_index in range(rounds):
        shift = round_index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            results[label].append(rate(cases[label], steps))
    return {label: max(values) for label, values in results.items()}


def bench_single(rounds: int, scale: float) -> None:
    print("\n## single environment: raw vs make_env (steps/s; cost = raw / make_env - 1)")
    with ExitStack() as stack:
        raws: dict[str, dict[str, Case]] = {
            "CartPole-v1 (vector)": {"raw gymnasium": raw_cartpole(stack)},
            "dmc walker-walk (64x64 pixels, repeat 2)": {
                "raw dm_control, default render quality": raw_walker(stack, "default"),
                "raw dm_control, shadows and multisampling off": raw_walker(stack, "fast"),
            },
            "CarRacing-v3 (96x96 -> 64x64)": {"raw gymnasium + cv2.resize": raw_carracing(stack)},
        }
        for task, (name, options, steps) in TASKS.items():
            cases = {**raws[task], "dreamworld make_env": wrapped(stack, name, options)}
            result = interleaved(cases, rounds, max(1, int(steps * scale)))
            for label, value in result.items():
                print(f"| {task} | {label} | {value:,.0f} |")
            raw = list(result.values())[-2]  # the raw variant doing the same work
            print(f"| {task} | cost of make_env | {raw / result['dreamworld make_env'] - 1:+.1%} |")


def bench_vector(rounds: int, scale: float) -> None:
    layouts = [("serial", 1), ("serial", 2), ("thread", 2), ("process", 1), ("process", 2)]
    columns = [f"{parallel} x{count}" for parallel, count in layouts]
    print("\n## VectorEnv (environment steps/s summed over environments)")
    print(f"| task | {' | '.join(columns)} | process x2 / x1 |")
    for task, (name, options, steps) in TASKS.items():
        with ExitStack() as stack:
            cases = {
                column: vector(stack, name, options, count, parallel)
                for column, (parallel, count) in zip(columns, layouts, strict=True)
            }
            result = interleaved(cases, rounds, max(1, int(steps * scale / 2)))
        row = " | ".join(f"{value:,.0f}" for value in result.values())
        print(f"| {task} | {row} | {result['process x2'] / result['process x1']:.2f}x |")


def walker_physics(fast: bool, small_framebuffer: bool = True) -> Any:
    """A reset walker whose first render is still to come (so that its settings apply)."""
    configure_mujoco_gl()
    from dm_control import suite

    env = suite.load("walker", "walk", task_kwargs={"random": 0})
    model = env.physics.model
    default_framebuffer = (model.vis.global_.offwidth, model.vis.global_.offheight)
    if fast:
        fast_rendering(model, SIZE)
        if not small_framebuffer:
            model.vis.global_.offwidth, model.vis.global_.offheight = default_framebuffer
    env.reset()
    return env.physics


def frames_per_second(render: Callable[[], Any], seconds: float) -> float:
    render()  # the first frame creates the rendering context
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        render()
        count += 1
    return count / (time.perf_counter() - start)


def render_child(framebuffer: str, seconds: float) -> None:
    """Frames/s of a cached camera with shadows off, with the default or a frame-sized buffer."""
    from dm_control import mujoco

    physics = walker_physics(True, small_framebuffer=framebuffer == "small")
    camera = mujoco.Camera(physics, SIZE, SIZE, 0)
    print(json.dumps({"fps": frames_per_second(camera.render, seconds)}))


def bench_render(rounds: int, seconds: float) -> None:
    """Where dm_control's 64x64 frame time goes: quality, camera reuse, framebuffer size."""
    from dm_control import mujoco

    print("\n## dm_control walker 64x64 rendering (frames/s, best of rounds)")
    variants = {
        "physics.render, default quality": walker_physics(False),
        "physics.render, shadows and multisampling off": walker_physics(True),
    }
    renders = {label: functools.partial(p.render, SIZE, SIZE, camera_id=0) for label, p in variants.items()}
    renders["cached mujoco.Camera, shadows and multisampling off"] = mujoco.Camera(
        walker_physics(True), SIZE, SIZE, 0
    ).render
    for label, render in renders.items():
        best = max(frames_per_second(render, seconds) for _ in range(rounds))
        print(f"| {label} | {best:,.0f} |")
    for framebuffer in ("default 640x480", "small"):
        command = [sys.executable, __file__, "--child", "render", "--seconds", str(seconds)]
        command += ["--framebuffer", framebuffer.split()[0]]
        alone = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        pair = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        each = [json.loads(process.communicate()[0])["fps"] for process in pair]
        print(
            f"| cached camera, {framebuffer} framebuffer: one process | {alone['fps']:,.0f} |\n"
            f"| cached camera, {framebuffer} framebuffer: two processes at once, each | "
            f"{min(each):,.0f} - {max(each):,.0f} |"
        )


def learner_child(threads: int, seconds: float) -> None:
    """Times forward+backward of a small MLP + GRU cell unrolled in Python, like an RSSM."""
    import torch
    from torch import nn

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(64, 256), nn.ELU(), nn.Linear(256, 256), nn.ELU())
    cell, head = nn.GRUCell(256, 256), nn.Linear(256, 64)
    params = [*encoder.parameters(), *cell.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, 1e-4)
    inputs = torch.randn(16, 64, 64)  # batch 16, 64 time steps

    def update() -> None:
        embed, state, loss = encoder(inputs), torch.zeros(16, 256), torch.zeros(())
        for t in range(inputs.shape[1]):
            state = cell(embed[:, t], state)
            loss = loss + (head(state) - inputs[:, t]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 30 and (len(times) < 3 or time.perf_counter() - start < seconds):
        begin = time.perf_counter()
        update()
        times.append(time.perf_counter() - begin)
    print(json.dumps({"ms": 1000 * statistics.median(times[1:] or times), "n": len(times)}))


def load_child() -> None:
    """Two worker processes stepping dmc pixels until terminated (the learner's neighbours)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that the workers are closed
    with ExitStack() as stack:
        case = vector(stack, "dmc/walker-walk", {"obs": "image"}, 2, "process")
        case.reset()
        print("ready", flush=True)
        while True:
            case.step()


def learner_ms(threads: int, passive: bool, seconds: float) -> float:
    environ = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if passive:
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
    command = [sys.executable, __file__, "--child", "learner", "--threads", str(threads)]
    command += ["--seconds", str(seconds)]
    result = subprocess.run(command, env=environ, capture_output=True, text=True, check=True)
    return float(json.loads(result.stdout.strip().splitlines()[-1])["ms"])


def bench_learner(seconds: float) -> None:
    print("\n## learner beside workers (ms per forward+backward, MLP+GRU 256, batch 16x64)")
    print("| learner settings | alone | beside 2 dmc pixel workers |")
    configs = [(0, False), (0, True), (1, False)]  # 0: torch's default thread count
    names = {0: "torch default threads", 1: "torch threads=1"}
    alone = {config: learner_ms(*config, seconds) for config in configs}
    load = subprocess.Popen([sys.executable, __file__, "--child", "load"], stdout=subprocess.PIPE, text=True)
    try:
        assert load.stdout is not None and load.stdout.readline().strip() == "ready"
        beside = {config: learner_ms(*config, seconds) for config in configs}
    finally:
        load.terminate()
        load.wait()
    for config in configs:
        threads, passive = config
        label = f"{names[threads]}, OMP_WAIT_POLICY={'PASSIVE' if passive else 'default'}"
        print(f"| {label} | {alone[config]:.0f} | {beside[config]:.0f} |")


def machine_busy() -> tuple[float, float]:
    """Busy CPU-seconds of the whole machine and of this process with its finished children."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:8]]
    machine = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    times = os.times()
    return machine, times.user + times.system + times.children_user + times.children_system


@contextlib.contextmanager
def foreign_load() -> Iterator[None]:
    """Prints how much of the machine other processes used meanwhile: they skew every figure."""
    machine, ours = machine_busy()
    start = time.perf_counter()
    yield
    machine_after, ours_after = machine_busy()
    share = (machine_after - machine - (ours_after - ours)) / (
        (os.cpu_count() or 1) * (time.perf_counter() - start)
    )
    print(f"(other processes used {max(0.0, share):.0%} of the machine's CPU meanwhile)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps", type=float, default=1.0, help="scales the steps per measurement (1: ~2-3 s each)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best is kept)")
    parser.add_argument(
        "--only",
        default="render,single,vector,learner",
        help="comma-separated sections: render,single,vector,learner",
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="time cap of each learner run")
    parser.add_argument("--child", choices=["learner", "load", "render"], help=argparse.SUPPRESS)
    parser.add_argument("--framebuffer", default="small", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "learner":
        return learner_child(args.threads, args.seconds)
    if args.child == "load":
        return load_child()
    if args.child == "render":
        return render_child(args.framebuffer, args.seconds)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, MUJOCO_GL={configure_mujoco_gl()}")
    sections = {
        "render": lambda: bench_render(args.rounds, 2.0 * args.steps),
        "single": lambda: bench_single(args.rounds, args.steps),
        "vector": lambda: bench_vector(args.rounds, args.steps),
        "learner": lambda: bench_learner(args.seconds),
    }
    for name in args.only.split(","):
        with foreign_load():
            sections[name]()
    return None


if __name__ == "__main__":
    main()
