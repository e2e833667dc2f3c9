"""Stepping speed of the robotics suites, without and with 64x64 pixels (docs/robotics.md).

Usage::

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/robotics_speed.py            # ~3 minutes
    OMP_NUM_THREADS=1 python benchmarks/robotics_speed.py --ids fetch/push --seconds 2

Each figure is agent steps per second through ``make_env`` with uniformly random actions, resets
included (random actions end many episodes early, as early in training), the best of
``--rounds`` rounds: other work on a shared machine only ever slows a round down.
"""

from __future__ import annotations

import argparse
import time

from dreamworld.envs import make_env

IDS = (
    "highway/highway-fast",
    "highway/merge",
    "highway/roundabout",
    "highway/parking",
    "highway/racetrack",
    "pyflyt/quadx-hover",
    "pyflyt/quadx-waypoints",
    "fetch/reach",
    "fetch/push",
    "panda/reach",
    "panda/push",
)


def steps_per_second(name: str, obs: str, seconds: float) -> float:
    """Agent steps per second of one environment over about ``seconds`` (after a warm-up)."""
    env = make_env(name, obs=obs)
    env.act_space.seed(0)
    env.reset(seed=0)
    for _ in range(3):  # first renders create contexts, first steps fill caches
        if env.step(env.act_space.sample())["is_last"]:
            env.reset()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if env.step(env.act_space.sample())["is_last"]:
            env.reset()
        steps += 1
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", default=",".join(IDS), help="comma-separated environment ids")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the best is reported")
    args = parser.parse_args()
    print("| environment | vector steps/s | 64x64 pixels steps/s |\n|---|---|---|")
    for name in args.ids.split(","):
        rates = [
            max(steps_per_second(name, obs, args.seconds) for _ in range(args.rounds))
            for obs in ("vector", "image")
        ]
        print(f"| `{name}` | {rates[0]:.0f} | {rates[1]:.0f} |", flush=True)


if __name__ == "__main__":
    main()
