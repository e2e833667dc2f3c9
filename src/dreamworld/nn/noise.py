"""Temporally correlated ("colored") Gaussian noise for exploring with continuous actions.

White noise, drawn anew at every step, averages out within a few steps: a policy that samples its
actions that way jitters in place, and tasks that need a sustained push (swinging a pendulum up,
throwing a ball into a cup) are rarely solved by chance. Noise whose power spectrum falls as
``1 / f**beta`` keeps the same marginal (a unit Normal at every step) but drifts over many steps:
``beta = 0`` is white, 1 pink, 2 red (a random walk's spectrum). Pink noise is a strong default for
off-policy continuous control (Eberhard et al. 2023, "Pink Noise Is All You Need").

Sequences are drawn on the device, from torch's generator (so a seeded run draws the same noise, and a
checkpoint's random state resumes it), by shaping white noise in the frequency domain.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def colored_noise(
    beta: float, count: int, length: int, dims: int, device: torch.device | str = "cpu"
) -> Tensor:
    """``count`` sequences of ``length`` steps of ``dims``-dimensional noise with spectrum ``1 / f**beta``.

    Every step of every sequence is a standard Normal in distribution (the variance is normalised by
    its exact value, not by each sequence's sample); frequencies below ``1 / length`` take that
    lowest frequency's power, as the sequence cannot resolve them.

    Returns:
        ``(count, length, dims)``.
    """
    if beta == 0:
        return torch.randn(count, length, dims, device=device)
    freqs = torch.fft.rfftfreq(length, device=device).clamp(min=1.0 / length)
    scale = freqs.pow(-beta / 2.0)
    real = torch.randn(count, dims, len(freqs), device=device) * scale
    imag = torch.randn(count, dims, len(freqs), device=device) * scale
    # The zero frequency, and the Nyquist one of an even length, are real.
    imag[..., 0] = 0.0
    if length % 2 == 0:
        imag[..., -1] = 0.0
    signal = torch.fft.irfft(torch.complex(real, imag), n=length)
    # irfft(x)[t] = (x_0 + 2 sum_k Re(x_k e^{2 pi i k t / n}) [+ x_{n/2} (-1)^t]) / n: its variance.
    weights = torch.full_like(scale, 4.0)
    weights[0] = 1.0
    if length % 2 == 0:
        weights[-1] = 1.0
    std = (weights * scale.square()).sum().sqrt() / length
    return (signal / std).transpose(1, 2)


NoiseState = tuple[Tensor, list[int]]
"""One colored sequence per environment ``(count, length, dims)`` and how many steps of each were read
(host integers: which environments need a new sequence is known without reading the device; plain
data, so a checkpoint holds it)."""


def start_noise(count: int, length: int, dims: int, device: torch.device) -> NoiseState:
    """Sequences read to their end: the first :func:`next_noise` draws every one."""
    return torch.zeros(count, length, dims, device=device), [length] * count


def next_noise(state: NoiseState, beta: float, is_first: np.ndarray) -> tuple[Tensor, NoiseState]:
    """The noise of this step, ``(count, dims)``, and the state after it.

    A sequence restarts with every episode (``is_first``) and is redrawn when read to its end, so
    episodes do not share their slow drifts.
    """
    sequences, steps = state
    count, length, dims = sequences.shape
    renew = [i for i in range(count) if bool(is_first[i]) or steps[i] >= length]
    if renew:
        sequences = sequences.clone()
        sequences[torch.as_tensor(renew, device=sequences.device)] = colored_noise(
            beta, len(renew), length, dims, sequences.device
        )
        steps = [0 if i in renew else step for i, step in enumerate(steps)]
    index = torch.as_tensor(steps, device=sequences.device)
    noise = sequences[torch.arange(count, device=sequences.device), index]
    return noise, (sequences, [step + 1 for step in steps])
