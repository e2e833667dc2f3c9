"""Optimisers of the Dreamer family: Adam with global-norm clipping (V1-V3 2023) and LaProp with
adaptive gradient clipping (DreamerV3 2024 revision), behind one small class.

Every step is a handful of ``torch._foreach_*`` calls over all of a module's tensors, and every
quantity that changes between steps (the step count, its bias corrections, the warm-up factor, the
clipping scale) is a tensor on the parameters' device. So a step launches a few dozen kernels whatever
the number of parameters, never reads a value back to the host, and can be compiled or captured in a
CUDA graph as it is (torch's own Adam reads its step count back to the host unless ``capturable``, which
the CPU does not support).

A step whose gradients hold a NaN or an infinity is skipped, on the device: the parameters, the moments
and the step count stay as they were (the returned norm is then non-finite, which is how callers count
skipped steps). A non-finite loss or gradient never reaches the weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from dreamworld.run.distributed import average_gradients

NAMES = ("adam", "laprop")


def step_jointly(loss: Tensor, optimizers: list[Optimizer]) -> list[Tensor]:
    """One backward pass of ``loss`` into the parameters of several optimisers, then each one's step.

    ``loss`` is a sum of losses each of which reaches only its own optimiser's parameters (the
    actor's and the critic's): one backward pass through a compiled graph that produced both (a
    compiled graph has one backward function for all its outputs). Returns the gradient norms.
    """
    params = [param for opt in optimizers for param in opt.params]
    for param in params:
        param.grad = None
    loss.backward(inputs=params)
    average_gradients(params)  # over the ranks of a data-parallel run; nothing in one process
    return [opt.apply() for opt in optimizers]


def global_clip_(grads: list[Tensor], clip: float) -> Tensor:
    """Scales ``grads`` together so their joint norm is at most ``clip``; returns the norm before.

    The same rule as ``torch.nn.utils.clip_grad_norm_`` (scale ``clip / (norm + 1e-6)``, at most 1),
    without its host synchronisation. Non-finite gradients are set to zero (and the norm returned is
    non-finite): :meth:`Optimizer.apply` then skips its step.
    """
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    finite = torch.isfinite(norm)
    scale = torch.clamp(clip / (norm + 1e-6), max=1.0) if clip and math.isfinite(clip) else 1.0
    _zero_unless(grads, finite, scale)
    return norm


def adaptive_clip_(params: list[Tensor], grads: list[Tensor], clip: float, pmin: float = 1e-3) -> Tensor:
    """Adaptive gradient clipping (Brock et al. 2021): caps each tensor's ``|g| / max(|p|, pmin)`` at
    ``clip``; returns the joint norm of the gradients before clipping (non-finite gradients: as
    :func:`global_clip_`)."""
    grad_norms = torch.stack(torch._foreach_norm(grads))
    limits = clip * torch.stack(torch._foreach_norm(params)).clamp(min=pmin)
    norm = torch.linalg.vector_norm(grad_norms)
    finite = torch.isfinite(norm)
    scales = torch.where(finite, torch.clamp(limits / (grad_norms + 1e-12), max=1.0), 0.0)
    _zero_unless(grads, finite, list(scales.unbind()))
    return norm


def _zero_unless(grads: list[Tensor], finite: Tensor, scale: Tensor | float | list[Tensor]) -> None:
    """Multiplies ``grads`` by ``scale`` (one for all, or one per tensor), or by 0 when ``finite`` is
    false: NaN and infinities are replaced first, since ``0 * nan`` is nan. No host synchronisation
    either way; the replacement is one kernel per tensor (foreach has no such operation), about 1% of
    an update's operations."""
    for grad in grads:
        grad.nan_to_num_(0.0, 0.0, 0.0)
    torch._foreach_mul_(grads, scale if isinstance(scale, list) else torch.where(finite, scale, 0.0))


class Optimizer:
    """One module's optimiser: backward, clipping, weight decay, warm-up and the step.

    ``adam`` is Adam (Kingma & Ba 2015) exactly as ``torch.optim.Adam`` computes it; ``laprop`` is
    LaProp (Ziyin et al. 2020), which divides each gradient by the running RMS first and applies
    momentum to the normalised steps, decoupling momentum from adaptivity (it tolerates DreamerV3
    2024's epsilon of 1e-20).

    Args:
        module: The module whose parameters are trained.
        name: ``adam`` or ``laprop``.
        lr: Learning rate.
        eps: Epsilon of the optimiser.
        clip: Global gradient-norm clip (0: none).
        agc: Adaptive gradient clipping threshold (0: none); replaces ``clip`` when set.
        weight_decay: Fraction by which every parameter shrinks before each step (DreamerV2).
        warmup: Updates over which the learning rate rises linearly from 0 (DreamerV3 2024).
        betas: Decay rates of the first and second moments.

    Example:
        >>> layer = nn.Linear(3, 1)
        >>> opt = Optimizer(layer, "adam", lr=0.1)
        >>> norm = opt.step(layer(torch.ones(1, 3)).sum())  # a tensor: read it when logging
        >>> norm.shape
        torch.Size([])
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
        betas: tuple[float, float] = (0.9, 0.999),
    ) -> None:
        if name not in NAMES:
            raise ValueError(f"unknown optimiser '{name}': choose adam or laprop")
        self.params: list[Tensor] = [p for p in module.parameters() if p.requires_grad]
        self.name, self.lr, self.eps, self.betas = name, lr, eps, betas
        self.clip, self.agc, self.weight_decay, self.warmup = clip, agc, weight_decay, warmup
        device = self.params[0].device if self.params else torch.device("cpu")
        self.count = torch.zeros((), device=device)
        self.moment1 = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.moment2 = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def step(self, loss: Tensor) -> Tensor:
        """Backpropagates ``loss`` into this module's parameters, clips, steps; returns the gradient
        norm before clipping (a tensor on the parameters' device)."""
        return step_jointly(loss, [self])[0]

    @torch.no_grad()
    def apply(self) -> Tensor:
        """Clips the parameters' current gradients and takes one step; returns the gradient norm."""
        chosen = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in chosen]
        grads = [p.grad for p in params if p.grad is not None]
        norm = adaptive_clip_(params, grads, self.agc) if self.agc else global_clip_(grads, self.clip)
        # A non-finite gradient (now zeroed) skips the step: decays become 1, the rate and count 0.
        taken = torch.isfinite(norm).float()
        if self.weight_decay:
            torch._foreach_mul_(params, 1 - self.weight_decay * taken)
        self.count += taken
        moment1 = [self.moment1[i] for i in chosen]
        moment2 = [self.moment2[i] for i in chosen]
        beta1, beta2 = self.betas
        lr = self.lr * taken * (torch.clamp(self.count / self.warmup, max=1.0) if self.warmup else 1.0)
        # Bias corrections of a first step that was skipped would divide by 0: count 1 at least.
        count = torch.clamp(self.count, min=1.0)
        correction1 = 1 - torch.pow(beta1, count)
        correction2 = 1 - torch.pow(beta2, count)
        torch._foreach_mul_(moment2, 1 - (1 - beta2) * taken)
        torch._foreach_addcmul_(moment2, grads, grads, 1 - beta2)
        rms = torch._foreach_div(moment2, correction2)
        torch._foreach_sqrt_(rms)
        torch._foreach_add_(rms, self.eps)
        torch._foreach_mul_(moment1, 1 - (1 - beta1) * taken)
        if self.name == "adam":
            torch._foreach_add_(moment1, grads, alpha=1 - beta1)
            update = list(torch._foreach_div(moment1, rms))
        else:
            torch._foreach_add_(moment1, torch._foreach_div(grads, rms), alpha=1 - beta1)
            update = moment1
        torch._foreach_add_(params, torch._foreach_mul(update, -lr / correction1))
        return norm

    def compile(self, options: dict[str, Any]) -> None:
        """Runs :meth:`apply` through ``torch.compile`` with ``options``; the optimiser's state keeps
        fixed addresses, so a CUDA-graph capture of the step can update it in place."""
        for tensor in (self.count, *self.moment1, *self.moment2):
            torch._dynamo.mark_static_address(tensor)
        self.apply = torch.compile(self.apply, **options)  # type: ignore[method-assign]

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "count": self.count, "moment1": self.moment1, "moment2": self.moment2}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict` output in place (tensors keep their storage, which compiled
        and captured steps rely on); also reads the ``torch.optim`` layout of earlier checkpoints."""
        if "optimizer" in state:
            state = _from_torch_optim(state["optimizer"], len(self.params))
        if state.get("name", self.name) != self.name:
            raise ValueError(f"an optimiser state of {state['name']}, not {self.name}")
        for key in ("moment1", "moment2"):
            saved = state[key]
            if len(saved) != len(self.params):
                raise ValueError(f"{len(saved)} saved {key} tensors for {len(self.params)} parameters")
            for mine, value in zip(getattr(self, key), saved, strict=True):
                if value is None:
                    mine.zero_()
                    continue
                if mine.shape != value.shape:
                    raise ValueError(
                        f"size mismatch: saved {key} {tuple(value.shape)}, here {tuple(mine.shape)}"
                    )
                mine.copy_(value)
        self.count.copy_(torch.as_tensor(state["count"]))


def _from_torch_optim(saved: dict[str, Any], size: int) -> dict[str, Any]:
    """The state of a ``torch.optim`` Adam or of the earlier LaProp in this class's layout."""
    per_param = saved["state"]
    if not per_param:
        raise ValueError("an empty optimiser state")
    first = next(iter(per_param.values()))
    name = "adam" if "exp_avg" in first else "laprop"
    keys = ("exp_avg", "exp_avg_sq") if name == "adam" else ("momentum", "rms")
    params = saved["param_groups"][0]["params"]
    if len(params) != size:
        raise ValueError(f"an optimiser state for {len(params)} parameters, not {size}")
    moments: tuple[list[Tensor | None], list[Tensor | None]] = ([], [])
    for index in params:  # a parameter that never had a gradient has no entry: its moments are 0
        entry = per_param.get(index)
        for moment, key in zip(moments, keys, strict=True):
            moment.append(None if entry is None else entry[key])
    return {"name": name, "count": first["step"], "moment1": moments[0], "moment2": moments[1]}
