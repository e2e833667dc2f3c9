"""Optimisers of the Dreamer family: Adam with global-norm clipping (V1-V3 2023) and LaProp with
adaptive gradient clipping (DreamerV3 2024 revision), behind one small wrapper.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn


class LaProp(torch.optim.Optimizer):
    """LaProp (Ziyin et al. 2020): normalise the gradient by its RMS first, then apply momentum.

    Adam averages raw gradients and divides afterwards; LaProp divides each gradient by the running RMS
    and averages the normalised steps, which decouples momentum from adaptivity and tolerates a tiny
    epsilon (DreamerV3 2024 uses 1e-20).

    Args:
        params: Parameters to optimise.
        lr: Learning rate.
        betas: Momentum and RMS decay rates.
        eps: Added to the RMS before dividing.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 4e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-20,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros(())
                    state["momentum"] = torch.zeros_like(param)
                    state["rms"] = torch.zeros_like(param)
                state["step"] += 1
                step = float(state["step"])
                state["rms"].mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
                rms = (state["rms"] / (1 - beta2**step)).sqrt_().add_(group["eps"])
                state["momentum"].mul_(beta1).add_(param.grad / rms, alpha=1 - beta1)
                param.sub_(state["momentum"], alpha=group["lr"] / (1 - beta1**step))


def adaptive_clip_(params: Iterable[Tensor], clip: float, pmin: float = 1e-3) -> None:
    """Adaptive gradient clipping (Brock et al. 2021): caps each tensor's ``|g| / max(|p|, pmin)``."""
    for param in params:
        if param.grad is None:
            continue
        limit = clip * torch.clamp(param.detach().norm(), min=pmin)
        norm = param.grad.norm()
        param.grad.mul_(torch.clamp(limit / (norm + 1e-12), max=1.0))


class Optimizer:
    """One module's optimiser: backward, clipping, step, and the gradient norm as a metric.

    Args:
        module: The module whose parameters are trained.
        name: ``adam`` or ``laprop``.
        lr: Learning rate.
        eps: Epsilon of the optimiser.
        clip: Global gradient-norm clip (0: none).
        agc: Adaptive gradient clipping threshold (0: none); replaces ``clip`` when set.
        weight_decay: Fraction by which every parameter shrinks before each step (DreamerV2).
        warmup: Updates over which the learning rate rises linearly from 0 (DreamerV3 2024).
    """

    def __init__(
        self,
        module: nn.Module,
        name: str = "adam",
        lr: float = 1e-4,
        eps: float = 1e-8,
        clip: float = 1000.0,
        agc: float = 0.0,
        weight_decay: float = 0.0,
        warmup: int = 0,
    ) -> None:
        self.params: list[Tensor] = [p for p in module.parameters() if p.requires_grad]
        self.clip, self.agc, self.weight_decay = clip, agc, weight_decay
        if name == "adam":
            self.opt: torch.optim.Optimizer = torch.optim.Adam(self.params, lr=lr, eps=eps)
        elif name == "laprop":
            self.opt = LaProp(self.params, lr=lr, eps=eps)
        else:
            raise ValueError(f"unknown optimiser '{name}': choose adam or laprop")
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )

    def step(self, loss: Tensor) -> float:
        """Backpropagates ``loss`` into this module's parameters, clips, steps; returns the grad norm."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward(inputs=self.params)
        if self.agc:
            norm = float(torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None]))
            adaptive_clip_(self.params, self.agc)
        else:
            norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.clip or math.inf))
        if self.weight_decay:
            with torch.no_grad():
                torch._foreach_mul_(self.params, 1 - self.weight_decay)
        self.opt.step()
        self.schedule.step()
        return norm

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.opt.state_dict(), "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
