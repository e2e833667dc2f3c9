"""World Models' V: a convolutional variational autoencoder from frames to a small latent ``z``.

The convolution stacks are Dreamer's (:class:`~dreamworld.nn.layers.ConvEncoder` and
:class:`~dreamworld.nn.layers.ConvDecoder`), here with ReLU and no normalisation as in Ha &
Schmidhuber (2018, appendix A.1); only the Gaussian posterior and its loss are specific to the VAE.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dreamworld.nn.layers import ConvDecoder, ConvEncoder


class VAE(nn.Module):
    """Encodes ``(..., H, W, C)`` uint8 frames to a diagonal Gaussian over ``z`` and decodes ``z``.

    Args:
        size: Frame side ``H = W``.
        channels: Frame channels ``C``.
        z: Latent size (32 for CarRacing, 64 for ViZDoom in the paper).
        depth: Channels of the first convolution (doubling per stage).
        act: Activation name.
        kernel: Convolution kernel size.

    Example:
        >>> vae = VAE(64, 3, z=32, depth=8)
        >>> mean, logstd = vae.encode(torch.zeros(2, 64, 64, 3, dtype=torch.uint8))
        >>> vae.decode(mean).shape
        torch.Size([2, 64, 64, 3])
    """

    def __init__(
        self, size: int, channels: int, z: int = 32, depth: int = 32, act: str = "relu", kernel: int = 4
    ) -> None:
        super().__init__()
        self.z = z
        self.init_args = (size, channels, z, depth, act, kernel)
        self.encoder = ConvEncoder(size, channels, depth, act, "none", kernel)
        self.posterior = nn.Linear(self.encoder.out_dim, 2 * z)
        self.decoder = ConvDecoder(z, size, channels, depth, act, "none", kernel)

    def encode(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """``(..., H, W, C)`` uint8 -> mean and log standard deviation, each ``(..., z)``."""
        mean, logstd = self.posterior(self.encoder(image)).chunk(2, -1)
        return mean, logstd.clamp(-8.0, 4.0)

    def decode(self, z: Tensor) -> Tensor:
        """``(..., z)`` -> the mean frame ``(..., H, W, C)`` in ``[-0.5, 0.5]`` (pixel / 255 - 0.5)."""
        return self.decoder(z)

    def loss(self, image: Tensor, kl_free: float = 0.5) -> tuple[Tensor, dict[str, Tensor]]:
        """The negative evidence lower bound of a batch of frames, per frame.

        Reconstruction is the squared error summed over pixels (in units of 1/255 * 255 = 1 per
        full-scale pixel); the KL to N(0, I) is summed over ``z`` and floored at ``kl_free * z``
        nats per frame, the "KL tolerance" of the original implementation, which keeps the model from spending
        capacity on matching the prior exactly.

        Args:
            image: ``(B, H, W, C)`` uint8 frames.
            kl_free: Free nats per latent dimension.

        Returns:
            The scalar loss and its parts (``rec``, ``kl``, both means over the batch).
        """
        mean, logstd = self.encode(image)
        z = mean + logstd.exp() * torch.randn_like(mean)
        target = image.float() / 255.0 - 0.5
        rec = (self.decode(z) - target).square().flatten(1).sum(-1).mean()
        kl = (0.5 * (mean.square() + (2 * logstd).exp() - 1) - logstd).sum(-1)
        loss = rec + torch.clamp(kl, min=kl_free * self.z).mean()
        return loss, {"rec": rec.detach(), "kl": kl.mean().detach()}
