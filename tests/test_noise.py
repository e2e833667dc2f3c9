"""Colored exploration noise: its statistics, its per-episode sequences, and the policy that uses it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamworld.nn.dists import BoundedNormal, TanhNormal
from dreamworld.nn.noise import colored_noise, next_noise, start_noise


def _slope(noise: torch.Tensor) -> float:
    """The log-log slope of the mean periodogram over the middle frequencies."""
    power = torch.fft.rfft(noise.transpose(1, 2), dim=-1).abs().square().mean((0, 1))
    freqs = torch.fft.rfftfreq(noise.shape[1])
    keep = slice(4, len(freqs) // 2)
    return float(np.polyfit(np.log(freqs[keep].numpy()), np.log(power[keep].numpy()), 1)[0])


def _lag1(noise: torch.Tensor) -> float:
    return float((noise[:, 1:] * noise[:, :-1]).mean() / noise.square().mean())


def test_white_noise_is_torch_randn():
    torch.manual_seed(0)
    expected = torch.randn(3, 50, 2)
    torch.manual_seed(0)
    torch.testing.assert_close(colored_noise(0.0, 3, 50, 2), expected, rtol=0, atol=0)


@pytest.mark.parametrize(("beta", "length"), [(0.0, 256), (1.0, 256), (2.0, 256), (1.0, 255)])
def test_every_step_is_a_unit_normal_and_the_spectrum_falls_as_one_over_f_to_the_beta(beta, length):
    torch.manual_seed(0)
    noise = colored_noise(beta, 2000, length, 2)
    assert noise.shape == (2000, length, 2)
    per_step = noise.var(0)  # over sequences: the same at the start, the middle and the end
    assert float(per_step.mean()) == pytest.approx(1.0, abs=0.03)
    assert float(per_step[0].mean()) == pytest.approx(1.0, abs=0.1)
    assert float(per_step[-1].mean()) == pytest.approx(1.0, abs=0.1)
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.03)
    assert _slope(noise) == pytest.approx(-beta, abs=0.15)


def test_redder_noise_is_more_correlated_from_step_to_step():
    torch.manual_seed(0)
    lags = [_lag1(colored_noise(beta, 500, 200, 1)) for beta in (0.0, 1.0, 2.0)]
    assert abs(lags[0]) < 0.02 and 0.3 < lags[1] < 0.9 and lags[2] > 0.9


def test_each_environment_reads_its_sequence_until_its_episode_restarts():
    torch.manual_seed(0)
    state = start_noise(3, 5, 2, torch.device("cpu"))
    assert state[1] == [5, 5, 5]  # nothing drawn yet: the first step draws every sequence
    noise, state = next_noise(state, 1.0, np.zeros(3, bool))
    first = state[0].clone()
    torch.testing.assert_close(noise, first[:, 0])
    assert first.abs().sum(1).min() > 0
    steps = [noise]
    for t in range(1, 4):
        noise, state = next_noise(state, 1.0, np.array([False, False, t == 2]))
        steps.append(noise)
    # Environments 0 and 1 read their sequences in order.
    torch.testing.assert_close(torch.stack(steps)[:, :2], first[:2, :4].transpose(0, 1))
    # Environment 2 restarted at t = 2: a new sequence, read from its start.
    assert not torch.equal(state[0][2], first[2])
    torch.testing.assert_close(torch.stack(steps)[2:, 2], state[0][2, :2])
    assert state[1] == [4, 4, 2]
    # A sequence read to its end is redrawn.
    for _ in range(2):
        noise, state = next_noise(state, 1.0, np.zeros(3, bool))
    assert state[1] == [1, 1, 4] and not torch.equal(state[0][0], first[0])


@pytest.mark.parametrize("dist", ["bounded", "tanh"])
def test_a_sample_from_given_noise_is_the_reparameterised_sample(dist):
    raw = torch.randn(4, 6)
    actor = BoundedNormal(raw, 0.1, 1.0) if dist == "bounded" else TanhNormal(raw, 0.1, init_std=1.0)
    noise = torch.randn(4, 3)
    torch.manual_seed(5)
    expected = actor.sample()
    torch.manual_seed(5)
    torch.testing.assert_close(actor.sample_with(torch.randn(4, 3)), expected)
    assert actor.sample_with(noise).shape == (4, 3)


def test_the_policy_explores_with_colored_noise_and_acts_without_it(monkeypatch):
    """With ``noise_color`` the collecting policy's action is the actor's distribution sampled with
    each environment's colored sequence, step after step; the mode ignores it."""
    import gymnasium as gym

    from dreamworld.algos.dreamer.agent import Dreamer
    from dreamworld.config import load_config
    from tiny import TINY

    values = {TINY[i][2:]: TINY[i + 1] for i in range(0, len(TINY), 2)}
    config = load_config(["dreamerv3"], overrides={**values, "dreamer.actor.noise_color": "1.0"}).dreamer
    torch.manual_seed(0)
    spaces = {"vector": gym.spaces.Box(-1, 1, (3,), np.float32)}, gym.spaces.Box(-1, 1, (1,))
    agent = Dreamer(config, *spaces)
    raw = torch.tensor([[0.3, 0.0]])  # mean tanh(0.3), std 0.9 sigmoid(2) + 0.1
    fixed = lambda feat: BoundedNormal(raw.expand(len(feat), 2), 0.1, 1.0)  # noqa: E731
    monkeypatch.setattr(agent.actor, "forward", fixed)
    obs = {"vector": np.zeros((2, 3), np.float32), "is_first": np.array([True, True])}
    state, explored = None, []
    for _ in range(30):
        action, state = agent.policy(obs, state, mode="explore")
        explored.append(action[:, 0])
        np.testing.assert_allclose(agent.policy(obs, state, mode="mode")[0][:, 0], np.tanh(0.3), rtol=1e-6)
        obs = {**obs, "is_first": np.array([False, False])}
    assert len(state) == 3 and state[2][1] == [30, 30]
    std = 0.9 * torch.sigmoid(torch.tensor(2.0)) + 0.1
    expected = (np.tanh(0.3) + std * state[2][0][:, :30, 0]).clamp(-1, 1).T
    np.testing.assert_allclose(np.array(explored), expected.numpy(), rtol=1e-5, atol=1e-6)
    # Without noise_color the state stays (latent, action).
    plain = Dreamer(load_config(["dreamerv3"], overrides=values).dreamer, *spaces)
    assert len(plain.policy(obs, None, mode="explore")[1]) == 2


def test_noise_color_is_checked():
    from dreamworld.config import load_config
    from dreamworld.errors import ConfigError

    with pytest.raises(ConfigError, match="noise_color"):
        load_config(["dreamerv3"], overrides={"dreamer.actor.noise_color": "-1"})
