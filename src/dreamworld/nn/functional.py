"""Pure math of world-model agents, each function checked against a naive reference in the tests.

Shapes use ``B`` for batch, ``T`` for time and ``K`` for bins. Nothing here holds state.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def symlog(x: Tensor) -> Tensor:
    """``sign(x) * log(1 + |x|)``: compresses large magnitudes, identity-like near 0 (DreamerV3 eq. 9).

    Example:
        >>> symlog(torch.tensor([-(torch.e - 1), 0.0, torch.e - 1]))
        tensor([-1.,  0.,  1.])
    """
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    """``sign(x) * (exp(|x|) - 1)``, the inverse of :func:`symlog`.

    Example:
        >>> symexp(torch.tensor([-1.0, 0.0, 1.0]))
        tensor([-1.7183,  0.0000,  1.7183])
    """
    return torch.sign(x) * torch.expm1(torch.abs(x))


def symlog_bins(num: int = 255, low: float = -20.0, high: float = 20.0) -> Tensor:
    """Equally spaced bin centres in symlog space (DreamerV3: 255 in [-20, 20]).

    When ``low == -high`` and ``num`` is odd the bins are mirrored exactly around 0, so that
    :func:`twohot_mean` of a symmetric distribution is exactly 0.
    """
    if low == -high and num % 2 == 1:
        half = torch.linspace(0.0, high, num // 2 + 1)
        return torch.cat([-half[1:].flip(0), half])
    return torch.linspace(low, high, num)


def twohot(x: Tensor, bins: Tensor) -> Tensor:
    """Encodes values as weights on their two nearest bins, so that ``sum(w * bins) == x``.

    Values outside the bins put all weight on the nearest end bin.

    Args:
        x: Values of any shape ``S``.
        bins: Increasing bin centres ``(K,)``.

    Returns:
        Weights of shape ``S + (K,)``, non-negative and summing to 1.

    Example:
        >>> twohot(torch.tensor([0.25]), torch.tensor([0.0, 1.0, 2.0]))
        tensor([[0.7500, 0.2500, 0.0000]])
    """
    below, above, weight_high = twohot_indices(x, bins)
    weights = torch.zeros(*x.shape, len(bins), dtype=x.dtype, device=x.device)
    weights.scatter_(-1, below.unsqueeze(-1), (1 - weight_high).unsqueeze(-1))
    weights.scatter_add_(-1, above.unsqueeze(-1), weight_high.unsqueeze(-1))
    return weights


def twohot_indices(x: Tensor, bins: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The two bins around each value and the weight of the upper one (see :func:`twohot`).

    Returns:
        ``below`` and ``above`` bin indices (``above = below + 1``) and the weight of ``above``, each
        shaped like ``x``; values outside the bins put all weight on the nearest end bin.
    """
    x = x.clamp(bins[0], bins[-1])
    above = torch.searchsorted(bins, x.contiguous(), right=True).clamp(1, len(bins) - 1)
    below = above - 1
    low, high = bins[below], bins[above]
    return below, above, (x - low) / (high - low)


def twohot_mean(logits: Tensor, bins: Tensor) -> Tensor:
    """The expected bin value under ``softmax(logits)`` (see :func:`bin_mean`).

    With mirrored bins a uniform distribution decodes to exactly 0, which is why DreamerV3
    zero-initialises the output layers of its reward and value heads.
    """
    return bin_mean(torch.softmax(logits, -1), bins)


def is_mirrored(bins: Tensor) -> bool:
    """Whether ``bins`` (odd in number) are mirrored exactly around a centre bin of 0."""
    num = bins.shape[0]
    return num % 2 == 1 and bins[num // 2].item() == 0 and torch.equal(bins, -bins.flip(0))


def bin_mean(probs: Tensor, bins: Tensor, mirrored: bool | None = None) -> Tensor:
    """``sum(probs * bins)`` over the last axis, as one matrix-vector product.

    Mirrored bins are folded first, ``sum_k (p[+k] - p[-k]) * bins[+k]``, so that a symmetric
    distribution gives exactly 0 rather than the rounding error of a long sum of large opposite values.

    Args:
        probs: ``(..., K)`` probabilities.
        bins: ``(K,)`` bin values.
        mirrored: Whether :func:`is_mirrored` holds for ``bins`` (checked when not given).
    """
    if mirrored is None:
        mirrored = is_mirrored(bins)
    # A decoded value stays float32 under bfloat16 autocast, which would otherwise round this product.
    with torch.autocast(probs.device.type, enabled=False):
        if not mirrored:
            return probs.float() @ bins
        middle = bins.shape[0] // 2
        return (probs[..., middle + 1 :] - probs[..., :middle].flip(-1)).float() @ bins[middle + 1 :]


def lambda_return(
    reward: Tensor, cont: Tensor, value: Tensor, discount: float, lambda_: float | Tensor
) -> Tensor:
    """TD(lambda) returns along imagined trajectories (Dreamer eq. 6; DreamerV3 eq. 7).

    All inputs describe states ``s_0 .. s_H`` of a trajectory: ``reward[:, t]`` is the reward of
    arriving in ``s_t``, ``cont[:, t]`` whether the episode continues at ``s_t`` (1) or has ended
    (0), and ``value[:, t]`` the critic's estimate at ``s_t``. The recursion is::

        R_H = v_H
        R_t = r_{t+1} + discount * c_{t+1} * ((1 - lambda) * v_{t+1} + lambda * R_{t+1})

    Args:
        reward: ``(B, H + 1)``.
        cont: ``(B, H + 1)`` in ``[0, 1]``.
        value: ``(B, H + 1)``.
        discount: The discount factor gamma.
        lambda_: The mixing factor lambda; 1 gives Monte-Carlo returns bootstrapped at ``s_H``,
            0 gives one-step TD targets. A ``(B, H)`` tensor gives each step ``t`` its own lambda
            (0 where ``s_{t+1}`` ends an episode inside a replayed window: bootstrap there).

    Returns:
        ``(B, H)``: the returns ``R_0 .. R_{H-1}``.

    Example:
        >>> ones = torch.ones(1, 3)
        >>> lambda_return(ones, ones, torch.zeros(1, 3), discount=0.5, lambda_=1.0)
        tensor([[1.5000, 1.0000]])
    """
    assert reward.shape == cont.shape == value.shape, (reward.shape, cont.shape, value.shape)
    live = discount * cont[:, 1:]
    lam = torch.as_tensor(lambda_, dtype=reward.dtype, device=reward.device).expand_as(live)
    # The part of each step that does not depend on the next return, computed for all steps at once.
    interim = reward[:, 1:] + live * (1 - lam) * value[:, 1:]
    chain = live * lam
    returns = [value[:, -1]]
    for t in reversed(range(live.shape[1])):
        returns.append(interim[:, t] + chain[:, t] * returns[-1])
    return torch.stack(returns[:0:-1], 1)


def trajectory_weights(cont: Tensor, discount: float) -> Tensor:
    """Weights of imagined steps: the discounted probability that the episode is still running.

    ``w_0 = 1`` and ``w_t = prod_{k=1..t} discount * cont_k``, so steps after a predicted episode end
    do not train the actor or the critic (DreamerV2 section 2, "discount weights").

    Args:
        cont: ``(B, H + 1)`` continuation probabilities of states ``s_0 .. s_H``.
        discount: The discount factor gamma.

    Returns:
        ``(B, H + 1)`` weights, without gradient.
    """
    factors = torch.cat([torch.ones_like(cont[:, :1]), discount * cont[:, 1:]], 1)
    return torch.cumprod(factors, 1).detach()


def onehot(index: Tensor, classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """One-hot rows ``(..., classes)`` of integer ``index`` ``(...)``.

    ``F.one_hot`` checks its indices' range by reading their minimum and maximum back to the host, two
    synchronisations per call on a GPU; a scatter needs none (an index out of range fails inside the
    kernel instead).

    Example:
        >>> onehot(torch.tensor([2, 0]), 3)
        tensor([[0., 0., 1.],
                [1., 0., 0.]])
    """
    rows = torch.zeros(*index.shape, classes, dtype=dtype, device=index.device)
    return rows.scatter_(-1, index.long().unsqueeze(-1), 1.0)


def quantiles(x: Tensor, qs: tuple[float, ...]) -> Tensor:
    """Quantiles of all elements of ``x`` with linear interpolation, as ``torch.quantile`` computes them.

    The positions ``q * (n - 1)`` depend only on the number of elements, so they are Python numbers:
    no host synchronisation (``torch.quantile`` checks its arguments on the host) and static shapes.

    Example:
        >>> quantiles(torch.arange(11.0), (0.05, 0.5))
        tensor([0.5000, 5.0000])
    """
    flat = x.flatten().sort().values
    last = flat.numel() - 1
    out = []
    for q in qs:
        position = q * last
        below = math.floor(position)
        above = min(below + 1, last)
        out.append(torch.lerp(flat[below], flat[above], position - below))
    return torch.stack(out)


def sample_onehot(probs: Tensor) -> Tensor:
    """One-hot samples of categoricals ``(..., K)`` with straight-through gradients.

    Sampling inverts the CDF with one uniform number per variable (``torch.multinomial`` spends
    several times longer drawing exponentials). The returned value is the one-hot sample; its
    gradient is that of ``probs`` (Bengio et al. 2013; DreamerV2 section 2).

    Example:
        >>> sample = sample_onehot(torch.tensor([[0.0, 1.0, 0.0]]))
        >>> sample.tolist()
        [[0.0, 1.0, 0.0]]
    """
    index = sample_index(probs.detach())
    # scatter, not F.one_hot: that one checks its indices' range, two reads back per call.
    hard = torch.zeros_like(probs, memory_format=torch.contiguous_format).scatter_(
        -1, index.unsqueeze(-1), 1.0
    )
    return hard + (probs - probs.detach())  # exactly the one-hot values, gradients of probs


def sample_index(probs: Tensor) -> Tensor:
    """Class indices ``(...)`` drawn from categoricals ``(..., K)`` by inverting their CDFs.

    The index is the number of CDF entries at or below a uniform draw, found by binary search (counting
    them with a comparison over all ``K`` classes spent most of its time converting the flags to
    integers).
    """
    cdf = probs.cumsum(-1)
    uniform = torch.rand_like(cdf[..., :1]) * cdf[..., -1:]
    index = torch.searchsorted(cdf, uniform, right=True).squeeze(-1)
    return index.clamp_(max=probs.shape[-1] - 1)


def mixture_log_prob(x: Tensor, logits: Tensor, mean: Tensor, logstd: Tensor) -> Tensor:
    """Log-density of ``x`` under a one-dimensional Gaussian mixture, per element.

    ``log sum_k softmax(logits)_k N(x; mean_k, exp(logstd_k)^2)``, computed with ``logsumexp``.

    Args:
        x: Values ``(...)``.
        logits: Unnormalised component weights ``(..., K)``.
        mean: Component means ``(..., K)``.
        logstd: Component log standard deviations ``(..., K)``.

    Returns:
        ``(...)`` log-densities.

    Example:
        >>> zero = torch.zeros(1, 1)
        >>> round(mixture_log_prob(torch.zeros(1), zero, zero, zero).item(), 4)  # log N(0; 0, 1)
        -0.9189
    """
    log_weights = torch.log_softmax(logits, -1)
    z = (x.unsqueeze(-1) - mean) * torch.exp(-logstd)
    log_normal = -0.5 * z.square() - logstd - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(log_weights + log_normal, -1)


def mixture_sample(
    logits: Tensor, mean: Tensor, logstd: Tensor, temperature: float, uniform: Tensor, normal: Tensor
) -> Tensor:
    """Draws from a Gaussian mixture at a temperature, from given noise (so draws can be replayed).

    The temperature ``tau`` divides the logits and multiplies the variance (World Models, section
    A.2): ``tau -> 0`` gives the mean of the most likely component, ``tau > 1`` wilder samples.

    Args:
        logits, mean, logstd: ``(..., K)`` mixture parameters.
        temperature: ``tau > 0``.
        uniform: ``(...)`` uniform noise in ``[0, 1)`` that picks the component.
        normal: ``(...)`` standard normal noise.

    Returns:
        ``(...)`` samples.
    """
    probs = torch.softmax(logits / temperature, -1)
    cumulative = probs.cumsum(-1)
    # The component whose cumulative weight first exceeds the uniform draw (inverse CDF).
    index = (cumulative < uniform.unsqueeze(-1)).sum(-1, keepdim=True).clamp(max=logits.shape[-1] - 1)
    chosen_mean = mean.gather(-1, index).squeeze(-1)
    chosen_std = logstd.gather(-1, index).squeeze(-1).exp()
    return chosen_mean + chosen_std * math.sqrt(temperature) * normal
