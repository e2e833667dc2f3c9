"""Actor, critic with a slow target, and DreamerV3's percentile return normalisation."""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import Tensor, nn

from dreamworld.nn.dists import ActionDist, Dist, Head
from dreamworld.nn.functional import quantiles
from dreamworld.nn.layers import Features
from dreamworld.run.distributed import gather


class Actor(nn.Module):
    """The policy over features: ``onehot`` for discrete actions, a normal family for continuous ones.

    Args:
        feat: Feature size.
        actions: Number of discrete actions or continuous action dimensions.
        discrete: Whether actions are discrete.
        dist: Output for continuous actions: ``bounded_normal`` or ``tanh_normal``.
        units: Hidden units.
        layers: Hidden layers.
        act: Activation name.
        norm: Norm name.
        unimix: Uniform mix of discrete actions.
        min_std: Smallest std of continuous actions.
        max_std: Largest std of ``bounded_normal`` actions.
        init_std: Initial std of ``tanh_normal`` actions before the squash.
    """

    def __init__(
        self,
        feat: int,
        actions: int,
        discrete: bool,
        dist: str,
        units: int,
        layers: int,
        act: str,
        norm: str,
        unimix: float,
        min_std: float,
        max_std: float,
        init_std: float = 5.0,
    ) -> None:
        super().__init__()
        output = "onehot" if discrete else dist
        self.head = Head(
            feat,
            (actions,),
            output,
            units,
            layers,
            act,
            norm,
            unimix=unimix,
            min_std=min_std,
            max_std=max_std,
            init_std=init_std,
        )

    def forward(self, feat: Features) -> ActionDist:
        return cast(ActionDist, self.head(feat))


class Critic(nn.Module):
    """A value head and a slow copy of it used for targets and as a regulariser.

    Args:
        feat: Feature size.
        output: ``mse`` or ``symexp_twohot``.
        units: Hidden units.
        layers: Hidden layers.
        act: Activation name.
        norm: Norm name.
        bins: Bins of ``symexp_twohot``.
        slow_fraction: How far the slow copy moves toward the critic at each update (1: a copy).
        slow_every: Updates between moves of the slow copy.
    """

    updates: Tensor

    def __init__(
        self,
        feat: int,
        output: str,
        units: int,
        layers: int,
        act: str,
        norm: str,
        bins: int,
        slow_fraction: float,
        slow_every: int,
    ) -> None:
        super().__init__()
        self.net = Head(feat, (), output, units, layers, act, norm, bins=bins)
        self.slow = copy.deepcopy(self.net).requires_grad_(False)
        self.slow_fraction = slow_fraction
        self.slow_every = slow_every
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def forward(self, feat: Features) -> Dist:
        return self.net(feat)

    def value_through(self, feat: Features) -> Tensor:
        """The critic's prediction with gradients into ``feat`` but none into the critic's weights:
        the actor's returns backpropagate through it, and only the critic's own loss trains it."""
        weights = {name: param.detach() for name, param in self.net.named_parameters()}
        return cast(Dist, torch.func.functional_call(self.net, weights, (feat,))).mode()

    def slow_value(self, feat: Features) -> Tensor:
        """The slow critic's prediction, without gradient."""
        with torch.no_grad():
            return self.slow(feat).mode()

    @torch.no_grad()
    def update_slow(self) -> None:
        """Moves the slow copy toward the critic every ``slow_every`` calls (DreamerV2 target network,
        DreamerV3 EMA with fraction 0.02).

        The choice is arithmetic on the device-side counter (a fraction of 0 on the calls in between),
        not a branch on its value, so nothing is read back to the host.
        """
        slow: list[Tensor] = list(self.slow.parameters())
        fast: list[Tensor] = list(self.net.parameters())
        if self.slow_every == 1:
            torch._foreach_lerp_(slow, fast, self.slow_fraction)
        else:
            due = (self.updates % self.slow_every == 0).float()
            step = torch._foreach_mul(torch._foreach_sub(fast, slow), due * self.slow_fraction)
            torch._foreach_add_(slow, list(step))
        self.updates += 1


class ReturnNorm(nn.Module):
    """Scales returns by ``max(limit, P_high - P_low)``, percentiles tracked with an EMA (DreamerV3 eq. 8).

    Dividing advantages by this range (never by less than ``limit``) keeps the entropy bonus meaningful
    for both dense large rewards and sparse small ones.
    """

    low: Tensor
    high: Tensor

    def __init__(self, decay: float = 0.99, low: float = 5.0, high: float = 95.0, limit: float = 1.0) -> None:
        super().__init__()
        self.decay, self.limit = decay, limit
        self.quantiles = (low / 100.0, high / 100.0)
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    def update(self, returns: Tensor) -> None:
        # Over the imagined returns of every rank of a data-parallel run: the same scale everywhere.
        low, high = quantiles(gather(returns.detach().float().flatten()), self.quantiles)
        # Both start at 0, as in DreamerV3: early scales stay near `limit` until returns are known.
        # Non-finite returns (an update that will be skipped) leave the statistics as they are.
        for tracked, value in ((self.low, low), (self.high, high)):
            moved = torch.lerp(tracked, value, 1 - self.decay)
            tracked.copy_(torch.where(torch.isfinite(moved), moved, tracked))

    def scale(self) -> Tensor:
        return torch.clamp(self.high - self.low, min=self.limit)


class EntropyScale(nn.Module):
    """An entropy bonus scale that adapts to hold the policy's entropy at a target (SAC's temperature,
    DreamerV2's adaptive entropy regulariser).

    Each update multiplies the scale by ``exp(rate)`` while the entropy per action dimension is below
    ``target`` and by ``exp(-rate)`` while it is above, within ``[low, high]``: the sign of the error
    rather than its size, so the same rate serves a Normal's entropies and a squashed one's one-sample
    estimates, whose magnitudes differ by orders. All on the device, no host read.

    Args:
        initial: The starting scale.
        target: Entropy per action dimension to hold.
        dims: Action dimensions the entropy is summed over (1 for a categorical).
        rate: Log-change of the scale per update.
        low: Smallest scale.
        high: Largest scale.
    """

    value: Tensor

    def __init__(
        self, initial: float, target: float, dims: int, rate: float, low: float, high: float
    ) -> None:
        super().__init__()
        self.target, self.dims, self.rate, self.low, self.high = target, dims, rate, low, high
        self.register_buffer("value", torch.tensor(float(min(max(initial, low), high))))

    def update(self, entropy: Tensor) -> None:
        """Moves the scale by the mean of ``entropy`` (summed over the action axis) over every rank."""
        per_dim = gather(entropy.detach().float().mean()[None]).mean() / self.dims
        step = torch.exp(self.rate * torch.sign(self.target - per_dim))
        moved = torch.clamp(self.value * step, self.low, self.high)
        # A non-finite entropy (an update that will be skipped) leaves the scale as it is.
        self.value.copy_(torch.where(torch.isfinite(moved), moved, self.value))
