"""Golden values of the agents' math against naive references."""

from __future__ import annotations

import math

import pytest
import torch

from dreamworld.nn.functional import (
    bin_mean,
    is_mirrored,
    lambda_return,
    onehot,
    quantiles,
    symexp,
    symlog,
    symlog_bins,
    trajectory_weights,
    twohot,
    twohot_mean,
)


def test_symlog_golden_values_and_inverse():
    x = torch.tensor([-1000.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1000.0], dtype=torch.float64)
    expected = [-math.log(1001), -math.log(2), -math.log(1.5), 0, math.log(1.5), math.log(2), math.log(1001)]
    torch.testing.assert_close(symlog(x), torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(symexp(symlog(x)), x)
    assert symlog(torch.tensor(0.0)) == 0


def test_twohot_encodes_to_the_two_neighbours_and_decodes_back():
    bins = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])
    x = torch.tensor([0.25, -1.0, 2.0, 3.0, -5.0, 7.0])
    weights = twohot(x, bins)
    expected = torch.tensor(
        [
            [0, 0, 0.75, 0.25, 0],
            [0, 1, 0, 0, 0],
            [0, 0, 0, 0.5, 0.5],
            [0, 0, 0, 0, 1],
            [1, 0, 0, 0, 0],  # below the range: all on the first bin
            [0, 0, 0, 0, 1],  # above the range: all on the last bin
        ]
    )
    torch.testing.assert_close(weights, expected)
    inside = (x >= bins[0]) & (x <= bins[-1])
    torch.testing.assert_close((weights * bins).sum(-1)[inside], x[inside])


def test_twohot_matches_a_naive_loop_on_symlog_bins():
    bins = symlog_bins()
    x = (torch.randn(200, generator=torch.Generator().manual_seed(0)) * 8).clamp(-19.9, 19.9)
    weights = twohot(x, bins)
    for value, row in zip(x.tolist(), weights, strict=True):
        k = max(i for i in range(len(bins)) if bins[i] <= value)
        low, high = bins[k].item(), bins[k + 1].item()
        assert row[k].item() == pytest.approx((high - value) / (high - low), abs=1e-5)
        assert row[k + 1].item() == pytest.approx((value - low) / (high - low), abs=1e-5)
        assert row.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_twohot_mean_of_uniform_logits_is_zero():
    bins = symlog_bins(255)
    # Exactly 0, not a rounding error of the sum of large opposite bins (DreamerV3's zero-init heads).
    assert twohot_mean(torch.zeros(3, 255), bins).abs().max().item() == 0.0
    assert symexp(twohot_mean(torch.zeros(255), bins)).item() == 0.0
    # Any symmetric distribution decodes to exactly 0 as well.
    half = torch.rand(2, 127, generator=torch.Generator().manual_seed(0))
    probs = torch.cat([half.flip(-1), torch.rand(2, 1), half], -1)
    assert bin_mean(probs, bins).abs().max().item() == 0.0


def test_bin_mean_equals_the_naive_weighted_sum():
    gen = torch.Generator().manual_seed(1)
    for bins in (symlog_bins(255), symlog_bins(31, -5.0, 5.0), symlog_bins(10, -3.0, 7.0)):
        probs = torch.softmax(torch.randn(4, 6, len(bins), generator=gen) * 3, -1)
        naive = (probs.double() * bins.double()).sum(-1).float()
        assert is_mirrored(bins) == (len(bins) % 2 == 1)
        torch.testing.assert_close(bin_mean(probs, bins), naive, rtol=1e-5, atol=1e-4)


def naive_lambda_return(reward, cont, value, discount, lambda_):
    batch, steps = reward.shape
    out = torch.zeros(batch, steps - 1)
    for b in range(batch):
        following = value[b, -1]
        for t in reversed(range(steps - 1)):
            bootstrap = (1 - lambda_) * value[b, t + 1] + lambda_ * following
            following = reward[b, t + 1] + discount * cont[b, t + 1] * bootstrap
            out[b, t] = following
    return out


@pytest.mark.parametrize("lambda_", [0.0, 0.5, 0.95, 1.0])
def test_lambda_return_matches_the_naive_recursion(lambda_):
    gen = torch.Generator().manual_seed(1)
    reward, value = torch.randn(4, 16, generator=gen), torch.randn(4, 16, generator=gen)
    cont = (torch.rand(4, 16, generator=gen) > 0.2).float()
    torch.testing.assert_close(
        lambda_return(reward, cont, value, 0.97, lambda_),
        naive_lambda_return(reward, cont, value, 0.97, lambda_),
    )


def test_lambda_return_closed_forms():
    reward = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    value = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    ones = torch.ones(1, 4)
    # lambda = 1: discounted rewards plus the discounted last value.
    mc = lambda_return(reward, ones, value, 0.5, 1.0)
    torch.testing.assert_close(mc[0, 0], torch.tensor(1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 40))
    # lambda = 0: one-step targets r_{t+1} + gamma v_{t+1}.
    td = lambda_return(reward, ones, value, 0.5, 0.0)
    torch.testing.assert_close(td, torch.tensor([[1 + 10.0, 2 + 15.0, 3 + 20.0]]))
    # An episode end at s_2 cuts everything after it: no bootstrap beyond.
    cont = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    cut = lambda_return(reward, cont, value, 0.5, 1.0)
    torch.testing.assert_close(cut[0, 0], torch.tensor(1 + 0.5 * 2))


def test_trajectory_weights_are_discounted_continuation_products():
    cont = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    torch.testing.assert_close(trajectory_weights(cont, 0.9), torch.tensor([[1.0, 0.9, 0.0, 0.0]]))


def test_twohot_loss_by_gather_equals_the_dense_cross_entropy():
    from dreamworld.nn.dists import TwoHot

    gen = torch.Generator().manual_seed(2)
    bins = symlog_bins(31, -5.0, 5.0)
    logits = torch.randn(6, 7, 31, generator=gen)
    target = torch.randn(6, 7, generator=gen) * 30
    dense = -(twohot(symlog(target), bins) * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(TwoHot(logits, bins).loss(target), dense)
    # The fused backward: the same gradient as autograd through the dense cross-entropy.
    scale = torch.rand(6, 7, generator=gen)
    fused_logits, dense_logits = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    (TwoHot(fused_logits, bins).loss(target) * scale).sum().backward()
    (-(twohot(symlog(target), bins) * torch.log_softmax(dense_logits, -1)).sum(-1) * scale).sum().backward()
    torch.testing.assert_close(fused_logits.grad, dense_logits.grad)


def test_sample_index_inverts_the_cdf_like_counting_its_entries():
    from dreamworld.nn.functional import sample_index

    probs = torch.softmax(torch.randn(256, 8, 32, generator=torch.Generator().manual_seed(5)) * 2, -1)
    probs[0, 0] = torch.nn.functional.one_hot(torch.tensor(31), 32).float()  # the last class only
    torch.manual_seed(6)
    index = sample_index(probs)
    torch.manual_seed(6)
    cdf = probs.cumsum(-1)
    uniform = torch.rand_like(cdf[..., :1]) * cdf[..., -1:]
    naive = (cdf <= uniform).sum(-1).clamp(max=31)
    assert torch.equal(index, naive) and index[0, 0] == 31


def test_twohot_losses_of_several_targets_equal_the_sum_of_single_losses():
    """The critic's loss and its slow regulariser in one pass: values and gradients of the dense sum,
    with the probabilities computed by ``mode()`` shared or computed inside."""
    from dreamworld.nn.dists import TwoHot

    gen = torch.Generator().manual_seed(3)
    bins = symlog_bins(255)
    logits = torch.randn(5, 4, 255, generator=gen)
    first, second = torch.randn(5, 4, generator=gen) * 50, torch.randn(5, 4, generator=gen)
    scale = torch.rand(5, 4, generator=gen)

    def dense(target, logits):
        return -(twohot(symlog(target), bins) * torch.log_softmax(logits, -1)).sum(-1)

    reference = logits.clone().requires_grad_()
    expected = dense(first, reference) + 0.3 * dense(second, reference)
    (expected * scale).sum().backward()
    for share in (False, True):
        fused = logits.clone().requires_grad_()
        dist = TwoHot(fused, bins, mirrored=True)
        if share:
            with torch.no_grad():
                dist.mode()
        loss = dist.losses((first, 1.0), (second, 0.3))
        torch.testing.assert_close(loss, expected)
        (loss * scale).sum().backward()
        torch.testing.assert_close(fused.grad, reference.grad)


def test_twohot_mode_has_a_gradient_only_when_asked_for():
    from dreamworld.nn.dists import TwoHot

    bins = symlog_bins(255)
    logits = torch.randn(3, 255, generator=torch.Generator().manual_seed(4)).requires_grad_()
    dist = TwoHot(logits, bins, mirrored=True)
    with_grad = dist.mode()
    with torch.no_grad():
        cached = dist.mode()
    assert with_grad.requires_grad and not cached.requires_grad
    torch.testing.assert_close(cached, with_grad.detach())
    torch.testing.assert_close(cached, symexp(twohot_mean(logits.detach(), bins)))
    with_grad.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_feat_linear_one_hot_path_has_the_dense_gradients():
    """OneHotFeat input (embedding_bag forward, index_add backward) = the dense product, values and grads."""
    from dreamworld.nn.layers import FeatLinear, OneHotFeat

    torch.manual_seed(0)
    layer = FeatLinear(3 + 4 * 5, 6)
    dense = torch.randn(2, 7, 3)
    classes = torch.randint(0, 5, (2, 7, 4))
    positions = classes + torch.arange(4) * 5
    onehot = torch.nn.functional.one_hot(classes, 5).flatten(-2).float()
    target = torch.randn(2, 7, 6)
    ((layer(OneHotFeat(dense, positions)) - target) ** 2).sum().backward()
    sparse_grads = [param.grad.clone() for param in layer.parameters()]
    layer.zero_grad()
    ((layer(torch.cat([dense, onehot], -1)) - target) ** 2).sum().backward()
    for sparse, reference in zip(sparse_grads, [param.grad for param in layer.parameters()], strict=True):
        torch.testing.assert_close(sparse, reference, rtol=1e-5, atol=1e-5)


def test_conv_stacks_give_the_same_result_in_either_memory_layout():
    """Small batches convolve in NCHW, large ones channels-last: images must not see the difference."""
    from dreamworld.nn.layers import CHANNELS_LAST_FROM, ConvDecoder, ConvEncoder

    torch.manual_seed(0)
    encoder, decoder = ConvEncoder(32, 3, depth=8), ConvDecoder(16, size=32, channels=3, depth=8)
    images = torch.randint(0, 256, (CHANNELS_LAST_FROM, 32, 32, 3), dtype=torch.uint8)
    feat = torch.randn(CHANNELS_LAST_FROM, 16)
    with torch.no_grad():
        torch.testing.assert_close(encoder(images), torch.cat([encoder(image[None]) for image in images]))
        torch.testing.assert_close(decoder(feat), torch.cat([decoder(row[None]) for row in feat]))


@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_quantiles_equal_torch_quantile(size):
    x = torch.randn(size, 3, generator=torch.Generator().manual_seed(size))
    qs = (0.0, 0.05, 0.5, 0.95, 1.0)
    torch.testing.assert_close(quantiles(x, qs), torch.quantile(x.flatten(), torch.tensor(qs)))


def test_onehot_equals_f_one_hot():
    index = torch.tensor([[0, 3], [2, 1]])
    expected = torch.nn.functional.one_hot(index, 4).float()
    assert torch.equal(onehot(index, 4), expected)
    assert onehot(index, 4, torch.bfloat16).dtype == torch.bfloat16


def test_action_distributions_equal_torch_distributions():
    """The Normal heads write their formulas out; torch.distributions is the reference."""
    from torch.distributions import Normal, TanhTransform, TransformedDistribution

    from dreamworld.nn.dists import BoundedNormal, TanhNormal

    raw = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    value = torch.rand(5, 3, generator=torch.Generator().manual_seed(1)) * 1.8 - 0.9
    bounded = BoundedNormal(raw, 0.1, 1.0)
    mean, std = raw.chunk(2, -1)
    reference = Normal(torch.tanh(mean), 0.9 * torch.sigmoid(std + 2.0) + 0.1)
    torch.testing.assert_close(bounded.log_prob(value), reference.log_prob(value).sum(-1))
    torch.testing.assert_close(bounded.entropy(), reference.entropy().sum(-1))
    squashed = TanhNormal(raw, 0.1)
    base = Normal(squashed.mean, squashed.std)
    tanh = TransformedDistribution(base, TanhTransform())
    torch.testing.assert_close(squashed.log_prob(value), tanh.log_prob(value).sum(-1), rtol=1e-5, atol=1e-5)
    torch.manual_seed(2)
    sample = squashed.sample()
    assert sample.abs().max() < 1 and sample.shape == (5, 3)


@pytest.mark.parametrize("std", [0.05, 0.3, 0.6, 1.0, 2.0, 5.0])
def test_tanh_normal_mode_is_the_most_likely_squashed_action(std):
    """Golden values: against the squashed density's maximum over a fine grid of actions. A wide
    Normal's mode is near a bound, on the side of its mean, where ``tanh(mean)`` is not."""
    from dreamworld.nn.dists import TanhNormal

    means = torch.tensor([-3.0, -1.0, -0.3, 0.2, 0.7, 2.0, 4.9], dtype=torch.float64)
    dist = TanhNormal(torch.zeros(len(means), 2, dtype=torch.float64), 0.0)
    dist.mean, dist.std = means[:, None], torch.full((len(means), 1), std, dtype=torch.float64)
    y = torch.linspace(-1 + 1e-9, 1 - 1e-9, 400_001, dtype=torch.float64)

    def log_density(value: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        x = torch.atanh(value.clamp(-1 + 1e-15, 1 - 1e-15))
        return -(x - mean).square() / (2 * std**2) - torch.log1p(-value.square())

    mode = dist.mode()[:, 0]
    for mean, got in zip(means, mode, strict=True):
        best = log_density(y, mean).max()
        assert float(best - log_density(got, mean)) < 1e-5, (float(mean), std)
        assert torch.sign(got) == torch.sign(mean)
    if std >= 1.0:
        assert (mode.abs() > 0.95).all()  # near the bounds, whatever the mean


def test_tanh_normal_initial_std_and_entropy_that_pulls_the_mean_off_the_bounds():
    """``init_std`` is the squashed Normal's std before the squash for a zero output (plus min_std);
    its entropy falls as the mean saturates, so an entropy bonus pulls a saturating mean back toward
    the middle (the bounded Normal's entropy does not depend on its mean)."""
    from dreamworld.nn.dists import BoundedNormal, TanhNormal, make_output

    zeros = torch.zeros(4, 2)
    for init in (5.0, 1.0, 0.3):
        dist = make_output("tanh_normal", (1,), min_std=0.1, init_std=init).build(zeros)
        torch.testing.assert_close(dist.std, torch.full((4, 1), init + 0.1))
    torch.manual_seed(0)
    means = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0]).repeat_interleave(20_000)
    raw = torch.stack([means, torch.zeros_like(means)], -1).requires_grad_(True)
    entropy = TanhNormal(raw, 0.1, init_std=1.0).entropy()
    per_mean = entropy.detach().reshape(5, -1).mean(-1)
    assert per_mean[2] > per_mean[1] > per_mean[0] and per_mean[2] > per_mean[3] > per_mean[4]
    entropy.sum().backward()
    pull = raw.grad[:, 0].reshape(5, -1).mean(-1)  # d entropy / d mean, averaged over samples
    assert pull[0] > 0 and pull[1] > 0 and pull[3] < 0 and pull[4] < 0 and abs(pull[2]) < 0.05
    bounded = torch.stack([means, torch.zeros_like(means)], -1).requires_grad_(True)
    BoundedNormal(bounded, 0.1, 1.0).entropy().sum().backward()
    assert torch.count_nonzero(bounded.grad[:, 0]) == 0
