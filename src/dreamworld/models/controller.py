"""World Models' C: a single linear layer from ``[z, h]`` to actions, evolved rather than trained.

A whole population is held as one ``(P, params)`` matrix, and :meth:`LinearController.act` applies a
different member to each row of a batch with one batched matrix product, so that evaluating a
population costs one network call per environment step.
"""

from __future__ import annotations

import torch
from torch import Tensor


class LinearController:
    """``a = tanh(W x + b)`` for continuous actions, ``argmax(W x + b)`` for discrete ones.

    Parameters are flat vectors of length :attr:`size` (``W`` row-major, then ``b``), the form
    CMA-ES searches in. Continuous actions land in ``[-1, 1]``, the range of dreamworld's action
    contract, which each suite maps to its simulator (CarRacing: steering as is, gas and brake
    rescaled to ``[0, 1]``).

    Args:
        inp: Input size (``z`` or ``z + hidden``).
        actions: Number of continuous action dimensions or of discrete actions.
        discrete: Whether actions are indices.

    Example:
        >>> controller = LinearController(inp=288, actions=3)
        >>> controller.size  # the paper's 867 parameters for CarRacing
        867
        >>> population = torch.zeros(4, controller.size)
        >>> controller.act(population, torch.zeros(8, 288), torch.arange(8) % 4).shape
        torch.Size([8, 3])
    """

    def __init__(self, inp: int, actions: int, discrete: bool = False) -> None:
        self.inp, self.actions, self.discrete = inp, actions, discrete
        self.size = (inp + 1) * actions

    def unflatten(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """``(P, size)`` -> weights ``(P, inp, actions)`` and biases ``(P, actions)``."""
        assert params.shape[-1] == self.size, f"params of size {params.shape[-1]}, expected {self.size}"
        weight = params[..., : self.inp * self.actions].unflatten(-1, (self.inp, self.actions))
        return weight, params[..., self.inp * self.actions :]

    def flatten(self, weight: Tensor, bias: Tensor) -> Tensor:
        """The inverse of :meth:`unflatten`."""
        return torch.cat([weight.flatten(-2), bias], -1)

    def act(self, params: Tensor, inputs: Tensor, member: Tensor) -> Tensor:
        """Actions of a batch where row ``i`` is driven by population member ``member[i]``.

        Args:
            params: ``(P, size)`` population.
            inputs: ``(N, inp)`` controller inputs.
            member: ``(N,)`` indices into the population.

        Returns:
            ``(N, actions)`` continuous actions in ``[-1, 1]``, or ``(N,)`` action indices.
        """
        weight, bias = self.unflatten(params)
        out = torch.baddbmm(bias[member].unsqueeze(1), inputs.unsqueeze(1), weight[member]).squeeze(1)
        return out.argmax(-1) if self.discrete else torch.tanh(out)
