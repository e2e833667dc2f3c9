"""Fitness of controller populations: rollouts in the real environment and inside the MDN-RNN dream.

Both take a population ``(P, params)`` and a list of *jobs* (the member each rollout runs) and return
one return per job. Real rollouts share a :class:`~dreamworld.envs.parallel.VectorEnv`: every
environment runs one job at a time and takes the next job when its episode ends, and one batched
VAE, controller and MDN-RNN call per step serves all of them. Dream rollouts run every job at once as
one batch of tensors; each job draws its noise from its own generator, so a job's result does not
depend on which other jobs share its batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dreamworld.envs.parallel import VectorEnv
from dreamworld.models.controller import LinearController
from dreamworld.models.mdn_rnn import MDNRNN, LSTMState
from dreamworld.models.vae import VAE

_NOISE_CHUNK = 64  # dream steps of noise drawn per generator call


@dataclass
class Agent:
    """V, M and C of one experiment, and how actions are encoded for M."""

    vae: VAE
    mdnrnn: MDNRNN | None
    controller: LinearController
    memory: bool
    discrete: int = 0  # number of discrete actions, 0 for continuous ones
    clip_brake: bool = False  # CarRacing: brake = clip(a, 0, 1) as in the paper, not (a + 1) / 2
    models: dict[str, str] = field(default_factory=dict)  # ids of the V and M: a controller's provenance
    cell: bool = False  # with memory, read M's cell state too: [z, h, c]

    def act(self, population: Tensor, z: Tensor, state: LSTMState | None, member: Tensor) -> Tensor:
        """Actions of population members ``member`` on latents ``z`` and memory ``state``."""
        action = self.controller.act(population, self.inputs(z, state), member)
        if self.clip_brake:
            # The suite maps [-1, 1] to a brake in [0, 1]; this makes that map clip(a, 0, 1).
            action = torch.cat([action[:, :2], 2 * action[:, 2:].clamp(min=0) - 1], -1)
        return action

    def inputs(self, z: Tensor, state: LSTMState | None) -> Tensor:
        """The controller's input: ``[z, h]`` with memory (``[z, h, c]`` with ``cell``), else ``z``."""
        if not self.memory or state is None:
            return z
        return torch.cat([z, state[0][0], state[1][0]] if self.cell else [z, state[0][0]], -1)

    def action_features(self, action: Tensor) -> Tensor:
        """Actions as M's input (one-hot for discrete actions)."""
        if self.discrete:
            return torch.nn.functional.one_hot(action.long(), self.discrete).float()
        return action


def agent_state(agent: Agent) -> dict[str, Any]:
    """Plain data that rebuilds ``agent`` elsewhere (another process or machine)."""
    vae, mdnrnn = agent.vae, agent.mdnrnn
    return {
        "vae": {"init": vae.init_args, "weights": {k: v.cpu() for k, v in vae.state_dict().items()}},
        "mdnrnn": None
        if mdnrnn is None
        else {
            "init": (mdnrnn.z, mdnrnn.actions, mdnrnn.hidden, mdnrnn.mixtures, mdnrnn.done_weight),
            "weights": {k: v.cpu() for k, v in mdnrnn.state_dict().items()},
        },
        "controller": (agent.controller.inp, agent.controller.actions, agent.controller.discrete),
        "memory": agent.memory,
        "discrete": agent.discrete,
        "clip_brake": agent.clip_brake,
        "cell": agent.cell,
    }


def agent_from_state(state: dict[str, Any]) -> Agent:
    """The inverse of :func:`agent_state`, on the CPU."""
    vae = VAE(*state["vae"]["init"])
    vae.load_state_dict(state["vae"]["weights"])
    mdnrnn = None
    if state["mdnrnn"] is not None:
        mdnrnn = MDNRNN(*state["mdnrnn"]["init"])
        mdnrnn.load_state_dict(state["mdnrnn"]["weights"])
    return Agent(
        vae.eval(),
        mdnrnn.eval() if mdnrnn is not None else None,
        LinearController(*state["controller"]),
        state["memory"],
        state["discrete"],
        state["clip_brake"],
        cell=state.get("cell", False),
    )


@torch.no_grad()
def real_rollouts(
    env: VectorEnv,
    agent: Agent,
    population: Tensor,
    jobs: np.ndarray,
    seed: int,
    record: bool = False,
    patience: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Runs one real episode per job; episodes end at the environment's own end or time limit.

    Args:
        env: The environments (their ``image`` observations feed the VAE).
        agent: V, M and C.
        population: ``(P, params)`` controller parameters.
        jobs: ``(J,)`` member index of each rollout.
        seed: Seed of the environments' first reset and of the VAE's sampling noise.
        record: Keep the frames of job 0.
        patience: End a rollout after this many steps in a row without a positive reward (a car
            that left the track); 0 never does.

    Returns:
        ``(J,)`` returns, and the ``(T, H, W, C)`` frames of job 0 when ``record``.
    """
    n = env.num_envs
    device = population.device
    generator = torch.Generator(device).manual_seed(seed)
    returns = np.zeros(len(jobs), np.float64)
    slot_job = np.full(n, -1)
    stalled = np.zeros(n, np.int64)
    next_job = 0
    frames: list[np.ndarray] = []
    state = agent.mdnrnn.initial(n, device) if agent.mdnrnn is not None else None
    obs = env.reset(seed)
    while True:
        for slot in np.flatnonzero(obs["is_first"] & (slot_job < 0)):
            if next_job < len(jobs):
                slot_job[slot], next_job = next_job, next_job + 1
                stalled[slot] = 0
                if state is not None:
                    state[0][:, slot], state[1][:, slot] = 0.0, 0.0
        if next_job >= len(jobs) and (slot_job < 0).all():
            break
        mean, logstd = agent.vae.encode(torch.as_tensor(obs["image"], device=device))
        z = mean + logstd.exp() * torch.randn(mean.shape, generator=generator, device=device)
        member = torch.as_tensor(np.where(slot_job >= 0, jobs[np.maximum(slot_job, 0)], 0), device=device)
        action = agent.act(population, z, state, member)
        if record and slot_job[0] == 0:
            frames.append(obs["image"][0])
        if agent.mdnrnn is not None and agent.memory and state is not None:
            _, state = agent.mdnrnn.step(z, agent.action_features(action), state)
        obs = env.step(action.cpu().numpy())
        running = slot_job >= 0
        returns[slot_job[running]] += obs["reward"][running]
        ended = running & obs["is_last"]
        if patience:
            stalled = np.where(obs["reward"] > 0, 0, stalled + 1)
            given_up = running & ~ended & (stalled >= patience)
            if given_up.any():
                env.end_episodes(np.flatnonzero(given_up).tolist())
                ended |= given_up
        if record and ended[0] and slot_job[0] == 0:
            frames.append(obs["image"][0])
        slot_job[ended] = -1
    return returns, (np.stack(frames) if record and frames else None)


@torch.no_grad()
def dream_rollouts(
    agent: Agent,
    population: Tensor,
    jobs: np.ndarray,
    z0: Tensor,
    seeds: np.ndarray,
    time_limit: int,
    temperature: float,
    reward: str = "model",
    done: str = "threshold",
) -> np.ndarray:
    """Runs every job inside the MDN-RNN at once, from given first latents.

    Each step: the controller acts on ``[z, h]``, M predicts the next latent's mixture, reward and
    done logit; the next latent is drawn at ``temperature``, and the done prediction ends episodes.
    Ended jobs leave the batch, so the cost of a step follows the number still alive.

    Args:
        agent: M and C (V is not used: dreams never decode).
        population: ``(P, params)`` controller parameters.
        jobs: ``(J,)`` member index of each rollout.
        z0: ``(J, z)`` first latents (encodings of real first frames).
        seeds: ``(J,)`` seed of each job's noise.
        time_limit: Steps at most.
        temperature: Sampling temperature ``tau``.
        reward: ``model`` sums the reward head's predictions, ``survival`` counts steps alive.
        done: ``threshold`` ends an episode where the done probability exceeds 0.5 (the original
            code), ``sample`` by a Bernoulli draw; the probability is calibrated
            (:meth:`~dreamworld.models.mdn_rnn.MDNRNN.done_probability`).

    Returns:
        ``(J,)`` returns.
    """
    mdnrnn = agent.mdnrnn
    assert mdnrnn is not None, "dream rollouts need an MDN-RNN"
    count, device = len(jobs), population.device
    generators = [torch.Generator(device).manual_seed(int(seed)) for seed in seeds]
    member = torch.as_tensor(jobs, device=device)
    z, state = z0, mdnrnn.initial(count, device)
    returns = torch.zeros(count, device=device)
    active = torch.arange(count, device=device)  # jobs still alive; finished ones leave the batch
    for t in range(time_limit):
        if t % _NOISE_CHUNK == 0:
            noise = _draw(generators, min(_NOISE_CHUNK, time_limit - t), mdnrnn.z, device)
        uniform, normal, done_draw = (part[active, t % _NOISE_CHUNK] for part in noise)
        action = agent.act(population, z, state, member[active])
        prediction, state = mdnrnn.step(z, agent.action_features(action), state)
        z = mdnrnn.sample(prediction, temperature, uniform, normal)
        returns[active] += prediction.reward if reward == "model" else 1.0
        limit = 0.5 if done == "threshold" else done_draw
        alive = mdnrnn.done_probability(prediction) <= limit
        if not alive.all():
            if not alive.any():
                break
            active, z = active[alive], z[alive]
            state = (state[0][:, alive], state[1][:, alive])
    return returns.cpu().numpy().astype(np.float64)


def _draw(generators: list[torch.Generator], steps: int, z: int, device: torch.device) -> tuple[Tensor, ...]:
    """Per-job noise for ``steps`` steps: component and value draws per latent, one done draw."""
    uniform = torch.stack([torch.rand(steps, z, generator=g, device=device) for g in generators])
    normal = torch.stack([torch.randn(steps, z, generator=g, device=device) for g in generators])
    done = torch.stack([torch.rand(steps, generator=g, device=device) for g in generators])
    return uniform, normal, done
