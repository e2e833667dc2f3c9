"""Building blocks shared by every model: activations and norms by name, MLPs, conv encoder/decoder.

Modules take plain arguments (``units: int``, ``act: str``), never config objects. Tensors are
batch-major; images enter as ``(..., H, W, C)`` uint8 and leave the decoder as ``(..., H, W, C)`` floats
in ``[-0.5, 0.5]`` (pixels / 255 - 0.5).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTS = {
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "none": nn.Identity,
}


def make_act(name: str) -> nn.Module:
    """An activation module by name: silu, elu, relu, tanh, gelu or none."""
    if name not in ACTS:
        raise ValueError(f"unknown activation '{name}'; choose one of {', '.join(ACTS)}")
    return ACTS[name]()


def make_norm(name: str, dim: int) -> nn.Module:
    """A normalisation over the last axis by name: none, layer (LayerNorm) or rms (RMSNorm).

    The epsilon 1e-3 follows DreamerV3's LayerNorm; it keeps tiny activations from being blown up.
    """
    if name == "none":
        return nn.Identity()
    if name == "layer":
        return nn.LayerNorm(dim, eps=1e-3)
    if name == "rms":
        return nn.RMSNorm(dim, eps=1e-3)
    raise ValueError(f"unknown norm '{name}'; choose none, layer or rms")


class OneHotFeat(NamedTuple):
    """Features ``[dense, one-hot groups]`` stored as the dense part and the positions of the ones.

    Dreamer's features concatenate a dense state with 32 one-hot rows of 32 classes: 1024 inputs of
    which 32 are 1. A linear layer then only needs to add up 32 columns of its weight, 32x fewer
    operations than the dense product, where no gradient has to reach the features themselves.

    Attributes:
        dense: ``(..., D)`` the dense part.
        positions: ``(..., S)`` int64 positions of the ones within the flattened one-hot part.
    """

    dense: Tensor
    positions: Tensor


Features = Tensor | OneHotFeat


class FeatLinear(nn.Linear):
    """A linear layer that also accepts :class:`OneHotFeat` (same weights, same result).

    Example:
        >>> layer = FeatLinear(2 + 6, 4)
        >>> dense, index = torch.randn(5, 2), torch.tensor([[0, 4]] * 5)  # rows of 2 groups x 3
        >>> onehot = torch.zeros(5, 6).index_fill_(1, torch.tensor([0, 4]), 1.0)
        >>> torch.allclose(layer(OneHotFeat(dense, index)), layer(torch.cat([dense, onehot], -1)), atol=1e-6)
        True
    """

    def forward(self, x: Features) -> Tensor:
        if isinstance(x, Tensor):
            return super().forward(x)
        width = x.dense.shape[-1]
        out = F.linear(x.dense, self.weight[:, :width], self.bias)
        index = x.positions.reshape(-1, x.positions.shape[-1])
        hot = _RowSum.apply(self.weight[:, width:].t().contiguous(), index)
        return out + hot.reshape(*out.shape[:-1], -1)


class _RowSum(torch.autograd.Function):
    """``table[index].sum(1)`` for ``(N, S)`` indices, with a gradient for the table only.

    The forward pass is ``embedding_bag``; its own backward (sorting all N * S indices) took about 4x
    longer than the S ``index_add_`` calls here, one per index column (docs/benchmarks.md). On the
    CPU those calls run on one thread: torch splits their 128-wide rows between threads, which made
    them about 1.4x slower with 2 threads than with 1.
    """

    @staticmethod
    def forward(ctx: Any, table: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.rows = table.shape[0]
        return F.embedding_bag(index, table, mode="sum")

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (index,) = ctx.saved_tensors
        grad_table = grad.new_zeros(ctx.rows, grad.shape[-1])
        threads = torch.get_num_threads()
        single = grad.device.type == "cpu" and threads > 1
        if single:
            torch.set_num_threads(1)
        try:
            for column in index.unbind(1):
                grad_table.index_add_(0, column, grad)
        finally:
            if single:
                torch.set_num_threads(threads)
        return grad_table, None


class Dense(nn.Sequential):
    """Linear -> norm -> activation; the linear layer has no bias when a norm follows it.

    The linear layer takes dense features or :class:`OneHotFeat`.
    """

    def __init__(self, inp: int, out: int, act: str = "silu", norm: str = "layer") -> None:
        super().__init__(FeatLinear(inp, out, bias=norm == "none"), make_norm(norm, out), make_act(act))


class MLP(nn.Sequential):
    """``layers`` Dense blocks of ``units`` each.

    Args:
        inp: Input features.
        units: Hidden units per layer.
        layers: Number of Dense blocks (0 gives the identity).
        act: Activation name.
        norm: Norm name.

    Example:
        >>> MLP(8, units=16, layers=2)(torch.zeros(3, 8)).shape
        torch.Size([3, 16])
    """

    def __init__(self, inp: int, units: int, layers: int, act: str = "silu", norm: str = "layer") -> None:
        dims = [inp] + [units] * layers
        super().__init__(*(Dense(a, b, act, norm) for a, b in itertools.pairwise(dims)))
        self.out_dim = dims[-1]


class ChannelNorm(nn.Module):
    """A norm over the channels of ``(N, C, H, W)`` feature maps (DreamerV3 normalises channels)."""

    def __init__(self, name: str, channels: int) -> None:
        super().__init__()
        self.norm = make_norm(name, channels)

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.norm, nn.Identity):
            return x
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def conv_stages(size: int, minres: int = 4) -> int:
    """How many stride-2 stages take an image of side ``size`` down to ``minres``."""
    stages = math.log2(size / minres)
    if size < minres or not stages.is_integer():
        raise ValueError(f"image side {size} must be {minres} times a power of two (e.g. 64)")
    return int(stages)


class ConvEncoder(nn.Module):
    """Stride-2 convolutions from an image to a flat embedding (Dreamer's encoder).

    Channels double at each stage, starting at ``depth``, until the feature map is ``minres`` wide.

    Args:
        size: Image side ``H = W``.
        channels: Image channels ``C``.
        depth: Channels of the first stage.
        act: Activation name.
        norm: Norm over channels.
        kernel: Convolution kernel size.
        minres: Side of the last feature map.

    Example:
        >>> encoder = ConvEncoder(64, 3, depth=8)
        >>> encoder(torch.zeros(2, 5, 64, 64, 3, dtype=torch.uint8)).shape
        torch.Size([2, 5, 1024])
    """

    def __init__(
        self,
        size: int,
        channels: int,
        depth: int = 32,
        act: str = "silu",
        norm: str = "layer",
        kernel: int = 4,
        minres: int = 4,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        inp = channels
        for stage in range(conv_stages(size, minres)):
            out = depth * 2**stage
            conv = nn.Conv2d(inp, out, kernel, stride=2, padding=(kernel - 1) // 2, bias=norm == "none")
            layers += [conv, ChannelNorm(norm, out), make_act(act)]
            inp = out
        self.net = nn.Sequential(*layers)
        self.out_dim = inp * minres * minres

    def forward(self, image: Tensor) -> Tensor:
        """``(..., H, W, C)`` uint8 -> ``(..., out_dim)``."""
        lead = image.shape[:-3]
        x = image.reshape(-1, *image.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0 - 0.5
        x = self.net(conv_layout(x))
        return x.reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """Transposed convolutions from features to the mean image, mirroring :class:`ConvEncoder`.

    Example:
        >>> decoder = ConvDecoder(16, size=64, channels=3, depth=8)
        >>> decoder(torch.zeros(2, 5, 16)).shape
        torch.Size([2, 5, 64, 64, 3])
    """

    def __init__(
        self,
        inp: int,
        size: int,
        channels: int,
        depth: int = 32,
        act: str = "silu",
        norm: str = "layer",
        kernel: int = 4,
        minres: int = 4,
    ) -> None:
        super().__init__()
        stages = conv_stages(size, minres)
        self.minres = minres
        self.top = depth * 2 ** (stages - 1)
        self.project = nn.Linear(inp, self.top * minres * minres)
        layers: list[nn.Module] = []
        width = self.top
        pad = (kernel - 1) // 2
        for stage in reversed(range(stages)):
            last = stage == 0
            out = channels if last else depth * 2 ** (stage - 1)
            layers.append(
                nn.ConvTranspose2d(
                    width,
                    out,
                    kernel,
                    stride=2,
                    padding=pad,
                    output_padding=kernel % 2,
                    bias=last or norm == "none",
                )
            )
            if not last:
                layers += [ChannelNorm(norm, out), make_act(act)]
            width = out
        self.net = nn.Sequential(*layers)

    def forward(self, feat: Tensor) -> Tensor:
        """``(..., inp)`` -> ``(..., H, W, C)`` mean image in ``[-0.5, 0.5]`` units."""
        lead = feat.shape[:-1]
        x = self.project(feat.reshape(-1, feat.shape[-1]))
        x = conv_layout(x.reshape(-1, self.top, self.minres, self.minres))
        x = self.net(x).permute(0, 2, 3, 1)
        return x.reshape(*lead, *x.shape[1:])


CHANNELS_LAST_FROM = 8
"""Batches of at least this many images run the convolutions channels-last, smaller ones NCHW."""


def conv_layout(x: Tensor) -> Tensor:
    """``x`` (``(N, C, H, W)``) in the memory layout that convolves it fastest on a CPU.

    Channels-last is as fast or faster for training batches, but oneDNN then reorders data on each
    call, a fixed cost of several milliseconds (1 thread): encoding one 64x64 frame took ~7 ms
    channels-last against ~2 ms in NCHW, which is what acting and fitness rollouts do every step.
    """
    if len(x) >= CHANNELS_LAST_FROM:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def init_uniform_(module: nn.Module, scale: float = 1.0) -> nn.Module:
    """Variance-scaling ("fan_avg", uniform) init of every linear and conv weight, as in DreamerV3.

    ``scale = 0`` zeroes the weights: DreamerV3 zero-initialises the output layers of its reward and
    value heads so that they start by predicting 0 (a uniform two-hot distribution decodes to 0).
    """
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            if scale == 0:
                nn.init.zeros_(layer.weight)
            else:
                fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
                limit = math.sqrt(3 * scale / ((fan_in + fan_out) / 2))
                nn.init.uniform_(layer.weight, -limit, limit)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module
