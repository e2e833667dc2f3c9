"""Dreamer: a world model learned from replay, and an actor-critic learned in its imagination.

One implementation of DreamerV1 (Hafner et al. 2020), V2 (2021) and V3 (2023, with the 2024 revision's
options); the versions are presets of the options in :mod:`dreamworld.config.dreamer`. An update reads
in the order of the papers:

1. world model: encode a replayed ``(B, T)`` batch, run the RSSM posterior, reconstruct observations,
   predict rewards and continuation, and pull prior and posterior together (KL with free nats);
2. imagination: from every posterior state, roll the prior ``H`` steps under the actor;
3. actor and critic: lambda-returns on the imagined rewards and values; the actor follows returns
   (dynamics backpropagation, REINFORCE or a mix), the critic regresses onto them.

See ``algos/dreamer/README.md`` for how each paper setting maps to an option.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamworld.algos.dreamer.compiled import compile_mode, use_mode, warmup
from dreamworld.config.dreamer import DreamerConfig, OptimConfig
from dreamworld.errors import CheckpointError, DreamworldError
from dreamworld.models.actor_critic import Actor, Critic, EntropyScale, ReturnNorm
from dreamworld.models.disagreement import Disagreement, shift_features
from dreamworld.models.rssm import State, reset_pattern
from dreamworld.models.world_model import VectorNorm, WorldModel
from dreamworld.nn.dists import Dist, TwoHot
from dreamworld.nn.functional import lambda_return, onehot, trajectory_weights
from dreamworld.nn.layers import Features
from dreamworld.nn.noise import NoiseState, next_noise, start_noise
from dreamworld.nn.optim import Optimizer, step_jointly

if TYPE_CHECKING:
    from dreamworld.algos.dreamer.loop import TrainResult
    from dreamworld.config import Config

CHECKPOINT_KIND = "dreamer"
Metrics = dict[str, Tensor]
"""Scalar device tensors: an update never reads a value back to the host; the training loop averages
them on the device and reads them once per log interval."""
PolicyState = tuple[State, Tensor] | tuple[State, Tensor, NoiseState] | None
"""The latent state and last action of each environment, and with ``actor.noise_color`` their noise."""

SQUASH_LIMIT = 2.0
"""Where a continuous action's pre-tanh mean counts as saturated (tanh 0.96, slope 0.07): the
``actor/saturated`` metric and ``actor.squash_penalty`` start there."""

NOISE_STEPS = 1000
"""Steps of one colored noise sequence: an episode of most control tasks; longer ones draw anew."""


class Dreamer(nn.Module):
    """The Dreamer agent: world model, actor, critic and their optimisers.

    Args:
        config: The agent's options.
        obs_space: Observation spaces of one environment (``image`` and/or ``vector`` are used).
        act_space: ``Discrete`` or ``Box`` in ``[-1, 1]``.
        device: Where the networks live.
    """

    # The update's parts as they run: the methods below, or their compiled versions (.compiled).
    _world_model_loss: Callable[[dict[str, Tensor], list[str] | None], tuple[Tensor, State, Metrics]]
    _behaviour: Callable[[State, dict[str, Tensor], State], tuple[Tensor, Tensor, Metrics]]

    def __init__(
        self,
        config: DreamerConfig,
        obs_space: dict[str, gym.spaces.Space],
        act_space: gym.spaces.Space,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.config = config
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        if isinstance(act_space, gym.spaces.Discrete):
            self.actions = int(act_space.n)
        else:
            assert isinstance(act_space, gym.spaces.Box), f"unsupported action space {act_space}"
            self.actions = int(np.prod(act_space.shape))
        self.shapes: dict[str, tuple[int, ...]] = {
            key: tuple(obs_space[key].shape or ()) for key in ("image", "vector") if key in obs_space
        }
        wm = config.world_model
        self.wm = WorldModel(
            self.shapes,
            self.actions,
            rssm={
                "deter": wm.deter,
                "stoch": wm.stoch,
                "classes": wm.classes,
                "units": wm.hidden or wm.units,
                "core": wm.core,
                "gru_norm": wm.gru_norm,
                "blocks": wm.blocks,
                "unimix": wm.unimix,
                "min_std": wm.min_std,
                "initial": wm.initial,
                "prior_layers": wm.prior_layers,
            },
            units=wm.units,
            layers=wm.layers,
            act=wm.act,
            norm=wm.norm,
            depth=wm.depth,
            kernel=wm.kernel,
            symlog_inputs=wm.symlog_inputs,
            vector_output=wm.vector_output,
            reward_output=wm.reward_output,
            cont=wm.cont,
            bins=wm.bins,
        )
        feat = self.wm.rssm.feat_size
        actor, critic = config.actor, config.critic
        self.actor = Actor(
            feat,
            self.actions,
            self.discrete,
            actor.dist,
            actor.units,
            actor.layers,
            wm.act,
            wm.norm,
            actor.unimix,
            actor.min_std,
            actor.max_std,
            actor.init_std,
        )
        self.critic = Critic(
            feat,
            critic.output,
            critic.units,
            critic.layers,
            wm.act,
            wm.norm,
            wm.bins,
            critic.slow_fraction,
            critic.slow_every,
        )
        explore = config.explore
        self.explore: Disagreement | None = None
        if explore.disag > 0:
            self.explore = Disagreement(
                feat,
                self.actions,
                self.wm.rssm.latent.flat_size,
                explore.models,
                explore.units,
                explore.layers,
                wm.act,
                wm.norm,
                explore.decay,
            )
        self.return_norm = ReturnNorm(actor.norm_decay, actor.norm_low, actor.norm_high, actor.norm_limit)
        self.entropy_scale: EntropyScale | None = None
        if actor.entropy_target is not None:
            dims = 1 if self.discrete else self.actions
            self.entropy_scale = EntropyScale(
                actor.entropy,
                actor.entropy_target,
                dims,
                actor.entropy_rate,
                actor.entropy_floor,
                actor.entropy_max,
            )
        if wm.vector_norm and "vector" in self.shapes:
            self.vector_norm: VectorNorm | None = VectorNorm(self.shapes["vector"])
        else:
            self.vector_norm = None
        self.to(device)
        self.device = torch.device(device)
        self.opts = {
            "wm": _optimizer(self.wm, wm.opt),
            "actor": _optimizer(self.actor, actor.opt),
            "critic": _optimizer(self.critic, critic.opt),
        }
        if self.explore is not None:
            self.opts["explore"] = _optimizer(self.explore, explore.opt)
        self.actor_grad = actor.grad_discrete if self.discrete else actor.grad_continuous
        # Updates in a row whose gradients were not finite (and were skipped); read by the loop.
        self.nonfinite_streak = torch.zeros((), dtype=torch.int64, device=self.device)
        self.run_config: Config | None = None
        self.compile_mode, self.sparse = "none", True
        use_mode(self, compile_mode(config.compile, self.device))

    # ----------------------------------------------------------------------------------------------
    # Training

    def train_step(self, data: dict[str, np.ndarray]) -> Metrics:
        """One update of world model, actor and critic on a replayed ``(B, T)`` batch.

        Nothing in it reads a value back to the host: metrics come back as device tensors.
        """
        batch = self.preprocess(data, fit=True)
        resets = reset_pattern(_starts(data["is_first"])) if self.sparse else None
        if self.compile_mode == "cudagraphs":
            torch.compiler.cudagraph_mark_step_begin()
        with self._autocast():
            wm_loss, post, metrics = self._world_model_loss(batch, resets)
        metrics["wm/grad_norm"] = self.opts["wm"].step(wm_loss)
        if self.explore is not None:
            with self._autocast():
                explore_loss = self.explore_loss(batch, _detach(post))
            metrics["explore/loss"] = explore_loss.detach()
            metrics["explore/grad_norm"] = self.opts["explore"].step(explore_loss)
        start = {key: value.detach().flatten(0, 1) for key, value in post.items()}
        with self._frozen_world_model(), self._autocast():
            actor_loss, critic_loss, behaviour = self._behaviour(start, batch, _detach(post))
        metrics.update(behaviour)
        # Neither loss reaches the other's parameters: one backward pass serves both.
        norms = step_jointly(actor_loss + critic_loss, [self.opts["actor"], self.opts["critic"]])
        metrics["actor/grad_norm"], metrics["critic/grad_norm"] = norms
        self.critic.update_slow()
        # An optimiser skips a step whose gradients are not finite; count the updates that had one.
        norm_list = [metrics["wm/grad_norm"], *norms]
        if self.explore is not None:
            norm_list.append(metrics["explore/grad_norm"])
        skipped = ~torch.isfinite(torch.stack(norm_list)).all()
        metrics["train/skipped"] = skipped.float()
        self.nonfinite_streak.copy_(torch.where(skipped, self.nonfinite_streak + 1, 0))
        return metrics

    def warmup(self, data: dict[str, np.ndarray], steps: int = 3) -> float:
        """Compiles the update before training (see :func:`~dreamworld.algos.dreamer.compiled.warmup`);
        returns the seconds it took."""
        return warmup(self, data, steps)

    @contextmanager
    def _frozen_world_model(self) -> Iterator[None]:
        """The world model's parameters need no gradient while the actor and critic learn."""
        for param in self.wm.parameters():
            param.requires_grad_(False)
        try:
            yield
        finally:
            for param in self.wm.parameters():
                param.requires_grad_(True)

    def _autocast(self) -> torch.autocast:
        """bfloat16 matrix products when ``precision`` asks for them (weights and optimisers stay
        float32)."""
        enabled = self.config.precision == "bfloat16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def preprocess(self, data: dict[str, np.ndarray], fit: bool = False) -> dict[str, Tensor]:
        """Moves a replayed batch to the device in the model's layout.

        Every window starts from the initial state: its first step is marked ``is_first``. ``fit``
        (the training step) fits ``vector_norm`` on the first batch.
        """
        batch: dict[str, Tensor] = {key: self._tensor(data[key]) for key in self.shapes}
        if "vector" in batch:
            batch["vector"] = self._vector(batch["vector"], fit)
        batch["action"] = self.encode_action(self._tensor(data["action"]))
        batch["reward"] = self._tensor(data["reward"]).float()
        batch["cont"] = 1.0 - self._tensor(data["is_terminal"]).float()
        batch["is_first"] = self._tensor(_starts(data["is_first"]))
        batch["is_last"] = self._tensor(data["is_last"])
        return batch

    def _tensor(self, array: np.ndarray) -> Tensor:
        """A host array on the device; to a GPU through pinned memory, without waiting for the copy."""
        tensor = torch.as_tensor(np.ascontiguousarray(array))
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def _vector(self, vector: Tensor, fit: bool = False) -> Tensor:
        """Vector observations as the model reads them: float, standardised with ``vector_norm``
        (whose statistics ``fit`` sets if they are not set yet)."""
        vector = vector.float()
        if self.vector_norm is None:
            return vector
        if fit and not self.vector_norm.fitted:
            self.vector_norm.fit(vector)
        return self.vector_norm(vector)

    def world_model_loss(
        self, batch: dict[str, Tensor], resets: list[str] | None = None
    ) -> tuple[Tensor, State, Metrics]:
        """Reconstruction, reward, continue and KL losses, scaled by ``world_model.scales``.

        ``resets`` is the batch's :func:`~dreamworld.models.rssm.reset_pattern` when known.
        """
        config = self.config.world_model
        embed = self.wm.encoder(batch)
        post, prior = self.wm.rssm.observe(embed, batch["action"], batch["is_first"], resets=resets)
        dists = self.wm.heads(self.wm.rssm.feat(post))
        targets = {"reward": batch["reward"], "cont": batch["cont"]}
        if "image" in batch:
            targets["image"] = batch["image"].float() / 255.0 - 0.5
        if "vector" in batch:
            targets["vector"] = batch["vector"]
        losses = {key: dist.loss(targets[key]).mean() for key, dist in dists.items()}
        rssm = self.wm.rssm
        kl_dyn = rssm.kl(_detach(post), prior)  # trains the prior toward the posterior
        kl_rep = rssm.kl(post, _detach(prior))  # regularises the posterior toward the prior
        losses["dyn"] = _free_nats(kl_dyn, config.kl_free, config.kl_free_avg)
        losses["rep"] = _free_nats(kl_rep, config.kl_free, config.kl_free_avg)
        total = sum(config.scales[key] * value for key, value in losses.items())
        assert isinstance(total, Tensor)
        metrics = {f"wm/loss_{key}": value.detach() for key, value in losses.items()}
        with torch.no_grad():
            metrics["wm/kl"] = kl_rep.mean()
            metrics["wm/prior_entropy"] = rssm.latent.entropy(prior).mean()
            metrics["wm/post_entropy"] = rssm.latent.entropy(post).mean()
        return total, post, metrics

    def explore_loss(self, batch: dict[str, Tensor], post: State) -> Tensor:
        """The ensemble's error on the replayed transitions ``(post_t, action_t) -> stoch_{t+1}``
        (``post`` detached: the ensemble's loss does not shape the world model)."""
        assert self.explore is not None
        rssm = self.wm.rssm
        feat = rssm.sparse_feat(post) if self.sparse else rssm.feat(post)
        target = rssm.latent.flat(post["stoch"])[:, 1:]
        within = 1.0 - batch["is_first"][:, 1:].float()  # no transition into an episode's first step
        return self.explore.loss(shift_features(feat, 0, -1), batch["action"][:, :-1], target, within)

    def imagine(self, start: State) -> tuple[State, Tensor]:
        """Imagined trajectories ``(N, H + 1)`` from start states, with the actions taken in them."""
        with self._frozen_world_model():
            return self._imagine(start)

    def _imagine(self, start: State) -> tuple[State, Tensor]:
        # Only dynamics backpropagation needs gradients through the imagination; REINFORCE alone lets
        # it run without building a graph.
        with torch.set_grad_enabled(self.actor_grad != "reinforce"):
            return self.wm.rssm.imagine(self.actor, start, self.config.horizon, sparse=self.sparse)

    def behaviour(
        self, start: State, batch: dict[str, Tensor], post: State
    ) -> tuple[Tensor, Tensor, Metrics]:
        """Imagination from the flattened posterior ``start`` states, then the actor and critic losses
        (the world model frozen by the caller); with ``imagine_starts``, from that many of them drawn
        at random."""
        start_cont = batch["cont"].flatten(0, 1)
        count = self.config.imagine_starts
        if 0 < count < len(start_cont):
            # A random permutation's first entries: one draw from the device's generator, no sync.
            pick = torch.rand(len(start_cont), device=start_cont.device).argsort()[:count]
            start = {key: value[pick] for key, value in start.items()}
            start_cont = start_cont[pick]
        traj, actions = self._imagine(start)
        return self.behaviour_losses(traj, actions, start_cont, batch, post)

    def behaviour_losses(
        self, traj: State, actions: Tensor, start_cont: Tensor, batch: dict[str, Tensor], post: State
    ) -> tuple[Tensor, Tensor, Metrics]:
        """Actor and critic losses from lambda-returns along imagined trajectories.

        Heads run once over all ``H + 1`` states of a trajectory; losses over ``H`` steps slice their
        outputs, so no feature tensor is copied.
        """
        config = self.config
        # Heads that need no gradient into the states read the latents as indices (same values).
        sparse = self.wm.rssm.sparse_feat(_detach(traj)) if self.sparse else self.wm.rssm.feat(_detach(traj))
        dynamics = self.actor_grad != "reinforce"
        feat = self.wm.rssm.feat(traj) if dynamics else sparse
        with torch.set_grad_enabled(dynamics):
            reward = self.wm.reward(feat).mode()
            cont = self.wm.cont(feat).mode() if self.wm.cont is not None else torch.ones_like(reward)
        task_reward = reward
        if self.explore is not None:
            # The step t -> t + 1 earns the novelty of (state t, action t), as its reward does. No
            # gradient: the actor follows novelty through the critic's values (backpropagating through
            # the ensemble as well made a CPU update 1.7x slower; docs/benchmarks.md).
            with torch.no_grad():
                novelty, raw = self.explore.novelty(shift_features(sparse, 0, -1), actions[:, :-1].detach())
            reward = reward + config.explore.disag * F.pad(novelty, (1, 0))
        # The start state is real: its continuation is known rather than predicted.
        cont = torch.cat([start_cont[:, None], cont[:, 1:]], 1)
        critic = self.critic(sparse)
        # One pass of the slow critic serves both the targets (V2, V3) and the regulariser (V3).
        needs_slow = config.critic.slow_target or config.critic.slow_reg
        slow = self.critic.slow_value(sparse) if needs_slow else None
        if slow is not None and config.critic.slow_target:
            value = slow
        elif dynamics:
            value = self.critic.value_through(feat)  # a path from the returns back into the states
        else:
            with torch.no_grad():
                value = critic.mode()  # computes the probabilities the critic's loss reuses
        returns = lambda_return(reward, cont, value, config.discount, config.return_lambda)
        weights = trajectory_weights(cont, config.discount)[:, :-1]
        actor_loss, metrics = self.actor_loss(sparse, actions, returns, value, weights)
        critic_loss, critic_metrics = self.critic_loss(critic, returns, weights, slow)
        if config.critic.replay_scale:
            replay_loss = self.replay_value_loss(post, batch, returns[:, 0])
            critic_loss = critic_loss + config.critic.replay_scale * replay_loss
            critic_metrics["critic/replay_loss"] = replay_loss.detach()
        metrics.update(critic_metrics)
        metrics["imagine/reward"] = task_reward[:, 1:].mean().detach()
        if self.explore is not None:
            metrics["imagine/disagreement"] = raw.mean().detach()
        metrics["imagine/return"] = returns.mean().detach()
        metrics["imagine/cont"] = cont[:, 1:].mean().detach()
        return actor_loss, critic_loss, metrics

    def actor_loss(
        self, feat: Features, actions: Tensor, returns: Tensor, value: Tensor, weights: Tensor
    ) -> tuple[Tensor, Metrics]:
        """The actor objective: normalised advantages by dynamics or REINFORCE, plus entropy.

        Args:
            feat: ``(N, H + 1, F)`` imagined features, detached.
            actions: ``(N, H + 1, A)`` actions taken in them.
            returns: ``(N, H)`` lambda-returns (with gradients into the imagination for dynamics).
            value: ``(N, H + 1)`` the critic's values.
            weights: ``(N, H)`` trajectory weights.
        """
        config = self.config.actor
        if config.return_norm:
            self.return_norm.update(returns)
            scale = self.return_norm.scale()
        else:
            scale = torch.ones((), device=returns.device)
        advantage = (returns - value[:, :-1].detach()) / scale
        dist = self.actor(feat)
        log_prob = dist.log_prob(actions.detach())[:, :-1]
        reinforce = -log_prob * advantage.detach()
        if self.actor_grad == "dynamics":
            objective = -advantage
        elif self.actor_grad == "reinforce":
            objective = reinforce
        else:
            objective = config.mix * -advantage + (1 - config.mix) * reinforce
        entropy = dist.entropy()[:, :-1]
        metrics: Metrics = {}
        coef: Tensor | float = config.entropy
        if self.entropy_scale is not None:
            self.entropy_scale.update(entropy)
            adapted = self.entropy_scale.value.clone()  # the loss keeps this update's value
            coef = metrics["actor/entropy_scale"] = adapted
        loss = (weights * (objective - coef * entropy)).mean()
        presquash = getattr(dist, "presquash", None)  # continuous actions only
        if presquash is not None:
            beyond = F.relu(presquash[:, :-1].abs() - SQUASH_LIMIT)
            if config.squash_penalty:
                loss = loss + config.squash_penalty * (weights * beyond.square().sum(-1)).mean()
            metrics["actor/saturated"] = (beyond > 0).float().mean().detach()
        metrics.update(
            {
                "actor/loss": loss.detach(),
                "actor/entropy": entropy.mean().detach(),
                "actor/return_scale": scale.detach(),
                "actor/advantage": advantage.mean().detach(),
            }
        )
        return loss, metrics

    def critic_loss(
        self, dist: Dist, returns: Tensor, weights: Tensor, slow: Tensor | None = None
    ) -> tuple[Tensor, Metrics]:
        """Regression onto the returns, plus the regulariser toward the slow critic (V3).

        Args:
            dist: The critic's prediction for all ``H + 1`` states.
            returns: ``(N, H)`` targets.
            weights: ``(N, H)`` trajectory weights.
            slow: ``(N, H + 1)`` the slow critic's values of the same states (needed with
                ``critic.slow_reg``).
        """
        config = self.config.critic
        # The last state has no return: pad the targets and drop that column of the loss.
        targets = [(F.pad(returns.detach(), (0, 1)), 1.0)]
        if config.slow_reg:
            assert slow is not None, "the slow critic's values are needed for its regulariser"
            targets.append((slow, config.slow_reg))
        loss = (weights * _losses(dist, targets)[:, :-1]).mean()
        with torch.no_grad():
            value = dist.mode()[:, :-1].mean()
        return loss, {"critic/loss": loss.detach(), "critic/value": value}

    def replay_value_loss(self, post: State, batch: dict[str, Tensor], imagined: Tensor) -> Tensor:
        """The critic on replayed states, with lambda-returns over real rewards (DreamerV3 2024).

        Each replayed step bootstraps from the imagined return that starts in it; a return never
        crosses an episode end inside the window, and the last step of an episode gets no loss.
        """
        config = self.config
        feat = self.wm.rssm.feat(_detach(post))
        batch_size, steps = batch["reward"].shape
        boot = imagined.detach().reshape(batch_size, steps)
        last = batch["is_last"].float()
        lambdas = config.return_lambda * (1 - last[:, 1:])
        returns = lambda_return(batch["reward"], batch["cont"], boot, config.discount, lambdas)
        targets = [(F.pad(returns, (0, 1)), 1.0)]
        if config.critic.slow_reg:
            targets.append((self.critic.slow_value(feat), config.critic.slow_reg))
        loss = _losses(self.critic(feat), targets)[:, :-1]
        return ((1 - last[:, :-1]) * loss).mean()

    # ----------------------------------------------------------------------------------------------
    # Acting

    @torch.no_grad()
    def policy(
        self, obs: dict[str, np.ndarray], state: PolicyState = None, mode: str = "sample"
    ) -> tuple[np.ndarray, PolicyState]:
        """Actions for a batch of observations, carrying the latent state between calls.

        Args:
            obs: Batched observations of the environment contract (``is_first`` resets the state).
            state: What the previous call returned, or None at the start.
            mode: ``sample`` (training), ``mode`` (deterministic: the modes of latents and actions)
                or ``explore`` (sample, plus ``actor.explore_noise`` on continuous actions).

        Returns:
            Actions for the environments (indices or vectors in ``[-1, 1]``) and the next state.
        """
        inputs = {key: torch.as_tensor(_writable(obs[key]), device=self.device) for key in self.shapes}
        if "vector" in inputs:
            inputs["vector"] = self._vector(inputs["vector"])
        is_first = torch.as_tensor(_writable(obs["is_first"]), device=self.device)
        rssm = self.wm.rssm
        noise: NoiseState | None = None
        if state is None:
            latent, prev_action = rssm.initial(len(is_first)), torch.zeros(len(is_first), self.actions)
            prev_action = prev_action.to(self.device)
        else:
            latent, prev_action = state[0], state[1]
            noise = state[2] if len(state) > 2 else None
        embed_part = rssm.post_embed(self.wm.encoder(inputs))
        latent = rssm.obs_step(latent, prev_action, embed_part, is_first, sample=mode != "mode")
        dist = self.actor(rssm.feat(latent))
        beta = self.config.actor.noise_color
        if mode == "explore" and beta and not self.discrete:
            if noise is None or len(noise[1]) != len(is_first):
                noise = start_noise(len(is_first), NOISE_STEPS, self.actions, self.device)
            eps, noise = next_noise(noise, beta, obs["is_first"])
            action = dist.sample_with(eps)  # continuous: BoundedNormal or TanhNormal
        else:
            action = dist.mode() if mode == "mode" else dist.sample()
        if mode == "explore" and not self.discrete and self.config.actor.explore_noise:
            action = action + self.config.actor.explore_noise * torch.randn_like(action)
        if not self.discrete:
            action = action.clamp(-1, 1)
        next_state: PolicyState = (latent, action) if noise is None else (latent, action, noise)
        return self.decode_action(action), next_state

    def encode_action(self, action: Tensor) -> Tensor:
        """Environment actions to model inputs: one-hot for discrete, float vectors otherwise."""
        if self.discrete:
            return onehot(action.reshape(action.shape[:2]), self.actions)
        return action.float()

    def decode_action(self, action: Tensor) -> np.ndarray:
        """Model actions to environment actions: indices for discrete, float32 vectors otherwise."""
        if self.discrete:
            return action.argmax(-1).cpu().numpy()
        return action.cpu().numpy().astype(np.float32)

    # ----------------------------------------------------------------------------------------------
    # Reports

    @torch.no_grad()
    def open_loop(
        self, data: dict[str, np.ndarray], context: int = 5, horizon: int = 45, videos: int = 4
    ) -> np.ndarray | None:
        """Truth, model and error side by side: the model sees ``context`` frames, then imagines the
        next ``horizon`` (or the rest of the window) under the replayed actions.

        Returns:
            A video ``(T, H, 3 * W, C)`` uint8 stacking ``videos`` sequences vertically, or None for
            tasks without images.
        """
        if "image" not in self.shapes:
            return None
        steps = context + horizon
        batch = self.preprocess({key: value[:videos, :steps] for key, value in data.items()})
        rssm = self.wm.rssm
        embed = self.wm.encoder(batch)
        post, _ = rssm.observe(
            embed[:, :context], batch["action"][:, :context], batch["is_first"][:, :context]
        )
        state = {key: value[:, -1] for key, value in post.items()}
        imagined = []
        for t in range(context, batch["action"].shape[1]):
            state = rssm.img_step(state, batch["action"][:, t - 1])
            imagined.append(state)
        prior = {key: torch.stack([s[key] for s in imagined], 1) for key in imagined[0]}
        recon = self.wm.decoder(rssm.feat(post))["image"].mode()
        model = torch.cat([recon, self.wm.decoder(rssm.feat(prior))["image"].mode()], 1)
        truth = batch["image"].float() / 255.0
        model = (model + 0.5).clamp(0, 1)
        error = (model - truth + 1) / 2
        video = torch.cat([truth, model, error], 3)  # (B, T, H, 3W, C)
        video = torch.cat(list(video), 1)  # sequences stacked vertically: (T, B*H, 3W, C)
        return (video * 255).to(torch.uint8).cpu().numpy()

    # ----------------------------------------------------------------------------------------------
    # State

    def training_state(self) -> dict[str, Any]:
        """Networks, optimiser states and the spaces the agent was built for, for checkpoints."""
        return {
            "model": self.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.opts.items()},
            "config": asdict(self.config),
            "spaces": {
                "obs": {key: list(shape) for key, shape in self.shapes.items()},
                "act": {"discrete": self.discrete, "size": self.actions},
            },
        }

    def is_finite(self) -> bool:
        """Whether every weight, statistic and optimiser moment is finite (one host read)."""
        tensors = [t for t in self.state_dict().values() if t.is_floating_point()]
        for opt in self.opts.values():
            tensors += [*opt.moment1, *opt.moment2]
        return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restores :meth:`training_state` output.

        Raises:
            CheckpointError: The checkpoint was written by an agent of other sizes or options.
        """
        try:
            self.load_state_dict(state["model"])
            for name, opt in self.opts.items():
                opt.load_state_dict(state["optimizers"][name])
        except (RuntimeError, KeyError, ValueError) as error:
            first = str(error).strip().splitlines()[-1].strip()
            raise CheckpointError(
                f"the checkpoint does not fit this agent (other sizes, options or task): {first[:200]}"
            ) from None

    # ----------------------------------------------------------------------------------------------
    # The user-facing API: build, learn, act, save, load

    @classmethod
    def from_preset(
        cls,
        preset: str = "dreamerv3",
        env: str = "gym/CartPole-v1",
        presets: tuple[str, ...] = (),
        overrides: dict[str, Any] | None = None,
        logdir: str = "runs/dreamer",
    ) -> Dreamer:
        """Builds an agent from shipped presets for an environment.

        Args:
            preset: The agent preset: ``dreamerv1``, ``dreamerv2``, ``dreamerv3`` or ``dreamerv3_2024``.
            env: Environment id (see :func:`dreamworld.envs.make_env`).
            presets: More presets merged after ``preset`` (suites, model sizes).
            overrides: Dotted config keys to values, e.g. ``{"dreamer.train_ratio": 256}``.
            logdir: Run directory used by :meth:`learn`.

        Example:
            >>> agent = Dreamer.from_preset("dreamerv3", env="gym/CartPole-v1")  # doctest: +SKIP
            >>> agent.learn(steps=30_000)  # doctest: +SKIP
            >>> agent.save("cartpole.pt")  # doctest: +SKIP
        """
        from dreamworld.config import load_config

        values = {"env.name": env, "logdir": logdir, **(overrides or {})}
        return cls.from_config(load_config([preset, *presets], overrides=values))

    @classmethod
    def from_config(cls, config: Config) -> Dreamer:
        """Builds an agent for the environment a full configuration names."""
        from dreamworld.run.driver import vector_env
        from dreamworld.run.system import pick_device

        with vector_env(config.env, num_envs=1, parallel="serial") as env:
            agent = cls(config.dreamer, env.obs_space, env.act_space, pick_device(config.dreamer.device))
        agent.run_config = config
        return agent

    def learn(self, steps: int) -> TrainResult:
        """Trains in the run's environment until ``steps`` policy steps in total (resuming the run
        directory if it holds a checkpoint); returns counters and the final evaluation."""
        from dreamworld.algos.dreamer.loop import train
        from dreamworld.config import config_from_dict, config_to_dict

        values = config_to_dict(self._require_run_config())
        values["dreamer"]["steps"] = steps
        self.run_config = config_from_dict(values)
        return train(self.run_config, agent=self)

    def act(
        self, obs: dict[str, np.ndarray], state: PolicyState = None, deterministic: bool = False
    ) -> tuple[np.ndarray, PolicyState]:
        """Actions for batched observations (see :meth:`policy`); pass the returned state back."""
        return self.policy(obs, state, mode="mode" if deterministic else "sample")

    def save(self, path: str | Path) -> Path:
        """Writes the agent (networks, optimisers, configuration) to one checkpoint file."""
        from dreamworld.config import config_to_dict
        from dreamworld.run.checkpoint import save_checkpoint

        state = {**self.training_state(), "run_config": config_to_dict(self._require_run_config())}
        return save_checkpoint(path, state, kind=CHECKPOINT_KIND)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Dreamer:
        """Reads an agent written by :meth:`save` or a run's ``checkpoint.pt``; loads on any device.

        Raises:
            CheckpointError: The file is missing, corrupt, foreign or of another kind.
        """
        from dreamworld.config import config_from_dict
        from dreamworld.run.checkpoint import load_checkpoint
        from dreamworld.run.system import pick_device

        state = load_checkpoint(path, kind=CHECKPOINT_KIND)
        config = config_from_dict(state["run_config"])
        obs_space, act_space = _spaces(state["spaces"])
        agent = cls(config.dreamer, obs_space, act_space, pick_device(device))
        agent.load_training_state(state)
        agent.run_config = config
        return agent

    def _require_run_config(self) -> Config:
        if self.run_config is None:
            raise DreamworldError(
                "this agent has no run configuration: build it with Dreamer.from_preset or from_config"
            )
        return self.run_config


def _spaces(spaces: dict[str, Any]) -> tuple[dict[str, gym.spaces.Space], gym.spaces.Space]:
    """Observation and action spaces from a checkpoint's description of them."""
    obs: dict[str, gym.spaces.Space] = {}
    for key, shape in spaces["obs"].items():
        if key == "image":
            obs[key] = gym.spaces.Box(0, 255, tuple(shape), np.uint8)
        else:
            obs[key] = gym.spaces.Box(-np.inf, np.inf, tuple(shape), np.float32)
    act = spaces["act"]
    if act["discrete"]:
        return obs, gym.spaces.Discrete(act["size"])
    return obs, gym.spaces.Box(-1.0, 1.0, (act["size"],), np.float32)


def _optimizer(module: nn.Module, config: OptimConfig) -> Optimizer:
    return Optimizer(
        module,
        name=config.name,
        lr=config.lr,
        eps=config.eps,
        clip=config.clip,
        agc=config.agc,
        weight_decay=config.weight_decay,
        warmup=config.warmup,
    )


def _losses(dist: Dist, targets: list[tuple[Tensor, float]]) -> Tensor:
    """``sum(scale * dist.loss(target))``; a two-hot critic does it in one pass over its bins."""
    if isinstance(dist, TwoHot):
        return dist.losses(*targets)
    total = sum(scale * dist.loss(target) for target, scale in targets)
    assert isinstance(total, Tensor)
    return total


def _starts(is_first: np.ndarray) -> np.ndarray:
    """Episode starts of a replayed window: every window starts from the initial state."""
    starts = np.array(is_first, dtype=bool)
    starts[:, 0] = True
    return starts


def _detach(state: State) -> State:
    return {key: value.detach() for key, value in state.items()}


def _free_nats(kl: Tensor, free: float, average_first: bool) -> Tensor:
    """KL below ``free`` nats is not minimised: clipped per step (V3) or on the batch mean (V1, V2)."""
    if average_first:
        return torch.clamp(kl.mean(), min=free)
    return torch.clamp(kl, min=free).mean()


def _writable(array: Any) -> Any:
    """``array``, copied if it is a read-only NumPy array (torch warns about those)."""
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        return array.copy()
    return array
