"""Baselines for learning curves: returns of a uniform random policy and of constant actions.

A learned agent's return means little without what trivial policies score on the same task: a
driving agent that never crashes may only be braking, a drone that survives may only be falling
slowly. Each policy runs ``--episodes`` episodes (seeds 0, 1, ...) through ``make_env``; the script
prints the mean and spread of the return, the episode length in policy steps and the means of the
task's statistics (``success``, ``crashed``, ...).

Usage::

    python benchmarks/fixed_policies.py --env highway/highway-fast --policies random 1 3 4
    python benchmarks/fixed_policies.py --env pyflyt/quadx-hover --policies random 0,0,0,0 0,0,0,-0.2 \\
        -- --env.repeat 1

A policy is ``random``, a constant action (an index for discrete actions, comma-separated values in
``[-1, 1]`` for continuous ones), ``normal:MEAN:STD``: Gaussian actions around a mean (one value for
every dimension or comma-separated ones), clipped to ``[-1, 1]``, the way a bounded Normal actor
explores, ``colored:BETA[:STD]``: ``tanh(STD x noise)`` with 1/f^BETA noise drawn per episode (a
fresh squashed Normal actor exploring with ``dreamer.actor.noise_color BETA``; STD 1 by default), or
``brownian[:DT]``: the clipped random walk of ``collect.policy brownian``. How often an episode earns
a positive return (``rewarded``) says whether such exploration finds a sparse reward::

    python benchmarks/fixed_policies.py --env dmc/finger-spin --episodes 12 \
        --policies normal:0:0.89 normal:0.57,-0.57:0.89 -- --env.repeat 4
    python benchmarks/fixed_policies.py --env dmc/pendulum-swingup --episodes 20 \
        --policies random colored:1 colored:2 brownian -- --env.repeat 4
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from dreamworld.config import load_config, parse_overrides
from dreamworld.config.schema import EnvConfig
from dreamworld.envs import action_repeat
from dreamworld.nn.noise import colored_noise
from dreamworld.run.driver import single_env
from dreamworld.run.policies import BrownianPolicy


def constant_action(text: str, space: gym.spaces.Space) -> np.ndarray:
    """The action a policy name stands for (``random`` is handled by the caller)."""
    if isinstance(space, gym.spaces.Discrete):
        return np.asarray(int(text), np.int64)
    values = np.asarray([float(value) for value in text.split(",")], np.float32)
    if values.shape != space.shape:
        raise SystemExit(f"policy {text!r} has {values.size} values; the action space needs {space.shape}")
    return values


def normal_policy(text: str, space: gym.spaces.Space) -> tuple[np.ndarray, float]:
    """``normal:MEAN:STD`` as its mean action and standard deviation."""
    _, mean, std = text.split(":")
    values = np.asarray([float(value) for value in mean.split(",")], np.float32)
    return np.broadcast_to(values, space.shape or ()).astype(np.float32), float(std)


def random_action(space: gym.spaces.Space, rng: np.random.Generator) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return np.asarray(rng.integers(space.n), np.int64)
    return rng.uniform(-1.0, 1.0, space.shape).astype(np.float32)


EpisodePolicy = Callable[[dict[str, np.ndarray], int], np.ndarray]
"""One episode's policy: the action for an observation and the step's index within the episode."""


def episode_actor(policy: str, space: gym.spaces.Space, rng: np.random.Generator) -> EpisodePolicy:
    """A fresh actor for one episode of ``policy`` (a name of the module's docstring)."""
    kind, *values = policy.split(":")
    if kind == "random":
        return lambda obs, step: random_action(space, rng)
    if kind == "normal":
        mean, std = normal_policy(policy, space)
        return lambda obs, step: np.clip(mean + std * rng.standard_normal(space.shape), -1, 1).astype(
            np.float32
        )
    if kind == "colored":  # one sequence per episode, long enough for any DMC task at repeat 1
        beta, std = float(values[0]), float(values[1]) if len(values) > 1 else 1.0
        sequence = colored_noise(beta, 1, 1000, int(np.prod(space.shape or ())))[0].numpy()
        return lambda obs, step: (
            np.tanh(std * sequence[step % len(sequence)]).reshape(space.shape).astype(np.float32)
        )
    if kind == "brownian":
        walk, state = BrownianPolicy(space, 1, int(rng.integers(2**31)), *map(float, values[:1])), [None]

        def act(obs: dict[str, np.ndarray], step: int) -> np.ndarray:
            actions, state[0] = walk({"is_first": np.asarray([obs["is_first"]])}, state[0])
            return actions[0]

        return act
    fixed = constant_action(policy, space)
    return lambda obs, step: fixed


def run_policy(env_config: EnvConfig, policy: str, episodes: int) -> dict[str, float]:
    """Mean return, its standard deviation, mean length and the means of the episode statistics."""
    env = single_env(env_config)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)  # the colored sequences
    returns, lengths, stats = [], [], []
    try:
        for episode in range(episodes):
            obs = env.reset(seed=episode)
            act, total, steps = episode_actor(policy, env.act_space, rng), 0.0, 0
            while not obs["is_last"]:
                action = act(obs, steps)
                obs = env.step(action)
                total, steps = total + float(obs["reward"]), steps + 1
            returns.append(total)
            lengths.append(steps)
            stats.append({key[4:]: float(value) for key, value in obs.items() if key.startswith("log_")})
    finally:
        env.close()
    result = {"return": float(np.mean(returns)), "std": float(np.std(returns))}
    result["rewarded"] = float(np.mean(np.array(returns) > 0))
    result["length"] = float(np.mean(lengths))
    result.update({key: float(np.mean([s[key] for s in stats])) for key in stats[0]})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", required=True)
    parser.add_argument(
        "--policies",
        nargs="+",
        default=["random"],
        help="random, a constant action, normal:MEAN:STD, colored:BETA[:STD] or brownian[:DT]",
    )
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("extra", nargs="*", help="env.* overrides, after --")
    args = parser.parse_args()
    config = load_config(overrides={**parse_overrides(args.extra), "env.name": args.env}).env
    print(f"{args.env}, {args.episodes} episodes each (repeat {action_repeat(args.env, config.repeat)})")
    for policy in args.policies:
        result = run_policy(config, policy, args.episodes)
        rest = [(key, value) for key, value in result.items() if key not in ("return", "std")]
        extra = "".join(f", {key} {value:.2f}" for key, value in rest)
        print(f"  {policy:>16}: return {result['return']:8.2f} ± {result['std']:.2f}{extra}", flush=True)


if __name__ == "__main__":
    main()
