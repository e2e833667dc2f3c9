"""Exploration by ensemble disagreement: the ensemble, its novelty reward, its place in the update."""

from __future__ import annotations

import pytest
import torch

from dreamworld.errors import ConfigError
from dreamworld.models.disagreement import Disagreement
from dreamworld.nn.layers import OneHotFeat
from dreamworld.run.checkpoint import load_checkpoint, save_checkpoint
from test_dreamer import SyncCounter, fake_batch, finite, floats, make_agent, tiny_config

EXPLORE = {"dreamer.explore.disag": "0.5", "dreamer.explore.models": "3", "dreamer.explore.units": "16"}


def ensemble(**options) -> Disagreement:
    torch.manual_seed(0)
    return Disagreement(feat=6, actions=2, target=4, **{"models": 4, "units": 16, **options})


@pytest.mark.parametrize("norm", ["layer", "rms", "none"])
def test_members_start_apart_and_identical_members_agree(norm):
    net = ensemble(norm=norm, layers=3)
    feat, action = torch.randn(7, 6), torch.randn(7, 2)
    assert (net.disagreement(feat, action) > 0).all()
    torch.testing.assert_close(net.disagreement(feat, action), net(feat, action).std(-2).mean(-1))
    with torch.no_grad():  # every member a copy of the first
        first = net.first.weight.unflatten(0, (4, 16))
        net.first.weight.copy_(first[:1].expand_as(first).flatten(0, 1))
        action_weight = net.first_action.weight.unflatten(0, (4, 16))
        net.first_action.weight.copy_(action_weight[:1].expand_as(action_weight).flatten(0, 1))
        for param in [*net.hidden, *net.hidden_bias, *net.scales, *net.shifts, net.out, net.out_bias]:
            param.copy_(param[:1].expand_as(param))
    torch.testing.assert_close(net.disagreement(feat, action), torch.zeros(7), atol=1e-6, rtol=0)


def test_each_member_is_its_own_mlp():
    """Member k's prediction is the plain MLP made of its slices of the batched weights."""
    net = ensemble(norm="layer", layers=2)
    net.scales[1].data.uniform_(0.5, 1.5)
    net.shifts[0].data.normal_()
    feat, action = torch.randn(5, 6), torch.randn(5, 2)
    out = net(feat, action)
    for k in range(4):
        rows = slice(16 * k, 16 * (k + 1))
        x = feat @ net.first.weight[rows].T + action @ net.first_action.weight[rows].T
        x = torch.nn.functional.silu(
            torch.nn.functional.layer_norm(x, (16,), eps=1e-3) * net.scales[0][k] + net.shifts[0][k]
        )
        x = x @ net.hidden[0][k]
        x = torch.nn.functional.silu(
            torch.nn.functional.layer_norm(x, (16,), eps=1e-3) * net.scales[1][k] + net.shifts[1][k]
        )
        torch.testing.assert_close(out[:, k], x @ net.out[k] + net.out_bias[k])


def test_sparse_one_hot_features_give_the_same_predictions():
    net = Disagreement(feat=3 + 6, actions=2, target=4, models=3, units=8)
    dense, positions = torch.randn(5, 3), torch.tensor([[0, 4]] * 5)  # two groups of three classes
    onehot = torch.zeros(5, 6).scatter_(1, positions, 1.0)
    action = torch.randn(5, 2)
    torch.testing.assert_close(
        net(OneHotFeat(dense, positions), action), net(torch.cat([dense, onehot], -1), action)
    )


def test_training_shrinks_the_disagreement_where_there_is_data_only():
    """Trained on one half of the input space, the members agree there and stay apart on the other."""
    net = ensemble(norm="layer")
    points = torch.randn(256, 6, generator=torch.Generator().manual_seed(1))
    seen, unseen = points[points[:, 0] > 0.5], points[points[:, 0] < -0.5]
    target, action = torch.sin(2 * seen[:, :4]), torch.zeros(len(seen), 2)
    before = net.disagreement(seen, action).mean().item()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(300):
        opt.zero_grad()
        net.loss(seen, action, target, torch.ones(len(seen))).backward()
        opt.step()
    after = net.disagreement(seen, action).mean().item()
    elsewhere = net.disagreement(unseen, torch.zeros(len(unseen), 2)).mean().item()
    assert after < 0.35 * before
    assert elsewhere > 2.5 * after


def test_loss_ignores_masked_transitions():
    net = ensemble()
    feat, action, target = torch.randn(2, 3, 6), torch.randn(2, 3, 2), torch.randn(2, 3, 4)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    garbage = target.clone()
    garbage[mask == 0] = 1e6
    keep = mask.bool()
    expected = (net(feat, action)[keep] - target[keep].unsqueeze(-2)).square().mean()
    torch.testing.assert_close(net.loss(feat, action, garbage, mask), expected)


def test_novelty_is_the_disagreement_over_its_debiased_running_mean():
    net = ensemble(decay=0.9)
    feat, action = torch.randn(10, 6), torch.randn(10, 2)
    novelty, raw = net.novelty(feat, action)
    torch.testing.assert_close(novelty, raw / raw.mean())  # after one batch the mean is its own
    feat2 = torch.randn(10, 6) * 3
    novelty2, raw2 = net.novelty(feat2, action)
    mean = (0.9 * 0.1 * raw.mean() + 0.1 * raw2.mean()) / (0.9 * 0.1 + 0.1)
    torch.testing.assert_close(novelty2, raw2 / mean)


@pytest.mark.parametrize("action", ["discrete", "continuous"])
def test_the_update_trains_the_ensemble_without_a_host_read(action):
    agent = make_agent("vector", action, **EXPLORE)
    assert "explore" in agent.opts
    data = fake_batch("vector", action)
    before = [p.detach().clone() for p in agent.explore.parameters()]
    agent.train_step(data)
    with SyncCounter() as counter:
        metrics = agent.train_step(data)
    assert counter.syncs == []
    values = floats(metrics)
    assert finite(metrics)
    assert values["explore/loss"] > 0 and values["imagine/disagreement"] > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, agent.explore.parameters(), strict=True))
    plain = make_agent("vector", action)
    assert plain.explore is None and "explore" not in plain.opts
    assert not any(key.startswith("explore") for key in floats(plain.train_step(data)))


def test_the_ensemble_loss_reaches_the_ensemble_only():
    agent = make_agent("vector", "continuous", **EXPLORE)
    batch = agent.preprocess(fake_batch("vector", "continuous"), fit=True)
    _, post, _ = agent.world_model_loss(batch)
    loss = agent.explore_loss(batch, {key: value.detach() for key, value in post.items()})
    loss.backward()
    assert all(p.grad is None for p in agent.wm.parameters())
    assert all(p.grad is not None for p in agent.explore.parameters())


def test_novelty_enters_the_returns_and_the_actor_objective_but_no_gradient_reaches_the_ensemble():
    """Two agents with the same weights whose novelty scales differ, on the same imagined trajectories
    (same random numbers): the same task reward and disagreement, larger returns with the larger
    scale, different actor gradients (REINFORCE's advantages); the ensemble gets no gradient."""
    results = []
    for scale in ("0.5", "2.0"):
        agent = make_agent("vector", "continuous", **{**EXPLORE, "dreamer.explore.disag": scale})
        assert agent.actor_grad == "reinforce"
        batch = agent.preprocess(fake_batch("vector", "continuous"), fit=True)
        _, post, _ = agent.world_model_loss(batch)
        start = {key: value.detach().flatten(0, 1) for key, value in post.items()}
        torch.manual_seed(4)
        with agent._frozen_world_model():
            actor_loss, _, metrics = agent.behaviour(start, batch, post)
        grads = torch.autograd.grad(actor_loss, list(agent.actor.parameters()))
        assert all(p.grad is None for p in agent.explore.parameters())
        results.append((floats(metrics), grads))
    (low, low_grads), (high, high_grads) = results
    assert high["imagine/reward"] == low["imagine/reward"]
    assert high["imagine/disagreement"] == low["imagine/disagreement"]
    assert high["imagine/return"] > low["imagine/return"]
    assert any(not torch.allclose(a, b) for a, b in zip(low_grads, high_grads, strict=True))


def test_the_ensemble_and_its_running_mean_are_saved_and_loaded(tmp_path):
    agent = make_agent("vector", "continuous", **EXPLORE)
    data = fake_batch("vector", "continuous")
    agent.train_step(data)
    save_checkpoint(tmp_path / "agent.pt", agent.training_state(), kind="dreamer")
    loaded = make_agent("vector", "continuous", **EXPLORE)
    loaded.load_training_state(load_checkpoint(tmp_path / "agent.pt", kind="dreamer"))
    torch.testing.assert_close(loaded.explore.novelty_total, agent.explore.novelty_total)
    torch.manual_seed(3)
    first = floats(agent.train_step(data))
    torch.manual_seed(3)
    assert floats(loaded.train_step(data)) == first


def test_explore_options_are_checked():
    with pytest.raises(ConfigError, match=r"explore\.disag"):
        tiny_config("dreamerv3", **{"dreamer.explore.disag": "-1"})
    with pytest.raises(ConfigError, match="at least 2"):
        tiny_config("dreamerv3", **{"dreamer.explore.models": "1"})
    with pytest.raises(ConfigError, match=r"explore\.decay"):
        tiny_config("dreamerv3", **{"dreamer.explore.decay": "1"})
