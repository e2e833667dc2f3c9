"""Output distributions and the heads that produce them, chosen by name.

Every distribution offers ``mode()`` (the prediction used for acting and logging) and ``loss(target)``
(its negative log-likelihood up to constants), summed over the event dimensions, so a world-model loss
never branches on the kind of head. Actor distributions also offer ``sample()``, ``log_prob()`` and
``entropy()``.

=================  ==========================================================  ==================
output             distribution                                                used for
=================  ==========================================================  ==================
``mse``            squared error (a unit-variance Normal)                      V1/V2 reward, image
``symlog_mse``     squared error in symlog space                               V3 vector decoder
``symexp_twohot``  categorical over symlog bins, two-hot targets               V3 reward, critic
``binary``         Bernoulli from logits                                       continue head
``onehot``         categorical with uniform mix, straight-through samples      discrete actions
``tanh_normal``    Normal squashed by tanh                                     V1 actor
``bounded_normal`` Normal with tanh mean and std in ``[min_std, max_std]``     V2/V3 actor
=================  ==========================================================  ==================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamworld.nn.functional import (
    bin_mean,
    is_mirrored,
    onehot,
    sample_onehot,
    symexp,
    symlog,
    symlog_bins,
    twohot_indices,
)
from dreamworld.nn.layers import MLP, Features, init_uniform_


class Dist(Protocol):
    """What every head returns: a prediction and a loss against targets."""

    def mode(self) -> Tensor:
        """The prediction: mean, probability or most likely value."""
        ...

    def loss(self, target: Tensor) -> Tensor:
        """Negative log-likelihood of ``target`` up to constants, summed over event axes."""
        ...


class ActionDist(Dist, Protocol):
    """What the actor returns: a distribution over actions."""

    def sample(self) -> Tensor:
        """A sample that passes gradients back (reparameterised or straight-through)."""
        ...

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-probability of ``value``, summed over the action axis."""
        ...

    def entropy(self) -> Tensor:
        """Entropy (or a one-sample estimate of it), summed over the action axis."""
        ...


class MSE:
    """A point prediction scored by squared error, summed over ``dims`` trailing axes."""

    def __init__(self, pred: Tensor, dims: int) -> None:
        self.pred = pred
        self.dims = tuple(range(-dims, 0))

    def mode(self) -> Tensor:
        return self.pred

    def loss(self, target: Tensor) -> Tensor:
        return (self.pred - target).square().sum(self.dims) if self.dims else (self.pred - target).square()


class SymlogMSE(MSE):
    """Squared error in symlog space; predictions are mapped back with symexp (DreamerV3 eq. 10)."""

    def mode(self) -> Tensor:
        return symexp(self.pred)

    def loss(self, target: Tensor) -> Tensor:
        return super().loss(symlog(target))


class TwoHot:
    """A categorical over symlog-spaced bins; targets are two-hot encoded (DreamerV3 eq. 11).

    The critic reads one distribution three ways per update (its value for the returns, its loss and
    the logged value), over every imagined state and 255 bins: the probabilities are computed once
    and shared by :meth:`mode` and the backward pass of :meth:`losses`.

    Args:
        logits: ``(..., bins)``.
        bins: Bin centres in symlog space.
        mirrored: The bins are mirrored around a centre bin of 0 (see :func:`bin_mean`).
    """

    def __init__(self, logits: Tensor, bins: Tensor, mirrored: bool = False) -> None:
        self.logits = logits
        self.bins = bins
        self.mirrored = mirrored
        self._probs: Tensor | None = None

    def probs(self) -> Tensor:
        """``softmax(logits)`` without gradient, computed once."""
        if self._probs is None:
            with torch.no_grad():
                self._probs = torch.softmax(self.logits, -1)
        return self._probs

    def mode(self) -> Tensor:
        if torch.is_grad_enabled() and self.logits.requires_grad:
            probs = torch.softmax(self.logits, -1)  # a gradient path into the logits (dynamics)
        else:
            probs = self.probs()
        return symexp(bin_mean(probs, self.bins, self.mirrored))

    def loss(self, target: Tensor) -> Tensor:
        return self.losses((target, 1.0))

    def losses(self, *targets: tuple[Tensor, float]) -> Tensor:
        """``sum(scale * loss(target))`` over ``(target, scale)`` pairs, in one pass over the bins."""
        below, weight = [], []
        for target, scale in targets:
            low, _, above = twohot_indices(symlog(target.detach()), self.bins)
            below.append(low)
            weight.append(torch.stack([(1 - above) * scale, above * scale], -1))
        index = torch.cat([torch.stack([low, low + 1], -1) for low in below], -1)
        if torch.compiler.is_compiling():
            # The compiler fuses the plain formula's backward as well as the hand-written one.
            log_probs = torch.log_softmax(self.logits, -1)
            return -(torch.cat(weight, -1) * log_probs.gather(-1, index)).sum(-1)
        probs = self._probs if self.logits.requires_grad else None
        return _TwoHotNLL.apply(self.logits, index, torch.cat(weight, -1), probs)


class _TwoHotNLL(torch.autograd.Function):
    """Cross-entropies of logits against weighted bins: ``-sum_j weight_j * log_softmax(logits)[index_j]``.

    Only a few bins carry weight, so the forward pass gathers them instead of building a dense target,
    and the backward pass writes ``softmax(logits) * sum(weight)`` once and subtracts the weights in
    place: no zero-filled gather gradients, and no second softmax when the distribution already has
    its probabilities (the critic's 255 bins over every imagined state made such passes a fifth of an
    update).
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, index: Tensor, weight: Tensor, probs: Tensor | None) -> Tensor:
        log_probs = torch.log_softmax(logits, -1)
        loss = -(weight.to(log_probs.dtype) * log_probs.gather(-1, index)).sum(-1)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(log_probs.exp_() if probs is None else probs, index, weight)
        return loss

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        probs, index, weight = ctx.saved_tensors
        weight = weight * grad.unsqueeze(-1)
        grad_logits = probs * weight.sum(-1, keepdim=True).to(probs.dtype)
        return grad_logits.scatter_add_(-1, index, -weight.to(probs.dtype)), None, None, None


class Binary:
    """A Bernoulli variable from logits; ``mode()`` is its probability (used as a soft flag)."""

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits

    def mode(self) -> Tensor:
        return torch.sigmoid(self.logits)

    def loss(self, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(self.logits, target, reduction="none")


class OneHot:
    """A categorical with a uniform mix whose samples pass gradients straight through.

    Mixing 1% of a uniform distribution into the probabilities keeps every log-probability finite
    and the KL bounded (DreamerV3 section "unimix").
    """

    def __init__(self, logits: Tensor, unimix: float = 0.0) -> None:
        probs = torch.softmax(logits, -1)
        if unimix:
            probs = (1 - unimix) * probs + unimix / probs.shape[-1]
        self.probs = probs
        self.logits = torch.log(probs)

    def mode(self) -> Tensor:
        return onehot(self.probs.argmax(-1), self.probs.shape[-1], self.probs.dtype)

    def sample(self) -> Tensor:
        return sample_onehot(self.probs)

    def log_prob(self, value: Tensor) -> Tensor:
        return (value * self.logits).sum(-1)

    def entropy(self) -> Tensor:
        return -(self.probs * self.logits).sum(-1)

    def loss(self, target: Tensor) -> Tensor:
        return -self.log_prob(target)


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class BoundedNormal:
    """A Normal with mean ``tanh(x)`` and std squashed into ``[min_std, max_std]`` (DreamerV3 actor).

    Samples are not squashed: the environment wrapper clips actions to ``[-1, 1]``. The Normal's
    formulas are written out rather than taken from ``torch.distributions``, whose argument checks read
    values back to the host at every construction.
    """

    def __init__(self, raw: Tensor, min_std: float, max_std: float) -> None:
        mean, std = raw.chunk(2, -1)
        self.presquash = mean  # the mean before its tanh (saturated where |x| is large)
        self.mean = torch.tanh(mean)
        self.std = (max_std - min_std) * torch.sigmoid(std + 2.0) + min_std

    def mode(self) -> Tensor:
        return self.mean

    def sample(self) -> Tensor:
        return self.sample_with(torch.randn_like(self.std))

    def sample_with(self, noise: Tensor) -> Tensor:
        """The sample that standard Normal ``noise`` (white or colored over time) gives."""
        return self.mean + self.std * noise

    def log_prob(self, value: Tensor) -> Tensor:
        return _normal_log_prob(value, self.mean, self.std).sum(-1)

    def entropy(self) -> Tensor:
        return (0.5 + _HALF_LOG_2PI + torch.log(self.std)).sum(-1)

    def loss(self, target: Tensor) -> Tensor:
        return -self.log_prob(target)


_MODE_ITERATIONS = 50
"""Fixed-point steps of :meth:`TanhNormal.mode`: exact to float precision except within a few
hundredths of ``2 s^2 = 1``, where the two outer roots merge and the density is flat there anyway."""


class TanhNormal:
    """A Normal squashed by tanh (DreamerV1 actor: mean scaled by 5, std softplus + min_std)."""

    def __init__(self, raw: Tensor, min_std: float, init_std: float = 5.0, mean_scale: float = 5.0) -> None:
        mean, std = raw.chunk(2, -1)
        self.mean = mean_scale * torch.tanh(mean / mean_scale)
        self.std = F.softplus(std + math.log(math.expm1(init_std))) + min_std
        self.presquash = self.mean  # the Normal's mean, before the samples' tanh

    def mode(self) -> Tensor:
        """The most likely action, dimension by dimension (the density factorises).

        ``tanh(mean)`` is not it: a wide Normal squashed by tanh piles its mass near the bounds, where
        the policy's samples are while ``tanh(mean)`` sits inside. With ``y = tanh(x)`` the log-density
        is ``-(x - m)^2 / 2s^2 + 2 log cosh x`` plus a constant, stationary where
        ``x = m + 2 s^2 tanh(x)``; of its roots, the outermost on the side of ``m`` is the global
        maximum (the density at ``x`` exceeds that at ``-x`` when ``x`` and ``m`` share a sign), and
        the fixed-point iteration from ``m + 2 s^2 sign(m)`` falls monotonically onto it. (DreamerV1
        estimated it as the likeliest of 100 samples.)
        """
        side = torch.where(self.mean >= 0, 1.0, -1.0)
        gain = 2.0 * self.std.square()
        x = self.mean + gain * side
        for _ in range(_MODE_ITERATIONS):
            x = self.mean + gain * torch.tanh(x)
        return torch.tanh(x)

    def sample(self) -> Tensor:
        return torch.tanh(self._presample())

    def sample_with(self, noise: Tensor) -> Tensor:
        """The sample that standard Normal ``noise`` (white or colored over time) gives."""
        return torch.tanh(self.mean + self.std * noise)

    def log_prob(self, value: Tensor) -> Tensor:
        return self._log_prob_before_tanh(torch.atanh(value.clamp(-0.999999, 0.999999)))

    def entropy(self) -> Tensor:
        # No closed form: a one-sample estimate, as DreamerV1 uses.
        return -self._log_prob_before_tanh(self._presample())

    def loss(self, target: Tensor) -> Tensor:
        return -self.log_prob(target)

    def _presample(self) -> Tensor:
        return self.mean + self.std * torch.randn_like(self.std)

    def _log_prob_before_tanh(self, x: Tensor) -> Tensor:
        """Log-density of ``tanh(x)``: the Normal's at ``x`` minus ``log |d tanh / dx|``, written
        ``2 (log 2 - x - softplus(-2x))`` to stay finite for large ``|x|``."""
        log_det = 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))
        return (_normal_log_prob(x, self.mean, self.std) - log_det).sum(-1)


def _normal_log_prob(value: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return -0.5 * ((value - mean) / std).square() - torch.log(std) - _HALF_LOG_2PI


class Output:
    """How a head turns its last layer into a distribution: output size, builder and init scale."""

    def __init__(self, size: int, build: Callable[[Tensor], Dist], outscale: float = 1.0) -> None:
        self.size = size
        self.build = build
        self.outscale = outscale


def make_output(
    name: str,
    shape: tuple[int, ...],
    bins: int = 255,
    unimix: float = 0.01,
    min_std: float = 0.1,
    max_std: float = 1.0,
    init_std: float = 5.0,
) -> Output:
    """The output strategy called ``name`` for events of ``shape``.

    Args:
        name: One of the outputs in this module's table.
        shape: Event shape, e.g. ``()`` for reward, ``(D,)`` for a vector or an action.
        bins: Bins of ``symexp_twohot``.
        unimix: Uniform mix of ``onehot``.
        min_std: Smallest std of ``bounded_normal`` and ``tanh_normal``.
        max_std: Largest std of ``bounded_normal``.
        init_std: ``tanh_normal``'s std before the squash at initialisation (V1: 5).
    """
    size = math.prod(shape)
    if name in ("mse", "symlog_mse"):
        cls = MSE if name == "mse" else SymlogMSE
        return Output(size, lambda raw: cls(raw.reshape(*raw.shape[:-1], *shape), len(shape)))
    if name == "symexp_twohot":
        assert shape == (), "symexp_twohot predicts scalars"
        grid = symlog_bins(bins)
        mirrored = is_mirrored(grid)
        return Output(bins, lambda raw: TwoHot(raw, grid.to(raw.device), mirrored), outscale=0.0)
    if name == "binary":
        assert shape == (), "binary predicts scalars"
        return Output(1, lambda raw: Binary(raw.squeeze(-1)))
    if name == "onehot":
        return Output(size, lambda raw: OneHot(raw, unimix))
    if name == "bounded_normal":
        return Output(2 * size, lambda raw: BoundedNormal(raw, min_std, max_std))
    if name == "tanh_normal":
        return Output(2 * size, lambda raw: TanhNormal(raw, min_std, init_std))
    raise ValueError(f"unknown output '{name}'")


class Head(nn.Module):
    """An MLP followed by an output layer that yields a distribution.

    Args:
        inp: Input features.
        shape: Event shape of the prediction.
        output: Output name (see the module table).
        units: Hidden units.
        layers: Hidden layers.
        act: Activation name.
        norm: Norm name.
        **options: Passed to :func:`make_output` (``bins``, ``unimix``, ``min_std``, ``max_std``,
            ``init_std``).

    Example:
        >>> head = Head(8, (), "symexp_twohot", units=16, layers=1)
        >>> float(head(torch.zeros(2, 8)).mode()[0].detach())  # zero-initialised: predicts 0 at first
        0.0
    """

    def __init__(
        self,
        inp: int,
        shape: tuple[int, ...],
        output: str,
        units: int,
        layers: int,
        act: str = "silu",
        norm: str = "layer",
        **options: float,
    ) -> None:
        super().__init__()
        self.strategy = make_output(output, shape, **options)  # type: ignore[arg-type]
        self.mlp = MLP(inp, units, layers, act, norm)
        self.out = init_uniform_(nn.Linear(self.mlp.out_dim, self.strategy.size), self.strategy.outscale)

    def forward(self, feat: Features) -> Dist:
        # Distributions and their losses stay float32 when matmuls run in bfloat16 (autocast).
        return self.strategy.build(self.out(self.mlp(feat)).float())
