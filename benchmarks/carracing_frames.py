"""CarRacing frames per second with every physics step drawn (Gymnasium's way) or only the frames the
agent sees (dreamworld's), at several action repeats.

Usage::

    python benchmarks/carracing_frames.py --repeats 1 2 4 --steps 300 --rounds 3

Each figure is the best of ``--rounds`` interleaved rounds of ``--steps`` agent steps with the same
seeded random actions (a shared machine only ever slows a round down).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dreamworld.envs import make_env


def frames_per_second(repeat: int, lazy: bool, steps: int) -> float:
    env = make_env("carracing", repeat=repeat)
    env._sim._env.unwrapped.lazy = lazy  # type: ignore[attr-defined]
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    began = time.perf_counter()
    for _ in range(steps):
        if env.step(rng.uniform(-1, 1, 3).astype(np.float32))["is_last"]:
            env.reset()
    seconds = time.perf_counter() - began
    env.close()
    return steps * repeat / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=300, help="agent steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    best: dict[tuple[int, bool], float] = {}
    for _ in range(args.rounds):
        for repeat in args.repeats:
            for lazy in (False, True):
                rate = frames_per_second(repeat, lazy, args.steps)
                best[repeat, lazy] = max(best.get((repeat, lazy), 0.0), rate)
    print("repeat  every frame drawn  observed frames drawn  speed-up")
    for repeat in args.repeats:
        every, seen = best[repeat, False], best[repeat, True]
        print(f"{repeat:>6}  {every:>17.0f}  {seen:>21.0f}  {seen / every:>7.2f}x")


if __name__ == "__main__":
    main()
