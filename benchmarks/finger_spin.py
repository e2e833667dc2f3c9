"""How a finger-spin agent moves the spinner, read from a run's training episodes.

dm_control's finger-spin rewards every step on which the free body ("hinge") turns faster than 15 rad/s
in one direction (hinge velocity <= -15). An agent can earn that by spinning the body continuously, the
task's solution (a reward on nearly every step), or by striking it back and forth, so that each stroke
passes -15 rad/s for a few steps before the body comes back: a return of a few hundred that a policy
can improve only by giving that motion up. This script tells the two apart. For every ``--every``-th
episode saved under ``RUN/episodes`` (and the last) it prints the return, the share of steps beyond
15 rad/s in the rewarded and in the other direction, and how often the body reverses (sign changes of
its velocity while it turns faster than 1 rad/s): a continuous spin reverses a handful of times per
episode, a back-and-forth motion every few steps.

Usage::

    python benchmarks/finger_spin.py RUN [RUN ...] --every 8

The hinge velocity is the last entry of the ``vector`` observation (the dm_control wrapper
concatenates the observations in sorted key order: position, touch, velocity; velocity ends with the
hinge's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dreamworld.data.store import EPISODE_DIR, EpisodeStore
from dreamworld.tools.plot import run_action_repeat

SPIN = 15.0  # rad/s, dm_control's finger-spin threshold
MOVING = 1.0  # rad/s: slower than this the body is counted as still, not reversing


def motion(velocity: np.ndarray) -> dict[str, float]:
    """The spinner's motion in one episode from its hinge velocity per policy step."""
    moving = velocity[np.abs(velocity) > MOVING]
    return {
        "rewarded": float(np.mean(velocity <= -SPIN)),
        "other": float(np.mean(velocity >= SPIN)),
        "reversals": int(np.sum(np.diff(np.sign(moving)) != 0)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories (with episodes/*.npz)")
    parser.add_argument("--every", type=int, default=10, help="print every N-th episode (and the last)")
    args = parser.parse_args(argv)
    for run in map(Path, args.runs):
        if not (run / EPISODE_DIR).is_dir():
            print(f"finger_spin: {run} has no {EPISODE_DIR}/ folder; give a run directory", file=sys.stderr)
            return 2
        store = EpisodeStore(run / EPISODE_DIR)
        repeat = run_action_repeat(run) or 1
        print(f"{run}: {len(store)} episodes (action repeat {repeat})")
        steps = 0
        for index, episode in enumerate(store.episodes()):
            velocity = np.asarray(episode["vector"][:, -1], np.float64)
            steps += len(velocity)
            if index % args.every and index != len(store) - 1:
                continue
            shown = motion(velocity)
            print(
                f"  episode {index:4d} (by {steps * repeat / 1000:5.1f}k steps): "
                f"return {float(np.sum(episode['reward'][1:])):6.1f}; "
                f"beyond {SPIN:.0f} rad/s rewarded way {shown['rewarded']:4.0%}, other way "
                f"{shown['other']:4.0%}; reversals {shown['reversals']:3d}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
