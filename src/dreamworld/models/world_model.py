"""Dreamer's world model: encoder, RSSM, decoder, reward and continue heads.

Observations follow the environment contract: ``image`` (uint8 ``H x W x C``) and/or ``vector``
(float32). The model is built from plain arguments; the algorithm unpacks its config.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dreamworld.models.rssm import RSSM
from dreamworld.nn.dists import MSE, Dist, Head
from dreamworld.nn.functional import symlog
from dreamworld.nn.layers import MLP, ConvDecoder, ConvEncoder
from dreamworld.run.distributed import gather


class VectorNorm(nn.Module):
    """Standardises vector observations per dimension with statistics fitted once, then frozen.

    Symlog squashes large magnitudes but keeps small variations around a large offset small: a robot
    arm's coordinates (about 1.3 m, varying by 0.1 m) reach the model as values that differ by a few
    hundredths, below the precision its decoder loss asks for. Standardising first makes them unit-sized.
    The statistics are buffers, so checkpoints keep them; dimensions that barely vary are divided by
    ``min_std`` at most, never amplified without bound.

    Example:
        >>> norm = VectorNorm((2,))
        >>> norm.fit(torch.tensor([[1.0, 5.0], [3.0, 5.0]]))
        >>> norm(torch.tensor([[3.0, 5.0]])).tolist()
        [[1.0, 0.0]]
    """

    mean: Tensor
    std: Tensor
    ready: Tensor

    def __init__(self, shape: tuple[int, ...], min_std: float = 1e-2) -> None:
        super().__init__()
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))
        self._fitted: bool | None = False

    @property
    def fitted(self) -> bool:
        # Read from the buffer once (after construction or loading), then known on the host: every
        # training step asks, and a read of a device buffer would synchronise.
        if self._fitted is None:
            self._fitted = bool(self.ready)
        return self._fitted

    @torch.no_grad()
    def fit(self, vector: Tensor) -> None:
        """Sets the statistics from ``(..., D)`` samples."""
        flat = gather(vector.reshape(-1, vector.shape[-1]).float())  # every rank's batch, if several
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0, correction=0).clamp(min=self.min_std))
        self.ready.fill_(True)
        self._fitted = True

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._fitted = None

    def forward(self, vector: Tensor) -> Tensor:
        return (vector - self.mean) / self.std


class Encoder(nn.Module):
    """Embeds an observation dict: conv net for ``image``, MLP for ``vector``, concatenated.

    Args:
        shapes: Shapes of the ``image`` and/or ``vector`` observations.
        depth: Channels of the first conv stage.
        units: Hidden units of the vector MLP.
        layers: Hidden layers of the vector MLP.
        act: Activation name.
        norm: Norm name.
        kernel: Conv kernel size.
        symlog_inputs: Squash vector inputs with symlog (DreamerV3), so no input scaling is needed.
    """

    def __init__(
        self,
        shapes: dict[str, tuple[int, ...]],
        depth: int,
        units: int,
        layers: int,
        act: str,
        norm: str,
        kernel: int,
        symlog_inputs: bool,
    ) -> None:
        super().__init__()
        self.symlog_inputs = symlog_inputs
        self.out_dim = 0
        if "image" in shapes:
            height, _, channels = shapes["image"]
            self.conv = ConvEncoder(height, channels, depth, act, norm, kernel)
            self.out_dim += self.conv.out_dim
        if "vector" in shapes:
            self.mlp = MLP(shapes["vector"][0], units, layers, act, norm)
            self.out_dim += self.mlp.out_dim
        assert self.out_dim, f"nothing to encode in {shapes}"

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        parts = []
        if hasattr(self, "conv"):
            parts.append(self.conv(obs["image"]))
        if hasattr(self, "mlp"):
            vector = obs["vector"]
            parts.append(self.mlp(symlog(vector) if self.symlog_inputs else vector))
        return torch.cat(parts, -1)


class Decoder(nn.Module):
    """Predicts the observation from features: the image mean and the vector (by ``vector_output``)."""

    def __init__(
        self,
        feat: int,
        shapes: dict[str, tuple[int, ...]],
        depth: int,
        units: int,
        layers: int,
        act: str,
        norm: str,
        kernel: int,
        vector_output: str,
    ) -> None:
        super().__init__()
        if "image" in shapes:
            height, _, channels = shapes["image"]
            self.conv = ConvDecoder(feat, height, channels, depth, act, norm, kernel)
        if "vector" in shapes:
            self.vector = Head(feat, shapes["vector"], vector_output, units, layers, act, norm)

    def forward(self, feat: Tensor) -> dict[str, Dist]:
        dists: dict[str, Dist] = {}
        if hasattr(self, "conv"):
            dists["image"] = MSE(self.conv(feat).float(), dims=3)  # float32 under autocast
        if hasattr(self, "vector"):
            dists["vector"] = self.vector(feat)
        return dists


class WorldModel(nn.Module):
    """Encoder, RSSM, decoder, reward head and (optionally) continue head.

    Args:
        shapes: Observation shapes: ``image`` ``(H, W, C)`` and/or ``vector`` ``(D,)``.
        actions: Action size (one-hot size for discrete actions).
        rssm: Keyword arguments of :class:`~dreamworld.models.rssm.RSSM` (deter, stoch, classes, ...);
            ``units``, ``act`` and ``norm`` default to this model's.
        units: Hidden units of encoder MLP, decoder and heads.
        layers: Hidden layers of encoder MLP, decoder and heads.
        act: Activation name.
        norm: Norm name.
        depth: Channels of the first conv stage.
        kernel: Conv kernel size.
        symlog_inputs: Squash vector inputs with symlog.
        vector_output: Output of the vector decoder (``mse`` or ``symlog_mse``).
        reward_output: Output of the reward head (``mse`` or ``symexp_twohot``).
        cont: Whether to predict episode continuation (else a fixed discount is used).
        bins: Bins of two-hot outputs.
    """

    def __init__(
        self,
        shapes: dict[str, tuple[int, ...]],
        actions: int,
        rssm: dict[str, Any],
        units: int,
        layers: int,
        act: str,
        norm: str,
        depth: int,
        kernel: int,
        symlog_inputs: bool,
        vector_output: str,
        reward_output: str,
        cont: bool,
        bins: int,
    ) -> None:
        super().__init__()
        self.encoder = Encoder(shapes, depth, units, layers, act, norm, kernel, symlog_inputs)
        self.rssm = RSSM(self.encoder.out_dim, actions, **{"units": units, "act": act, "norm": norm, **rssm})
        feat = self.rssm.feat_size
        self.decoder = Decoder(feat, shapes, depth, units, layers, act, norm, kernel, vector_output)
        self.reward = Head(feat, (), reward_output, units, layers, act, norm, bins=bins)
        self.cont = Head(feat, (), "binary", units, layers, act, norm) if cont else None

    def heads(self, feat: Tensor) -> dict[str, Dist]:
        """Every prediction from features: decoder outputs, ``reward`` and ``cont``."""
        dists = self.decoder(feat)
        dists["reward"] = self.reward(feat)
        if self.cont is not None:
            dists["cont"] = self.cont(feat)
        return dists
