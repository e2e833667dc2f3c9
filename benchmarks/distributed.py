"""Data-parallel Dreamer updates: samples per second of 1 process against N ranks, and the time the
gradient all-reduce takes per update.

Each rank takes ``--updates`` updates of the ``small`` DreamerV3 (vector CartPole observations, random
replayed data) at batch ``--batch`` x 64; the ranks' gradients are averaged after every backward pass,
as in ``dreamworld train --nproc N``. Prints, per setting, updates/s, replayed sequences per second
(updates/s x batch x ranks) and the mean milliseconds per update spent in the all-reduce.

Usage::

    python benchmarks/distributed.py --nproc 1 2 --batch 16 --updates 10 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RANK_SCRIPT = """
import json, os, sys, time
import numpy as np
import torch
torch.set_num_threads(int(sys.argv[3]))
import dreamworld.nn.optim as optim
from dreamworld.algos.dreamer.agent import Dreamer
from dreamworld.config import load_config
from dreamworld.envs import make_vector_env
from dreamworld.run import distributed

ranks = distributed.setup()
spent = [0.0]
average = optim.average_gradients

def timed(params):
    start = time.perf_counter()
    average(params)
    spent[0] += time.perf_counter() - start

optim.average_gradients = timed
torch.manual_seed(0)
config = load_config(["dreamerv3"], overrides={"dreamer.compile": "none"})
with make_vector_env("gym/CartPole-v1", 1, parallel="serial") as env:
    agent = Dreamer(config.dreamer, env.obs_space, env.act_space, "cpu")
rng = np.random.default_rng(ranks.rank)
batch, length, updates = int(sys.argv[2]), 64, int(sys.argv[4])
data = {
    "vector": rng.normal(size=(batch, length, 4)).astype(np.float32),
    "action": rng.integers(0, 2, (batch, length)),
    "reward": rng.normal(size=(batch, length)).astype(np.float32),
    "is_first": np.zeros((batch, length), bool),
    "is_last": np.zeros((batch, length), bool),
    "is_terminal": np.zeros((batch, length), bool),
}
agent.train_step(data)  # warm-up
spent[0] = 0.0
start = time.perf_counter()
for _ in range(updates):
    agent.train_step(data)
seconds = time.perf_counter() - start
if ranks.main:
    Path = __import__("pathlib").Path
    Path(sys.argv[1]).write_text(json.dumps({"seconds": seconds, "allreduce": spent[0], "updates": updates}))
"""


def run(nproc: int, batch: int, threads: int, updates: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        script, result = Path(tmp) / "rank.py", Path(tmp) / "result.json"
        script.write_text(RANK_SCRIPT)
        port = 29500 + os.getpid() % 1000
        processes = []
        for rank in range(nproc):
            env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(nproc), "LOCAL_RANK": str(rank)}
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS=str(threads))
            command = [sys.executable, str(script), str(result), str(batch), str(threads), str(updates)]
            processes.append(subprocess.Popen(command, env=env))
        for process in processes:
            if process.wait() != 0:
                raise SystemExit(f"rank failed with exit code {process.returncode}")
        values: dict[str, float] = json.loads(result.read_text())
        return values


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2], help="ranks to compare")
    parser.add_argument("--batch", type=int, default=16, help="sequences per rank and update")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--updates", type=int, default=10, help="timed updates per setting")
    args = parser.parse_args()
    for nproc in args.nproc:
        values = run(nproc, args.batch, args.threads, args.updates)
        rate = values["updates"] / values["seconds"]
        print(
            f"nproc={nproc} batch={args.batch} threads={args.threads} updates_per_second={rate:.3f} "
            f"sequences_per_second={rate * args.batch * nproc:.1f} "
            f"allreduce_ms={1000 * values['allreduce'] / values['updates']:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
