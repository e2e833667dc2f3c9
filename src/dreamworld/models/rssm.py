"""The recurrent state-space model (RSSM) of Dreamer: a deterministic recurrent state ``deter`` and a
stochastic state ``stoch`` that is either Gaussian (DreamerV1) or a set of categoricals (V2/V3).

``observe`` runs the posterior over a replayed sequence (it sees the embedding of each observation),
``imagine`` rolls the prior forward under a policy. A state is a dict of tensors with the batch first:

==========  ========================  ==================================================
key         shape                     meaning
==========  ========================  ==================================================
``deter``   ``(B, deter)``            recurrent state ``h``
``stoch``   ``(B, S, C)`` or (B, S)   sample of ``z``: one-hot rows, or Gaussian values
``logits``  ``(B, S, C)``             categorical latents: the distribution of ``z``
``mean``    ``(B, S)``                Gaussian latents: mean and std of ``z``
``std``     ``(B, S)``
==========  ========================  ==================================================

Convention of a replayed sequence: ``action[:, t]`` was chosen at observation ``t``; the transition into
step ``t`` therefore uses ``action[:, t - 1]``. Where ``is_first[:, t]`` is set the previous state and
action are replaced by the initial state and a zero action, so no information crosses an episode start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamworld.nn.dists import ActionDist
from dreamworld.nn.functional import onehot, sample_index, sample_onehot
from dreamworld.nn.layers import MLP, Dense, Features, OneHotFeat, init_uniform_, make_act, make_norm
from dreamworld.nn.recurrent import BlockGRU, GRUCell

State = dict[str, Tensor]


class CategoricalLatent:
    """``stoch`` categoricals of ``classes`` classes with straight-through samples and a uniform mix."""

    def __init__(self, stoch: int, classes: int, unimix: float) -> None:
        self.stoch, self.classes, self.unimix = stoch, classes, unimix
        self.stats_size = stoch * classes
        self.flat_size = stoch * classes

    def stats(self, raw: Tensor) -> State:
        """Normalised log-probabilities (with the uniform mix) as ``logits``, in float32."""
        raw = raw.float()
        if not self.unimix:
            return {"logits": torch.log_softmax(raw.reshape(*raw.shape[:-1], self.stoch, self.classes), -1)}
        return {"logits": torch.log(self.probs(raw))}

    def probs(self, raw: Tensor) -> Tensor:
        """Probabilities ``(..., S, C)`` with the uniform mix, from the raw network output."""
        probs = torch.softmax(raw.reshape(*raw.shape[:-1], self.stoch, self.classes), -1)
        return (1 - self.unimix) * probs + self.unimix / self.classes if self.unimix else probs

    def sample_index(self, raw: Tensor) -> Tensor:
        """Flattened one-hot positions ``(..., S)`` of a sample, without building the one-hot rows."""
        offsets = torch.arange(self.stoch, device=raw.device) * self.classes
        with torch.no_grad():  # an index has no gradient: the mix can be applied in place
            probs = torch.softmax(raw.reshape(*raw.shape[:-1], self.stoch, self.classes), -1)
            if self.unimix:
                probs.mul_(1 - self.unimix).add_(self.unimix / self.classes)
        return sample_index(probs) + offsets

    def sample(self, stats: State) -> Tensor:
        return sample_onehot(stats["logits"].exp())

    def index(self, stoch: Tensor) -> Tensor:
        """Positions of the ones of one-hot samples ``(..., S, C)`` in their flattened form ``(..., S)``.

        A product with ``0, 1, ..., C - 1`` reads them exactly (the rows hold one exact 1, as
        straight-through samples do too) and is ~15x faster on a CPU than ``argmax`` over short rows.
        A non-finite row (an update gone wrong, which the optimisers then skip) converts to some
        integer, which the clamp makes a valid position rather than an invalid index.
        """
        offsets = torch.arange(self.stoch, device=stoch.device) * self.classes
        positions = torch.arange(self.classes, device=stoch.device, dtype=stoch.dtype)
        return (stoch.detach() @ positions).long().clamp_(0, self.classes - 1) + offsets

    def mode(self, stats: State) -> Tensor:
        return onehot(stats["logits"].argmax(-1), self.classes, stats["logits"].dtype)

    def kl(self, post: State, prior: State) -> Tensor:
        """``KL(post || prior)`` summed over the latents: ``(...)``."""
        logp, logq = post["logits"], prior["logits"]
        return (logp.exp() * (logp - logq)).sum((-2, -1))

    def entropy(self, stats: State) -> Tensor:
        logp = stats["logits"]
        return -(logp.exp() * logp).sum((-2, -1))

    def zeros(self, batch: int, device: torch.device) -> State:
        uniform = torch.full((batch, self.stoch, self.classes), -math.log(self.classes), device=device)
        return {"logits": uniform}

    def flat(self, stoch: Tensor) -> Tensor:
        return stoch.reshape(*stoch.shape[:-2], self.flat_size)


class GaussianLatent:
    """``stoch`` independent Gaussians with std = softplus + ``min_std`` (DreamerV1)."""

    def __init__(self, stoch: int, min_std: float) -> None:
        self.stoch, self.min_std = stoch, min_std
        self.stats_size = 2 * stoch
        self.flat_size = stoch

    def stats(self, raw: Tensor) -> State:
        mean, std = raw.float().chunk(2, -1)
        return {"mean": mean, "std": F.softplus(std) + self.min_std}

    def sample(self, stats: State) -> Tensor:
        return stats["mean"] + stats["std"] * torch.randn_like(stats["std"])

    def mode(self, stats: State) -> Tensor:
        return stats["mean"]

    def kl(self, post: State, prior: State) -> Tensor:
        var_ratio = (post["std"] / prior["std"]).square()
        delta = ((post["mean"] - prior["mean"]) / prior["std"]).square()
        return (0.5 * (var_ratio + delta - 1 - var_ratio.log())).sum(-1)

    def entropy(self, stats: State) -> Tensor:
        return (0.5 * torch.log(2 * torch.pi * torch.e * stats["std"].square())).sum(-1)

    def zeros(self, batch: int, device: torch.device) -> State:
        return {
            "mean": torch.zeros(batch, self.stoch, device=device),
            "std": torch.ones(batch, self.stoch, device=device),
        }

    def flat(self, stoch: Tensor) -> Tensor:
        return stoch


class RSSM(nn.Module):
    """Recurrent state-space model.

    Args:
        embed: Size of the observation embedding.
        actions: Action size (one-hot size for discrete actions).
        deter: Recurrent state size.
        stoch: Number of latent variables.
        classes: Classes per categorical latent; 0 selects Gaussian latents.
        units: Hidden units of the input, prior and posterior networks.
        act: Activation name.
        norm: Norm name.
        core: ``gru`` (an input layer and a normalised GRU) or ``block`` (DreamerV3 2024).
        gru_norm: Norm over the GRU's gate pre-activations (``gru`` core).
        blocks: Blocks of the ``block`` core.
        unimix: Uniform mix of categorical latents.
        min_std: Smallest std of Gaussian latents.
        initial: ``zeros`` or ``learned`` (a trained initial ``deter``; ``stoch`` is its prior mode).
        prior_layers: Hidden layers of the prior network.

    Example:
        >>> rssm = RSSM(embed=10, actions=2, deter=16, stoch=4, classes=4, units=16)
        >>> is_first = torch.ones(3, 5, dtype=torch.bool)
        >>> post, prior = rssm.observe(torch.zeros(3, 5, 10), torch.zeros(3, 5, 2), is_first)
        >>> post["deter"].shape, post["stoch"].shape, rssm.feat(post).shape
        (torch.Size([3, 5, 16]), torch.Size([3, 5, 4, 4]), torch.Size([3, 5, 32]))
    """

    def __init__(
        self,
        embed: int,
        actions: int,
        deter: int = 512,
        stoch: int = 32,
        classes: int = 32,
        units: int = 512,
        act: str = "silu",
        norm: str = "layer",
        core: str = "gru",
        gru_norm: str = "layer",
        blocks: int = 8,
        unimix: float = 0.01,
        min_std: float = 0.1,
        initial: str = "learned",
        prior_layers: int = 1,
    ) -> None:
        super().__init__()
        self.latent = CategoricalLatent(stoch, classes, unimix) if classes else GaussianLatent(stoch, min_std)
        self.deter_size = deter
        self.core_kind = core
        flat = self.latent.flat_size
        if core == "gru":
            self.img_in = Dense(actions + flat, units, act, norm)
            self.gru = GRUCell(units, deter, gru_norm)
        elif core == "block":
            self.block = BlockGRU(flat, actions, deter, units, blocks, act, norm)
        else:
            raise ValueError(f"unknown RSSM core '{core}': choose gru or block")
        self.prior_net = nn.Sequential(
            MLP(deter, units, prior_layers, act, norm), nn.Linear(units, self.latent.stats_size)
        )
        # The posterior sees deter and embed; its first layer is split so the embed part is computed
        # for the whole sequence at once, outside the time loop.
        self.post_deter = nn.Linear(deter, units, bias=False)
        self.post_embed = nn.Linear(embed, units, bias=norm == "none")
        self.post_net = nn.Sequential(
            make_norm(norm, units), make_act(act), nn.Linear(units, self.latent.stats_size)
        )
        self.initial_kind = initial
        if initial == "learned":
            self.initial_deter = nn.Parameter(torch.zeros(deter))
        elif initial != "zeros":
            raise ValueError(f"unknown initial state '{initial}': choose zeros or learned")
        init_uniform_(self)

    @property
    def feat_size(self) -> int:
        return self.deter_size + self.latent.flat_size

    def feat(self, state: State) -> Tensor:
        """Features for heads: ``[deter, flat(stoch)]``."""
        return torch.cat([state["deter"], self.latent.flat(state["stoch"])], -1)

    def sparse_feat(self, state: State) -> Features:
        """The same features as :meth:`feat`, with one-hot latents kept as indices.

        Heads compute identical outputs from either form, the sparse one with 32x fewer operations on
        the latent part; no gradient can reach ``stoch`` through it. Gaussian latents stay dense.
        """
        return self._with_stoch(state["deter"], state, sparse=True)

    def initial(self, batch: int) -> State:
        """The state before the first observation of an episode."""
        device = self.post_deter.weight.device
        if self.initial_kind == "zeros":
            deter = torch.zeros(batch, self.deter_size, device=device)
            stats = self.latent.zeros(batch, device)
            return {"deter": deter, "stoch": torch.zeros_like(self.latent.mode(stats)), **stats}
        deter = torch.tanh(self.initial_deter).expand(batch, -1)
        stats = self.latent.stats(self.prior_net(deter))
        return {"deter": deter, "stoch": self.latent.mode(stats), **stats}

    def img_step(self, state: State, action: Tensor, sparse: bool = False) -> State:
        """One step of the prior: ``(state_{t-1}, action_{t-1}) -> state_t``.

        ``sparse`` feeds one-hot latents as indices (exact, without gradient to them).
        """
        deter = self._core(state, action, sparse)
        raw = self.prior_net(deter)
        if sparse and isinstance(self.latent, CategoricalLatent):
            # Imagination without gradients keeps only what later steps read: no one-hot rows.
            return {"deter": deter, "index": self.latent.sample_index(raw)}
        stats = self.latent.stats(raw)
        return {"deter": deter, "stoch": self.latent.sample(stats), **stats}

    def observe(
        self,
        embed: Tensor,
        action: Tensor,
        is_first: Tensor,
        state: State | None = None,
        resets: Sequence[str] | None = None,
    ) -> tuple[State, State]:
        """Posterior and prior states along a replayed sequence.

        Args:
            embed: ``(B, T, E)`` observation embeddings.
            action: ``(B, T, A)`` actions chosen at each observation.
            is_first: ``(B, T)`` episode starts.
            state: State before the sequence (defaults to the initial state).
            resets: Per step, whether ``"none"``, ``"some"`` or ``"every"`` sequence starts there (see
                :func:`reset_pattern`); a caller that read ``is_first`` on the host saves the masking
                at steps where no sequence starts. Default: ``"some"`` everywhere, which is right for
                any ``is_first`` and needs no host synchronisation.

        Returns:
            ``post`` and ``prior``: dicts of ``(B, T, ...)`` tensors. The prior shares ``deter`` with
            the posterior (both follow the posterior samples) and differs in its latent statistics.
        """
        batch, steps = embed.shape[:2]
        assert action.shape[:2] == is_first.shape == (batch, steps), (
            embed.shape,
            action.shape,
            is_first.shape,
        )
        state = self.initial(batch) if state is None else state
        prev_action = torch.cat([torch.zeros_like(action[:, :1]), action[:, :-1]], 1)
        embed_part = self.post_embed(embed)
        init = self.initial(batch)
        resets = ["some"] * steps if resets is None else resets
        assert len(resets) == steps, (len(resets), steps)
        posts: list[State] = []
        for t, reset in enumerate(resets):
            state = self.obs_step(
                state, prev_action[:, t], embed_part[:, t], is_first[:, t], init=init, reset=reset
            )
            posts.append(state)
        post = {key: torch.stack([p[key] for p in posts], 1) for key in posts[0]}
        prior = {"deter": post["deter"], **self.latent.stats(self.prior_net(post["deter"]))}
        return post, prior

    def obs_step(
        self,
        state: State,
        prev_action: Tensor,
        embed_part: Tensor,
        is_first: Tensor,
        sample: bool = True,
        init: State | None = None,
        reset: str = "some",
    ) -> State:
        """One posterior step: reset where ``is_first``, advance the core, condition on the embedding.

        Args:
            state: ``(B, ...)`` state after the previous step.
            prev_action: ``(B, A)`` action chosen at the previous step.
            embed_part: ``(B, units)`` the embedding through :attr:`post_embed`, computed outside the
                time loop for whole sequences.
            is_first: ``(B,)`` episode starts.
            sample: Sample the latent (else take its mode, for deterministic acting).
            init: The initial state for this batch size, when the caller has it already.
            reset: ``"some"`` reads ``is_first`` per sequence; a caller that knows that ``"none"`` or
                ``"every"`` sequence starts here saves the masking (same results).
        """
        if reset == "none":
            pass
        elif reset == "every":
            state = self.initial(len(is_first)) if init is None else init
            prev_action = torch.zeros_like(prev_action)
        else:
            init = self.initial(len(is_first)) if init is None else init
            state = {key: _where(is_first, init[key], value) for key, value in state.items()}
            prev_action = _where(is_first, torch.zeros_like(prev_action), prev_action)
        deter = self._core(state, prev_action)
        stats = self.latent.stats(self.post_net(self.post_deter(deter) + embed_part))
        stoch = self.latent.sample(stats) if sample else self.latent.mode(stats)
        return {"deter": deter, "stoch": stoch, **stats}

    def imagine(
        self, policy: Callable[[Features], ActionDist], start: State, horizon: int, sparse: bool = True
    ) -> tuple[State, Tensor]:
        """Rolls the prior forward from ``start`` with actions sampled from ``policy(feat)``.

        Args:
            policy: Maps features ``(N, F)`` to an action distribution.
            start: ``(N, ...)`` start states.
            horizon: Imagined steps ``H``.
            sparse: Without gradients, feed one-hot latents to every layer as indices (same results,
                fewer operations on a CPU; compiled updates keep them dense).

        Returns:
            States ``(N, H + 1, ...)`` including the start, and the actions ``(N, H + 1, A)`` taken in
            each of them (the last is sampled but leads nowhere).
        """
        sparse = sparse and not torch.is_grad_enabled()
        feat = self.sparse_feat if sparse else lambda state: self.feat(state).detach()
        if sparse and isinstance(self.latent, CategoricalLatent):
            start = {"deter": start["deter"], "index": self.latent.index(start["stoch"])}
        states, actions = [start], []
        for _ in range(horizon):
            action = policy(feat(states[-1])).sample()
            actions.append(action)
            states.append(self.img_step(states[-1], action, sparse))
        actions.append(policy(feat(states[-1])).sample())
        keys = states[-1].keys()
        traj = {key: torch.stack([s[key] for s in states], 1) for key in keys}
        return traj, torch.stack(actions, 1)

    def kl(self, post: State, prior: State) -> Tensor:
        """``KL(post || prior)`` per step, summed over the latents."""
        return self.latent.kl(post, prior)

    def _core(self, state: State, action: Tensor, sparse: bool = False) -> Tensor:
        if self.core_kind == "block":
            return self.block(state["deter"], self._with_stoch(None, state, sparse), action)
        return self.gru(state["deter"], self.img_in(self._with_stoch(action, state, sparse)))

    def _with_stoch(self, dense: Tensor | None, state: State, sparse: bool) -> Features:
        """``[dense, flat(stoch)]``, as :class:`OneHotFeat` when ``sparse`` and the latents are one-hot.

        A state from sparse imagination holds ``index`` (the one-hot positions) instead of ``stoch``.
        """
        if sparse and isinstance(self.latent, CategoricalLatent):
            index = state["index"] if "index" in state else self.latent.index(state["stoch"])
            empty = index.new_zeros((*index.shape[:-1], 0), dtype=torch.float32)
            return OneHotFeat(empty if dense is None else dense, index)
        flat = self.latent.flat(state["stoch"])
        return flat if dense is None else torch.cat([dense, flat], -1)


def _where(first: Tensor, init: Tensor, value: Tensor) -> Tensor:
    """``init`` in the rows where ``first`` (``(B,)``) is set, else ``value``."""
    return torch.where(first.reshape(-1, *([1] * (value.dim() - 1))), init, value)


def reset_pattern(is_first: np.ndarray) -> list[str]:
    """Per step of a ``(B, T)`` host array: ``"every"``, ``"some"`` or ``"none"`` sequence starts there.

    Read on the host before the batch moves to the device, so :meth:`RSSM.observe` skips the reset
    arithmetic at steps where no sequence starts without reading anything back.
    """
    some, every = np.any(is_first, 0).tolist(), np.all(is_first, 0).tolist()
    return ["every" if e else "some" if s else "none" for s, e in zip(some, every, strict=True)]
