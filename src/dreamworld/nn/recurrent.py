"""Recurrent cores of the RSSM: the normalised GRU (DreamerV2/V3 2023) and the block GRU (V3 2024).

Both map ``(deter, inputs) -> deter`` with the gating of DreamerV2's GRU: one linear layer produces
reset, candidate and update parts, optionally normalised; the candidate is ``tanh(reset * cand)`` and the
update gate is biased by ``update_bias`` (-1 favours keeping the old state early in training).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dreamworld.nn.layers import Dense, Features, make_act, make_norm


class GRUCell(nn.Module):
    """A GRU whose gates come from one linear layer over ``[inputs, deter]``, then a norm.

    Args:
        inp: Input features.
        deter: State size.
        norm: Norm over the ``3 * deter`` gate pre-activations (``none`` for DreamerV1).
        update_bias: Added to the update gate's pre-activation.

    Example:
        >>> cell = GRUCell(4, 8)
        >>> cell(torch.zeros(2, 8), torch.zeros(2, 4)).shape
        torch.Size([2, 8])
    """

    def __init__(self, inp: int, deter: int, norm: str = "layer", update_bias: float = -1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(inp + deter, 3 * deter, bias=norm == "none")
        self.norm = make_norm(norm, 3 * deter)
        self.update_bias = update_bias

    def forward(self, deter: Tensor, inputs: Tensor) -> Tensor:
        # The state stays float32 when the matmul runs in bfloat16 (autocast).
        parts = self.norm(self.linear(torch.cat([inputs, deter], -1))).float()
        reset, cand, update = parts.chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update + self.update_bias)
        return torch.lerp(deter, cand, update)  # update * cand + (1 - update) * deter, in one op


class BlockLinear(nn.Module):
    """A block-diagonal linear layer: ``blocks`` independent linear maps over equal slices.

    With 8 blocks a ``4096 -> 4096`` layer has 8x fewer weights and FLOPs, which is how DreamerV3's
    2024 revision affords a large recurrent state.
    """

    def __init__(self, inp: int, out: int, blocks: int, bias: bool = True) -> None:
        super().__init__()
        assert inp % blocks == 0 and out % blocks == 0, (inp, out, blocks)
        self.blocks = blocks
        bound = (blocks / inp) ** 0.5
        self.weight = nn.Parameter(torch.empty(blocks, inp // blocks, out // blocks).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """``(..., inp)`` -> ``(..., out)``."""
        lead = x.shape[:-1]
        x = x.reshape(-1, self.blocks, x.shape[-1] // self.blocks).transpose(0, 1)
        y = torch.bmm(x, self.weight).transpose(0, 1).reshape(*lead, -1)
        return y if self.bias is None else y + self.bias


class BlockGRU(nn.Module):
    """DreamerV3's 2024 recurrent core: separate input projections, then a block-diagonal GRU.

    The deterministic state, the stochastic state and the action are each projected to ``units`` and
    normalised; every block of the state sees all three projections plus its own slice of the state.

    Args:
        stoch: Flattened stochastic state size.
        actions: Action size.
        deter: State size (divisible by ``blocks``).
        units: Size of each input projection.
        blocks: Number of diagonal blocks.
        act: Activation name.
        norm: Norm name.
        update_bias: Added to the update gate's pre-activation.
        layers: Hidden block layers before the gates.
    """

    def __init__(
        self,
        stoch: int,
        actions: int,
        deter: int,
        units: int,
        blocks: int = 8,
        act: str = "silu",
        norm: str = "rms",
        update_bias: float = -1.0,
        layers: int = 1,
    ) -> None:
        super().__init__()
        self.blocks = blocks
        self.inputs = nn.ModuleList(Dense(size, units, act, norm) for size in (deter, stoch, actions))
        width = deter // blocks + 3 * units
        hidden: list[nn.Module] = []
        for layer in range(layers):
            hidden += [BlockLinear(width * blocks if layer == 0 else deter, deter, blocks, bias=False)]
            hidden += [make_norm(norm, deter), make_act(act)]
        self.hidden = nn.Sequential(*hidden)
        self.gates = BlockLinear(deter if layers else width * blocks, 3 * deter, blocks)
        self.update_bias = update_bias

    def forward(self, deter: Tensor, stoch: Features, action: Tensor) -> Tensor:
        lead, g = deter.shape[:-1], self.blocks
        shared = torch.cat([net(x) for net, x in zip(self.inputs, (deter, stoch, action), strict=True)], -1)
        grouped = deter.reshape(*lead, g, -1)
        x = torch.cat([grouped, shared.unsqueeze(-2).expand(*lead, g, shared.shape[-1])], -1)
        x = self.gates(self.hidden(x.reshape(*lead, -1))).float()
        # Gates are laid out per block: (block, [reset, cand, update], unit).
        reset, cand, update = x.reshape(*lead, g, 3, -1).unbind(-2)
        reset, cand, update = (part.reshape(*lead, -1) for part in (reset, cand, update))
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update + self.update_bias)
        return torch.lerp(deter, cand, update)  # update * cand + (1 - update) * deter, in one op
