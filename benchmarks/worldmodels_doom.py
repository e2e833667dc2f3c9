"""The World Models dream experiment on ViZDoom TakeCover: the controller is trained only inside the
MDN-RNN at several temperatures and tested in the real game; prints the paper's table of temperature
against dream score and real score (100 episodes each), beside a random policy's.

Usage::

    python benchmarks/worldmodels_doom.py                          # preset doom, all five temperatures
    python benchmarks/worldmodels_doom.py --taus 1.15 -- --worldmodels.controller.generations 50

Stages are ``dreamworld worldmodels ...`` commands in ``--outdir``; rerunning resumes. Extra arguments
after ``--`` go to every stage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from wm_stages import Ledger, stage, tested

PAPER = {0.1: (2086, 193), 0.5: (2060, 196), 1.0: (1145, 868), 1.15: (918, 1092), 1.3: (732, 753)}
"""Ha & Schmidhuber (2018), table 2: temperature -> (dream score, real score)."""


def random_score(episodes: int, seed: int = 0) -> tuple[float, float]:
    from dreamworld.envs import make_env

    env = make_env("vizdoom/take-cover")
    rng = np.random.default_rng(seed)
    scores = []
    for episode in range(episodes):
        obs, score = env.reset(seed=seed + episode), 0.0
        while not obs["is_last"]:
            obs = env.step(int(rng.integers(3)))
            score += float(obs["reward"])
        scores.append(score)
    env.close()
    return float(np.mean(scores)), float(np.std(scores))


def controller_directory(outdir: Path, tau: float, extra: list[str]) -> Path:
    """Where ``train-controller --dream --temperature tau`` keeps its controller in ``outdir``."""
    from dreamworld.algos.world_models.controller_stage import controller_dir
    from dreamworld.config import load_config
    from dreamworld.config.loader import parse_overrides

    config = load_config(["worldmodels"], [outdir / "config.yaml"], parse_overrides(extra))
    return controller_dir(outdir, True, True, tau, config.worldmodels.controller.cell)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default="runs/bench-wm-doom")
    parser.add_argument("--preset", default="doom")
    parser.add_argument("--taus", type=float, nargs="+", default=sorted(PAPER))
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("extra", nargs="*", help="config overrides for every stage, after --")
    args = parser.parse_args()
    outdir = Path(args.outdir)
    common = ["--preset", args.preset, "--log.progress", "false", *args.extra]
    ledger = Ledger(outdir)
    stage(ledger, "collect", "collect", outdir, *common)
    stage(ledger, "train-vae", "train-vae", outdir, *common)
    stage(ledger, "train-mdnrnn", "train-mdnrnn", outdir, *common)
    rows = []
    for tau in args.taus:
        flags = ["--dream", "--temperature", f"{tau:g}"]
        stage(ledger, f"train-controller tau {tau:g}", "train-controller", outdir, *flags, *common)
        directory = controller_directory(outdir, tau, args.extra)
        if not tested(directory, args.episodes):
            test = ["--episodes", str(args.episodes)]
            stage(ledger, f"test tau {tau:g}", "test", outdir, *flags, *test, *common)
        result = json.loads((directory / "test.json").read_text())
        rows.append((tau, result))
    stage(ledger, "report", "report", outdir, *common)
    random_mean, random_std = random_score(args.episodes)
    print(f"\nWorld Models dream experiment, ViZDoom TakeCover, preset {args.preset}: {outdir}")
    print(f"{'tau':>5} | {'dream score':>15} | {'real score':>15} | paper dream / real")
    for tau, result in rows:
        paper = PAPER.get(round(tau, 2), ("-", "-"))
        dream = f"{result['dream_mean']:.0f} ± {result['dream_std']:.0f}"
        real = f"{result['mean']:.0f} ± {result['std']:.0f}"
        print(f"{tau:5.2f} | {dream:>15} | {real:>15} | {paper[0]} / {paper[1]}")
    print(f"random policy: {random_mean:.0f} ± {random_std:.0f} (paper: 210 ± 108)")
    ledger.print()


if __name__ == "__main__":
    main()
