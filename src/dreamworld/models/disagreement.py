"""An ensemble of one-step latent predictors whose disagreement marks what the world model has not
seen yet (Plan2Explore, Sekar et al. 2020).

Each member reads the model's features and an action and predicts the next step's stochastic latent
(the flattened one-hot sample). Trained on the same replayed transitions from different random
initialisations, the members agree where the data pins the answer down and spread apart elsewhere;
the spread of their predictions along an imagined trajectory is a reward for going where the model
is still ignorant, which dense-reward-free tasks (a pendulum to swing up, a target to touch) need
before their first reward can be found at all.

The members run as one batched network: the first layer of all of them is one wide linear layer (so
it accepts the sparse one-hot features of :class:`~dreamworld.nn.layers.OneHotFeat`), the others are
batched matrix products, so the ensemble costs a few kernels however many members it has.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamworld.nn.layers import FeatLinear, Features, OneHotFeat, make_act


class Disagreement(nn.Module):
    """``models`` MLPs from ``(features, action)`` to the next latent, evaluated together.

    Args:
        feat: Feature size (dense width of ``[deter, flat(stoch)]``).
        actions: Action size (one-hot width for discrete actions).
        target: Size of the predicted latent.
        models: Ensemble members (at least 2).
        units: Hidden units per member.
        layers: Hidden layers per member (at least 1).
        act: Activation name.
        norm: ``layer``, ``rms`` or ``none``, applied to each member's hidden units separately.
        decay: EMA decay of the disagreement's running mean (see :meth:`novelty`).

    Example:
        >>> ensemble = Disagreement(feat=6, actions=2, target=4, models=3, units=8, layers=2)
        >>> ensemble(torch.zeros(5, 6), torch.zeros(5, 2)).shape  # (batch, members, target)
        torch.Size([5, 3, 4])
    """

    novelty_total: Tensor
    novelty_weight: Tensor

    def __init__(
        self,
        feat: int,
        actions: int,
        target: int,
        models: int = 8,
        units: int = 256,
        layers: int = 2,
        act: str = "silu",
        norm: str = "layer",
        decay: float = 0.99,
    ) -> None:
        super().__init__()
        assert models >= 2 and layers >= 1, (models, layers)
        if norm not in ("layer", "rms", "none"):
            raise ValueError(f"unknown norm '{norm}'; choose none, layer or rms")
        self.models, self.units, self.norm_kind, self.decay = models, units, norm, decay
        self.first = FeatLinear(feat, models * units, bias=norm == "none")
        self.first_action = nn.Linear(actions, models * units, bias=False)
        self.hidden = nn.ParameterList(
            [nn.Parameter(torch.empty(models, units, units)) for _ in range(layers - 1)]
        )
        self.hidden_bias = nn.ParameterList(
            [nn.Parameter(torch.zeros(models, units)) for _ in range(layers - 1 if norm == "none" else 0)]
        )
        affine = norm != "none"
        self.scales = nn.ParameterList(
            [nn.Parameter(torch.ones(models, units)) for _ in range(layers if affine else 0)]
        )
        self.shifts = nn.ParameterList(
            [nn.Parameter(torch.zeros(models, units)) for _ in range(layers if norm == "layer" else 0)]
        )
        self.out = nn.Parameter(torch.empty(models, units, target))
        self.out_bias = nn.Parameter(torch.zeros(models, target))
        self.act = make_act(act)
        # The running mean of the disagreement, debiased: ``total / weight`` (no host read needed).
        self.register_buffer("novelty_total", torch.zeros(()))
        self.register_buffer("novelty_weight", torch.zeros(()))
        self.reset_parameters(feat + actions)

    def reset_parameters(self, inputs: int) -> None:
        """Variance-scaling uniform weights, drawn independently for every member (their
        differences are what the disagreement measures)."""
        for weight, fan_in in [(self.first.weight, inputs), (self.first_action.weight, inputs)]:
            _uniform_(weight, fan_in, self.units)
        if self.first.bias is not None:
            nn.init.zeros_(self.first.bias)
        for weight in self.hidden:
            _uniform_(weight, self.units, self.units)
        _uniform_(self.out, self.units, self.out.shape[-1])

    def forward(self, feat: Features, action: Tensor) -> Tensor:
        """Each member's prediction: ``(..., models, target)`` for ``(..., F)`` features."""
        x = self.first(feat) + self.first_action(action)
        x = x.unflatten(-1, (self.models, self.units))
        for i in range(len(self.hidden) + 1):
            if i > 0:
                x = torch.einsum("...ki,kio->...ko", x, self.hidden[i - 1])
                if self.hidden_bias:
                    x = x + self.hidden_bias[i - 1]
            x = self.act(self._norm(x, i))
        return torch.einsum("...ki,kio->...ko", x, self.out) + self.out_bias

    def loss(self, feat: Features, action: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """Mean squared error of every member on the next latents ``target`` ``(..., target)``,
        averaged over the steps where ``mask`` ``(...)`` is 1 (transitions within an episode)."""
        error = (self(feat, action) - target.unsqueeze(-2)).square().mean((-2, -1))
        return (error * mask).sum() / mask.sum().clamp(min=1.0)

    def disagreement(self, feat: Features, action: Tensor) -> Tensor:
        """The members' standard deviation, averaged over the predicted latent: ``(...)``."""
        preds = self(feat, action)
        # Written out: torch's std over a middle axis took 11x longer on a CPU than these three ops.
        spread = (preds - preds.mean(-2, keepdim=True)).square().sum(-2) / (self.models - 1)
        return spread.sqrt().mean(-1)

    def novelty(self, feat: Features, action: Tensor) -> tuple[Tensor, Tensor]:
        """The disagreement divided by its running mean (about 1 on average), and the raw one.

        The ratio keeps the reward's scale the same from task to task and as the ensemble learns:
        what is rewarded is being less known than usual. Each call folds its batch's mean into the
        running mean (without gradient).
        """
        raw = self.disagreement(feat, action)
        with torch.no_grad():
            self.novelty_total.mul_(self.decay).add_((1 - self.decay) * raw.mean())
            self.novelty_weight.mul_(self.decay).add_(1 - self.decay)
        mean = self.novelty_total / self.novelty_weight.clamp(min=1e-8)
        return raw / mean.clamp(min=1e-8), raw

    def _norm(self, x: Tensor, i: int) -> Tensor:
        if self.norm_kind == "none":
            return x
        if self.norm_kind == "layer":
            return F.layer_norm(x, (self.units,), eps=1e-3) * self.scales[i] + self.shifts[i]
        return F.rms_norm(x, (self.units,), eps=1e-3) * self.scales[i]


def shift_features(feat: Features, start: int, stop: int | None) -> Features:
    """``feat[:, start:stop]`` along the time axis, for dense or :class:`OneHotFeat` features."""
    if isinstance(feat, OneHotFeat):
        return OneHotFeat(feat.dense[:, start:stop], feat.positions[:, start:stop])
    return feat[:, start:stop]


def _uniform_(weight: Tensor, fan_in: int, fan_out: int) -> None:
    limit = math.sqrt(3.0 / ((fan_in + fan_out) / 2))
    with torch.no_grad():
        weight.uniform_(-limit, limit)
