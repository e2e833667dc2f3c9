"""The Dreamer agent: gradient routing, state resets, shapes, presets, determinism, save and load."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dreamworld.algos.dreamer import compiled
from dreamworld.algos.dreamer.agent import Dreamer, _free_nats
from dreamworld.algos.dreamer.loop import DeviceMeans
from dreamworld.config import load_config
from dreamworld.errors import ConfigError
from dreamworld.models.actor_critic import EntropyScale
from dreamworld.models.rssm import RSSM
from dreamworld.nn.functional import sample_onehot
from dreamworld.run.checkpoint import load_checkpoint, save_checkpoint

TINY = {
    "dreamer.world_model.deter": "32",
    "dreamer.world_model.hidden": "32",
    "dreamer.world_model.units": "32",
    "dreamer.world_model.stoch": "4",
    "dreamer.world_model.depth": "4",
    "dreamer.world_model.bins": "31",
    "dreamer.actor.units": "32",
    "dreamer.critic.units": "32",
}
SPACES = {
    "vector": {"vector": gym.spaces.Box(-1, 1, (5,), np.float32)},
    "image": {"image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)},
}
ACTIONS = {"discrete": gym.spaces.Discrete(3), "continuous": gym.spaces.Box(-1, 1, (2,), np.float32)}


def tiny_config(*presets: str, **overrides: str):
    classes = {} if any(p == "dreamerv1" for p in presets) else {"dreamer.world_model.classes": "4"}
    return load_config(list(presets), overrides={**TINY, **classes, **overrides}).dreamer


def fake_batch(
    obs: str, action: str, batch: int = 3, steps: int = 10, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = {
        "reward": rng.normal(size=(batch, steps)).astype(np.float32),
        "is_first": np.zeros((batch, steps), bool),
        "is_last": np.zeros((batch, steps), bool),
        "is_terminal": np.zeros((batch, steps), bool),
    }
    data["is_first"][:, 4] = True
    data["is_last"][:, 3] = True
    data["is_terminal"][0, 3] = True
    if obs == "vector":
        data["vector"] = rng.normal(size=(batch, steps, 5)).astype(np.float32)
    else:
        data["image"] = rng.integers(0, 256, (batch, steps, 16, 16, 3), dtype=np.uint8)
    if action == "discrete":
        data["action"] = rng.integers(0, 3, (batch, steps))
    else:
        data["action"] = rng.uniform(-1, 1, (batch, steps, 2)).astype(np.float32)
    return data


def floats(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """An update's metrics (device tensors) as numbers."""
    return {key: float(value) for key, value in metrics.items()}


def finite(metrics: dict[str, torch.Tensor]) -> bool:
    return all(value.dtype == torch.float32 and bool(torch.isfinite(value)) for value in metrics.values())


def make_agent(obs: str = "vector", action: str = "discrete", *presets: str, **overrides: str) -> Dreamer:
    torch.manual_seed(0)
    config = tiny_config(*(presets or ("dreamerv3",)), **overrides)
    return Dreamer(config, SPACES[obs], ACTIONS[action])


def test_free_nats_per_step_and_on_the_mean():
    kl = torch.tensor([[0.5, 2.0], [3.0, 0.1]])
    assert _free_nats(kl, 1.0, average_first=False).item() == pytest.approx((1 + 2 + 3 + 1) / 4)
    assert _free_nats(kl, 1.0, average_first=True).item() == pytest.approx(5.6 / 4)
    assert _free_nats(kl, 3.0, average_first=True).item() == pytest.approx(3.0)
    kl = kl.clone().requires_grad_(True)
    _free_nats(kl, 1.0, average_first=False).backward()
    assert kl.grad.tolist() == [[0.0, 0.25], [0.25, 0.0]]  # clipped steps get no gradient


def test_kl_terms_route_gradients_to_prior_and_posterior_only():
    """dyn = KL(sg(post) || prior) trains the prior, rep = KL(post || sg(prior)) the posterior."""
    agent = make_agent()
    batch = agent.preprocess(fake_batch("vector", "discrete"))
    rssm = agent.wm.rssm
    post, prior = rssm.observe(agent.wm.encoder(batch), batch["action"], batch["is_first"])
    detach = lambda state: {k: v.detach() for k, v in state.items()}  # noqa: E731
    dyn = rssm.kl(detach(post), prior).mean()
    rep = rssm.kl(post, detach(prior)).mean()
    dyn_post, dyn_prior = torch.autograd.grad(
        dyn, [post["logits"], prior["logits"]], allow_unused=True, retain_graph=True
    )
    rep_post, rep_prior = torch.autograd.grad(
        rep, [post["logits"], prior["logits"]], allow_unused=True, retain_graph=True
    )
    assert dyn_post is None and dyn_prior.abs().sum() > 0
    assert rep_prior is None and rep_post.abs().sum() > 0
    prior_net = list(rssm.prior_net.parameters())
    assert all(g is None for g in torch.autograd.grad(rep, prior_net, allow_unused=True, retain_graph=True))
    assert all(g.abs().sum() > 0 for g in torch.autograd.grad(dyn, prior_net))


def test_straight_through_sample_is_one_hot_with_the_gradient_of_the_probabilities():
    logits = torch.randn(64, 5, requires_grad=True)
    probs = torch.softmax(logits, -1)
    sample = sample_onehot(probs)
    assert torch.all(sample.detach().sum(-1) == 1) and set(sample.detach().unique().tolist()) <= {0.0, 1.0}
    weights = torch.randn(5)
    (sample * weights).sum().backward()
    expected = torch.autograd.grad((torch.softmax(logits, -1) * weights).sum(), logits)[0]
    torch.testing.assert_close(logits.grad, expected)


def test_sample_frequencies_follow_the_probabilities():
    probs = torch.tensor([0.1, 0.6, 0.3]).expand(20_000, 3)
    freq = sample_onehot(probs).mean(0)
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.6, 0.3]), atol=0.015, rtol=0)


@pytest.mark.parametrize(("grad", "needs_graph"), [("reinforce", False), ("dynamics", True), ("mix", True)])
def test_actor_gradient_kind_decides_whether_imagination_keeps_a_graph(grad, needs_graph):
    agent = make_agent("vector", "continuous", **{"dreamer.actor.grad_continuous": grad})
    batch = agent.preprocess(fake_batch("vector", "continuous"))
    _, post, _ = agent.world_model_loss(batch)
    start = {k: v.detach().flatten(0, 1) for k, v in post.items()}
    traj, actions = agent.imagine(start)
    assert traj["deter"].requires_grad == needs_graph
    assert all(p.requires_grad for p in agent.wm.parameters()), "imagine() must restore requires_grad"
    actor_loss, critic_loss, _ = agent.behaviour_losses(
        traj, actions, batch["cont"].flatten(0, 1), batch, post
    )
    # Neither loss may train the world model; the critic loss must not reach the actor either.
    wm_params = list(agent.wm.parameters())
    for loss in (actor_loss, critic_loss):
        grads = torch.autograd.grad(loss, wm_params, allow_unused=True, retain_graph=True)
        assert all(g is None or g.abs().sum() == 0 for g in grads)
    grads = torch.autograd.grad(
        critic_loss, list(agent.actor.parameters()), allow_unused=True, retain_graph=True
    )
    assert all(g is None for g in grads)


def test_dynamics_gradient_flows_through_the_imagined_rewards():
    agent = make_agent("vector", "continuous", **{"dreamer.actor.grad_continuous": "dynamics"})
    torch.nn.init.normal_(agent.wm.reward.out.weight)  # a reward head that depends on the state
    batch = agent.preprocess(fake_batch("vector", "continuous"))
    _, post, _ = agent.world_model_loss(batch)
    traj, actions = agent.imagine({k: v.detach().flatten(0, 1) for k, v in post.items()})
    actor_loss, _, _ = agent.behaviour_losses(traj, actions, batch["cont"].flatten(0, 1), batch, post)
    grads = torch.autograd.grad(actor_loss, list(agent.actor.parameters()), allow_unused=True)
    assert sum(g.abs().sum() for g in grads if g is not None) > 0


def test_rssm_resets_its_state_at_is_first():
    torch.manual_seed(0)
    rssm = RSSM(embed=6, actions=2, deter=8, stoch=3, classes=3, units=8, initial="learned")
    embed, action = torch.randn(2, 7, 6), torch.randn(2, 7, 2)
    is_first = torch.zeros(2, 7, dtype=torch.bool)
    is_first[:, 0] = is_first[:, 4] = True
    torch.manual_seed(1)
    whole, _ = rssm.observe(embed, action, is_first)
    fresh_first = torch.zeros(2, 3, dtype=torch.bool)
    fresh_first[:, 0] = True
    torch.manual_seed(1)
    rssm.observe(embed[:, :4], action[:, :4], is_first[:, :4])  # consume the same random numbers
    tail, _ = rssm.observe(embed[:, 4:], action[:, 4:], fresh_first)
    torch.testing.assert_close(whole["deter"][:, 4:], tail["deter"])
    torch.testing.assert_close(whole["stoch"][:, 4:], tail["stoch"])


def test_observe_skips_the_reset_arithmetic_with_the_same_values_and_gradients():
    """Steps where no sequence (or every sequence) starts an episode take shortcuts in ``observe``;
    stepping with the general per-sequence masking must give the same states and gradients."""
    torch.manual_seed(0)
    rssm = RSSM(embed=6, actions=2, deter=8, stoch=3, classes=3, units=8, initial="learned")
    embed, action = torch.randn(3, 6, 6), torch.randn(3, 6, 2)
    is_first = torch.zeros(3, 6, dtype=torch.bool)
    is_first[:, 0] = is_first[1, 2] = is_first[:, 4] = True  # every, none, some, none, every, none
    params = list(rssm.parameters())

    torch.manual_seed(1)
    post, _ = rssm.observe(embed, action, is_first)
    fast = torch.autograd.grad(post["deter"].sum() + post["logits"].sum(), params, allow_unused=True)

    torch.manual_seed(1)
    prev_action = torch.cat([torch.zeros_like(action[:, :1]), action[:, :-1]], 1)
    embed_part, state, steps = rssm.post_embed(embed), rssm.initial(3), []
    for t in range(6):
        state = rssm.obs_step(state, prev_action[:, t], embed_part[:, t], is_first[:, t], reset="some")
        steps.append(state)
    deter, logits = torch.stack([s["deter"] for s in steps], 1), torch.stack([s["logits"] for s in steps], 1)
    slow = torch.autograd.grad(deter.sum() + logits.sum(), params, allow_unused=True)
    torch.testing.assert_close(post["deter"], deter)
    torch.testing.assert_close(post["stoch"], torch.stack([s["stoch"] for s in steps], 1))
    for a, b in zip(fast, slow, strict=True):
        assert (a is None and (b is None or not b.any())) or torch.allclose(a, b, atol=1e-6)


def test_shapes_over_batch_and_time():
    agent = make_agent("image", "continuous")
    batch = agent.preprocess(fake_batch("image", "continuous", batch=2, steps=6))
    _, post, _ = agent.world_model_loss(batch)
    assert post["deter"].shape == (2, 6, 32) and post["stoch"].shape == (2, 6, 4, 4)
    traj, actions = agent.imagine({k: v.detach().flatten(0, 1) for k, v in post.items()})
    assert traj["deter"].shape == (12, 16, 32) and actions.shape == (12, 16, 2)
    dists = agent.wm.heads(agent.wm.rssm.feat(post))
    assert dists["image"].mode().shape == (2, 6, 16, 16, 3)
    assert dists["reward"].mode().shape == (2, 6) and dists["cont"].mode().shape == (2, 6)


PRESETS = ["dreamerv1", "dreamerv2", "dreamerv3", "dreamerv3_2024"]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("action", ["discrete", "continuous"])
@pytest.mark.parametrize("obs", ["vector", "image"])
def test_every_preset_trains_on_every_kind_of_task(preset, action, obs):
    agent = make_agent(obs, action, preset)
    before = {name: p.detach().clone() for name, p in agent.named_parameters()}
    data = fake_batch(obs, action)
    for _ in range(2):
        metrics = agent.train_step(data)
    assert finite(metrics), metrics
    changed = {name for name, p in agent.named_parameters() if not torch.equal(before[name], p)}
    for part in ("wm.encoder", "wm.rssm", "wm.reward", "actor", "critic.net"):
        assert any(name.startswith(part) for name in changed), f"{part} did not change"
    obs_batch = {key: value[:, 0] for key, value in data.items()}
    actions, state = agent.policy(obs_batch)
    actions, _ = agent.policy(obs_batch, state, mode="mode")
    assert actions.shape == ((3,) if action == "discrete" else (3, 2))


def test_dreamerv2_continuous_control_setting_trains_without_a_continue_head():
    agent = make_agent("vector", "continuous", "dreamerv2", "dreamerv2_dmc")
    config = agent.config
    assert agent.wm.cont is None and agent.actor_grad == "dynamics"
    assert (config.discount, config.world_model.kl_free, config.critic.opt.lr) == (0.99, 1.0, 8e-5)
    assert config.world_model.scales["dyn"] == 0.8 and config.world_model.scales["rep"] == 0.2
    metrics = agent.train_step(fake_batch("vector", "continuous"))
    assert finite(metrics), metrics
    assert "wm/loss_cont" not in metrics


def test_dmc_proprio_cpu_preset_trains_the_actor_through_the_dynamics_with_a_fast_critic():
    full = load_config(["dreamerv3", "dmc_proprio_cpu"])
    assert (full.env.repeat, full.dreamer.train_ratio, full.dreamer.steps) == (2, 384, 50000)
    assert (full.replay.batch, full.replay.length) == (32, 32)
    dreamer = full.dreamer
    assert (dreamer.imagine_starts, dreamer.world_model.units, dreamer.actor.units) == (128, 128, 128)
    assert (dreamer.explore.disag, dreamer.explore.models, dreamer.explore.units) == (0.1, 5, 128)
    assert dreamer.actor.squash_penalty == 0.1
    agent = make_agent("vector", "continuous", "dreamerv3", "dmc_proprio_cpu")
    config = agent.config
    assert agent.actor_grad == "dynamics"
    assert (config.critic.opt.lr, config.actor.opt.lr, config.discount) == (3e-4, 1e-4, 0.99)
    assert (config.actor.dist, config.actor.init_std, config.actor.noise_color) == ("tanh_normal", 1.0, 1.0)
    metrics = agent.train_step(fake_batch("vector", "continuous"))
    assert finite(metrics), metrics


def test_carracing_cpu_preset_learns_by_reinforce_from_small_frames_with_an_entropy_floor():
    full = load_config(["dreamerv3", "carracing_cpu"])
    assert (full.env.size, full.env.repeat, full.env.throttle, full.env.patience) == (32, 4, True, 25)
    actor = full.dreamer.actor
    assert (actor.grad_continuous, actor.dist, actor.init_std) == ("reinforce", "tanh_normal", 1.0)
    assert (actor.entropy_target, actor.squash_penalty, full.dreamer.imagine_starts) == (0.0, 0.1, 128)
    assert full.dreamer.eval_mode == "sample"
    agent = make_agent("image", "continuous", "dreamerv3", "carracing_cpu")
    assert agent.actor_grad == "reinforce"
    metrics = agent.train_step(fake_batch("image", "continuous"))
    assert finite(metrics), metrics


def test_same_seed_gives_the_same_metrics():
    data = fake_batch("vector", "discrete")
    runs = []
    for _ in range(2):
        agent = make_agent()
        torch.manual_seed(5)
        runs.append([floats(agent.train_step(data)) for _ in range(2)])
    assert runs[0] == runs[1]


def test_save_then_load_gives_identical_actions(tmp_path):
    agent = make_agent("image", "continuous")
    data = fake_batch("image", "continuous")
    agent.train_step(data)
    save_checkpoint(tmp_path / "checkpoint.pt", agent.training_state(), kind="dreamer")
    loaded = make_agent("image", "continuous")
    loaded.load_training_state(load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer"))
    obs = {key: value[:, 0] for key, value in data.items()}
    a, _ = agent.policy(obs, mode="mode")
    b, _ = loaded.policy(obs, mode="mode")
    np.testing.assert_array_equal(a, b)
    torch.manual_seed(3)
    first = floats(agent.train_step(data))
    torch.manual_seed(3)
    assert floats(loaded.train_step(data)) == first  # optimiser states came back too


def test_python_api_builds_learns_acts_saves_and_loads(tmp_path):
    overrides = {key: value for key, value in TINY.items()}
    overrides |= {"dreamer.world_model.classes": "4", "replay.batch": "4", "replay.length": "16"}
    overrides |= {"dreamer.prefill": "100", "dreamer.eval_episodes": "1", "env.parallel": "serial"}
    overrides |= {"dreamer.train_ratio": "32", "log.progress": "false"}
    agent = Dreamer.from_preset(
        "dreamerv3", env="gym/CartPole-v1", overrides=overrides, logdir=str(tmp_path / "run")
    )
    result = agent.learn(steps=200)
    assert result.updates > 0 and (tmp_path / "run" / "checkpoint.pt").exists()
    obs = {"vector": np.zeros((2, 4), np.float32), "is_first": np.ones(2, bool)}
    actions, state = agent.act(obs, deterministic=True)
    assert actions.shape == (2,) and state is not None
    agent.save(tmp_path / "agent.pt")
    for path in (tmp_path / "agent.pt", tmp_path / "run" / "checkpoint.pt"):
        loaded = Dreamer.load(path, device="cpu")
        np.testing.assert_array_equal(loaded.act(obs, deterministic=True)[0], actions)


def test_a_checkpoint_of_another_size_is_a_clear_error(tmp_path):
    from dreamworld.errors import CheckpointError

    agent = make_agent()
    save_checkpoint(tmp_path / "c.pt", agent.training_state(), kind="dreamer")
    other = make_agent(**{"dreamer.world_model.deter": "48"})
    with pytest.raises(CheckpointError, match="does not fit this agent"):
        other.load_training_state(load_checkpoint(tmp_path / "c.pt", kind="dreamer"))


def test_sparse_features_give_the_same_heads_and_imagination_as_dense_ones():
    """The index form of one-hot latents is a faster rewrite: it must compute the same numbers."""
    agent = make_agent("vector", "discrete")
    batch = agent.preprocess(fake_batch("vector", "discrete"))
    _, post, _ = agent.world_model_loss(batch)
    start = {k: v.detach().flatten(0, 1) for k, v in post.items()}
    rssm = agent.wm.rssm
    dense, sparse = rssm.feat(start), rssm.sparse_feat(start)
    torch.testing.assert_close(agent.critic(sparse).mode(), agent.critic(dense).mode())
    torch.testing.assert_close(agent.actor(sparse).probs, agent.actor(dense).probs)
    torch.manual_seed(7)
    with torch.no_grad():
        fast, fast_actions = rssm.imagine(agent.actor, start, 5)
    torch.manual_seed(7)
    slow, slow_actions = rssm.imagine(agent.actor, start, 5)
    assert "index" in fast and "stoch" in slow
    torch.testing.assert_close(fast["deter"], slow["deter"].detach())
    torch.testing.assert_close(fast["index"], rssm.latent.index(slow["stoch"]))
    torch.testing.assert_close(fast_actions, slow_actions.detach())


def test_open_loop_video_shows_context_then_45_imagined_frames():
    agent = make_agent("image", "discrete")
    video = agent.open_loop(fake_batch("image", "discrete", batch=3, steps=60))
    assert video.shape == (50, 3 * 16, 3 * 16, 3) and video.dtype == np.uint8
    assert make_agent("vector", "discrete").open_loop(fake_batch("vector", "discrete")) is None


def test_bfloat16_autocast_trains_with_finite_losses():
    agent = make_agent("image", "discrete", "dreamerv3", **{"dreamer.precision": "bfloat16"})
    metrics = agent.train_step(fake_batch("image", "discrete"))
    assert finite(metrics), metrics


def test_vector_norm_standardises_with_the_first_batch_and_is_saved(tmp_path):
    """Offset coordinates that vary little reach the model unit-sized; the statistics stay fixed."""
    agent = make_agent("vector", "continuous", "dreamerv3", **{"dreamer.world_model.vector_norm": "true"})
    data = fake_batch("vector", "continuous")
    data["vector"] = 1.3 + 0.1 * data["vector"]  # like an arm's coordinates in metres
    obs = {key: value[:, 0] for key, value in data.items()}
    assert not agent.vector_norm.fitted
    agent.train_step(data)
    mean, std = data["vector"].reshape(-1, 5).mean(0), data["vector"].reshape(-1, 5).std(0)
    np.testing.assert_allclose(agent.vector_norm.mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(agent.vector_norm.std.numpy(), std, rtol=1e-4)
    batch = agent.preprocess(data)
    assert batch["vector"].mean().abs() < 1e-4 and (batch["vector"].std() - 1).abs() < 0.05
    later = dict(data, vector=data["vector"] + 5.0)
    agent.train_step(later)  # fitted once: later batches do not move the statistics
    np.testing.assert_allclose(agent.vector_norm.mean.numpy(), mean, rtol=1e-5)
    save_checkpoint(tmp_path / "checkpoint.pt", agent.training_state(), kind="dreamer")
    loaded = make_agent("vector", "continuous", "dreamerv3", **{"dreamer.world_model.vector_norm": "true"})
    loaded.load_training_state(load_checkpoint(tmp_path / "checkpoint.pt", kind="dreamer"))
    assert loaded.vector_norm.fitted
    np.testing.assert_array_equal(agent.policy(obs, mode="mode")[0], loaded.policy(obs, mode="mode")[0])
    plain = make_agent("vector", "continuous")
    assert plain.vector_norm is None and "vector_norm.mean" not in plain.state_dict()


class SyncCounter(TorchDispatchMode):
    """Counts the operations that read a device value back to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.item.default):
            self.syncs.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("action", ["discrete", "continuous"])
@pytest.mark.parametrize("obs", ["vector", "image"])
def test_an_update_never_reads_a_value_back_to_the_host(preset, action, obs):
    """A GPU update that waits for the host at every .item() spends its time idle (issue 18)."""
    agent = make_agent(obs, action, preset, **{"dreamer.world_model.vector_norm": str(obs == "vector")})
    data = fake_batch(obs, action)
    for _ in range(2):  # the first update also fits vector_norm
        with SyncCounter() as counter:
            metrics = agent.train_step(data)
        assert counter.syncs == []
    assert all(isinstance(value, torch.Tensor) and value.shape == () for value in metrics.values())


def compiled_against_eager(preset: str, obs: str, action: str, **overrides: str) -> None:
    """One update of a compiled agent and of an eager one from the same weights and random numbers:
    the same losses, parameters and optimiser states."""
    eager = make_agent(obs, action, preset, **{"dreamer.compile": "none", **overrides})
    compiled = make_agent(obs, action, preset, **{"dreamer.compile": "compile", **overrides})
    compiled.load_state_dict(eager.state_dict())
    data = fake_batch(obs, action)
    torch.manual_seed(1)
    expected = floats(eager.train_step(data))
    torch.manual_seed(1)
    got = floats(compiled.train_step(data))
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-5)
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        # Adam's first step is lr * g / |g|: a gradient near 0 (an ensemble member's norm shift, from
        # sparse features in one and dense in the other) moves by up to 1% of lr in either run.
        atol = 1e-5 if name.startswith("explore.") else 1e-6
        torch.testing.assert_close(a, b, rtol=1e-4, atol=atol, msg=name)
    for name, opt in eager.opts.items():
        torch.testing.assert_close(opt.moment2, compiled.opts[name].moment2, rtol=1e-4, atol=1e-8)
        assert float(opt.count) == float(compiled.opts[name].count) == 1
    torch.manual_seed(2)
    assert finite(compiled.train_step(fake_batch(obs, action, seed=1)))  # no recompilation error


@pytest.mark.parametrize(
    ("preset", "obs", "action", "overrides"),
    [
        ("dreamerv1", "vector", "discrete", {}),
        ("dreamerv2", "vector", "discrete", {}),
        ("dreamerv3", "vector", "continuous", {}),
        ("dreamerv3", "vector", "continuous", {"dreamer.imagine_starts": "7"}),  # a random subset
        ("dreamerv3", "vector", "continuous", {"dreamer.actor.entropy_target": "0.0"}),  # a buffer
        ("dreamerv3", "vector", "continuous", {"dreamer.explore.disag": "0.1"}),  # an ensemble
        ("dreamerv3", "vector", "continuous", {"dreamer.actor.squash_penalty": "0.1"}),
    ],
)
def test_compiled_update_traces_into_whole_graphs_and_equals_the_eager_one(
    preset, obs, action, overrides, monkeypatch
):
    """fullgraph=True fails on any graph break; the AOT-autograd backend checks the traced graphs
    without code generation. The Inductor runs are the slow tests below, with DreamerV1's continuous
    actor, whose one-sample entropy estimate draws noise in an order the traced graph does not keep."""
    options = compiled.compile_options
    monkeypatch.setattr(compiled, "compile_options", lambda mode: {**options(mode), "backend": "aot_eager"})
    compiled_against_eager(preset, obs, action, **overrides)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "obs", "action"),
    [
        ("dreamerv1", "image", "continuous"),
        ("dreamerv2", "vector", "discrete"),
        ("dreamerv3", "image", "discrete"),
    ],
)
def test_inductor_compiled_update_equals_the_eager_one(preset, obs, action):
    import torch._inductor.config

    with torch._inductor.config.patch(fallback_random=True):  # eager kernels' random numbers
        compiled_against_eager(preset, obs, action)


def test_warmup_compiles_and_puts_everything_back(monkeypatch):
    options = compiled.compile_options
    monkeypatch.setattr(compiled, "compile_options", lambda mode: {**options(mode), "backend": "eager"})
    agent = make_agent("vector", "discrete", "dreamerv3", **{"dreamer.compile": "compile"})
    before = {key: value.clone() for key, value in agent.state_dict().items()}
    counts = {name: float(opt.count) for name, opt in agent.opts.items()}
    torch.manual_seed(4)
    expected = torch.rand(3)
    torch.manual_seed(4)
    assert agent.warmup(fake_batch("vector", "discrete"), steps=2) > 0
    assert torch.equal(torch.rand(3), expected)  # the random stream continues as if nothing ran
    for key, value in agent.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert {name: float(opt.count) for name, opt in agent.opts.items()} == counts
    assert make_agent().warmup(fake_batch("vector", "discrete")) == 0.0  # eager: nothing to compile


def test_compile_auto_is_eager_on_the_cpu():
    assert make_agent().compile_mode == "none" and make_agent().sparse
    assert compiled.compile_mode("auto", torch.device("cuda")) == "cudagraphs"
    with pytest.raises(ConfigError, match=r"dreamer\.compile"):
        tiny_config("dreamerv3", **{"dreamer.compile": "fast"})


def test_bfloat16_runs_matmuls_in_bfloat16_and_keeps_losses_distributions_and_state_in_float32():
    agent = make_agent("image", "continuous", "dreamerv3", **{"dreamer.precision": "bfloat16"})
    seen: dict[str, torch.dtype] = {}
    agent.wm.reward.mlp.register_forward_hook(lambda module, args, out: seen.update(mlp=out.dtype))
    data = fake_batch("image", "continuous")
    batch = agent.preprocess(data)
    with agent._autocast():
        loss, post, metrics = agent.world_model_loss(batch)
        dists = agent.wm.heads(agent.wm.rssm.feat(post))
        traj, actions = agent.imagine({key: value.detach().flatten(0, 1) for key, value in post.items()})
        policy = agent.actor(agent.wm.rssm.sparse_feat(traj))
    assert seen["mlp"] == torch.bfloat16  # the matmuls did run in bfloat16
    assert loss.dtype == torch.float32 and finite(metrics)
    assert all(post[key].dtype == torch.float32 for key in ("deter", "stoch", "logits"))
    assert traj["deter"].dtype == torch.float32 and actions.dtype == torch.float32
    assert dists["image"].mode().dtype == dists["reward"].logits.dtype == torch.float32
    assert dists["reward"].mode().dtype == torch.float32 and policy.mean.dtype == torch.float32
    assert finite(agent.train_step(data))
    assert all(m.dtype == torch.float32 for opt in agent.opts.values() for m in opt.moment1)


def test_the_actors_returns_reach_the_states_through_the_critic_but_not_its_weights():
    agent = make_agent("vector", "continuous", "dreamerv3", **{"dreamer.actor.grad_continuous": "dynamics"})
    torch.nn.init.normal_(agent.critic.net.out.weight)  # zero at first: no gradient to see
    feat = torch.randn(4, agent.wm.rssm.feat_size, requires_grad=True)
    agent.critic.value_through(feat).sum().backward()
    assert feat.grad is not None and feat.grad.abs().sum() > 0
    assert all(p.grad is None for p in agent.critic.parameters())
    torch.testing.assert_close(agent.critic.value_through(feat), agent.critic(feat).mode())


def test_device_means_average_each_metric_over_updates():
    means = DeviceMeans()
    means.add({"a": torch.tensor(1.0), "b": torch.tensor(4.0)})
    means.add({"a": torch.tensor(3.0), "b": torch.tensor(0.0)})
    means.add({"c": torch.tensor(5.0)})
    assert means.read() == {"a": 2.0, "b": 2.0, "c": 5.0}
    assert means.read() == {}


def test_a_compiler_that_fails_leaves_an_eager_agent_that_trains(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C compiler here")

    options = compiled.compile_options
    monkeypatch.setattr(compiled, "compile_options", lambda mode: {**options(mode), "backend": broken})
    agent = make_agent("vector", "discrete", "dreamerv3", **{"dreamer.compile": "compile"})
    before = {key: value.clone() for key, value in agent.state_dict().items()}
    with pytest.warns(UserWarning, match="dreamer.compile compile failed .*no C compiler here"):
        agent.warmup(fake_batch("vector", "discrete"))
    assert agent.compile_mode == "none" and agent.sparse
    assert all(torch.equal(value, before[key]) for key, value in agent.state_dict().items())
    assert finite(agent.train_step(fake_batch("vector", "discrete")))


def test_imagination_starts_from_a_random_subset_of_the_replayed_states(monkeypatch):
    """``imagine_starts`` imagines from that many posterior states, drawn anew each update and
    paired with their own continuation flags; the update still trains every part."""
    agent = make_agent("vector", "continuous", **{"dreamer.imagine_starts": "7"})
    data = fake_batch("vector", "continuous")  # 3 x 10 replayed states
    data["is_terminal"][:] = False
    data["is_terminal"][:, 5:] = True  # a third of the starts have continuation 0
    posts, picks = [], []
    world_model_loss, losses = agent._world_model_loss, agent.behaviour_losses

    def spy_world_model(batch, resets):
        loss, post, metrics = world_model_loss(batch, resets)
        posts.append((post["deter"].detach().flatten(0, 1).clone(), batch["cont"].flatten(0, 1).clone()))
        return loss, post, metrics

    def spy_losses(traj, actions, start_cont, batch, post):
        picks.append((traj["deter"][:, 0].detach().clone(), start_cont.clone()))
        return losses(traj, actions, start_cont, batch, post)

    monkeypatch.setattr(agent, "_world_model_loss", spy_world_model)
    monkeypatch.setattr(agent, "behaviour_losses", spy_losses)
    before = {name: param.detach().clone() for name, param in agent.named_parameters()}
    for _ in range(3):
        assert finite(agent.train_step(data))
    chosen = []
    for (full, full_cont), (start, start_cont) in zip(posts, picks, strict=True):
        index = [int((full == row).all(-1).nonzero()[0]) for row in start]  # each a replayed state
        assert len(index) == len(set(index)) == 7  # without repeats
        torch.testing.assert_close(start_cont, full_cont[index])  # with its own continuation
        chosen.append(index)
    assert len({tuple(index) for index in chosen}) > 1  # drawn anew each update
    for name, param in agent.named_parameters():
        if "slow" not in name:
            assert not torch.equal(param, before[name]), name
    full = make_agent("vector", "continuous", **{"dreamer.imagine_starts": "30"})
    imagine = full._imagine
    monkeypatch.setattr(full, "_imagine", lambda start: picks.append(start["deter"]) or imagine(start))
    full.train_step(data)
    assert len(picks[-1]) == 30  # as many as the batch holds: every one


def test_imagine_starts_is_checked():
    with pytest.raises(ConfigError, match="imagine_starts"):
        tiny_config("dreamerv3", **{"dreamer.imagine_starts": "-1"})
    with pytest.raises(ConfigError, match="replay_scale"):
        tiny_config("dreamerv3_2024", **{"dreamer.imagine_starts": "8"})


def test_entropy_scale_moves_by_the_sign_of_the_error_within_its_bounds():
    """Golden values: the scale grows by exp(rate) per update below the target and shrinks above it,
    per action dimension, clamped to its bounds; a non-finite entropy leaves it as it was."""
    scale = EntropyScale(1e-3, target=0.5, dims=2, rate=0.1, low=1e-4, high=2e-3)
    below = torch.full((4, 3), 0.6)  # 0.3 per dimension
    scale.update(below)
    assert float(scale.value) == pytest.approx(1e-3 * math.exp(0.1))
    for _ in range(20):
        scale.update(below)
    assert float(scale.value) == pytest.approx(2e-3)  # the ceiling
    scale.update(torch.full((4, 3), 1.2))  # 0.6 per dimension: above
    assert float(scale.value) == pytest.approx(2e-3 * math.exp(-0.1))
    before = scale.value.clone()
    scale.update(torch.full((4, 3), float("nan")))
    assert torch.equal(scale.value, before)


@pytest.mark.parametrize("action", ["discrete", "continuous"])
def test_entropy_target_adapts_the_scale_in_the_update_and_is_saved(action, tmp_path):
    """With ``entropy_target`` the actor's loss uses the adapted scale, logged as
    ``actor/entropy_scale``; the scale is part of the agent's state and survives save -> load; the
    update still reads nothing back to the host."""
    overrides = {"dreamer.actor.entropy_target": "10.0", "dreamer.actor.entropy_rate": "0.5"}
    agent = make_agent("vector", action, **overrides)
    data = fake_batch("vector", action)
    assert agent.entropy_scale is not None
    first = floats(agent.train_step(data))  # (the first update also fits the vector statistics)
    # 10 nats per dimension is above any entropy here: the scale grows at each update.
    assert first["actor/entropy_scale"] == pytest.approx(3e-4 * math.exp(0.5))
    with SyncCounter() as counter:
        metrics = agent.train_step(data)
    assert counter.syncs == []
    second = floats(metrics)
    assert second["actor/entropy_scale"] == pytest.approx(3e-4 * math.exp(1.0))
    path = tmp_path / "agent.pt"
    save_checkpoint(path, agent.training_state(), kind="dreamer")
    other = make_agent("vector", action, **overrides)
    other.load_training_state(load_checkpoint(path, kind="dreamer"))
    assert float(other.entropy_scale.value) == pytest.approx(3e-4 * math.exp(1.0))
    assert "actor/entropy_scale" not in floats(make_agent("vector", action).train_step(data))
    # A target below the entropy keeps the fixed bonus: by default the scale only rises above it.
    low = make_agent("vector", action, **{"dreamer.actor.entropy_target": "-100.0"})
    for _ in range(2):
        assert floats(low.train_step(data))["actor/entropy_scale"] == pytest.approx(3e-4)


def test_entropy_target_gradient_is_the_adapted_scale_times_the_fixed_ones():
    """The same update with a fixed scale s and with an adaptive one that reaches s: the entropy term
    of the actor's gradient differs only by that scale (checked through the loss with zero returns)."""
    grads = []
    for overrides in (
        {"dreamer.actor.entropy": "0.02"},
        {
            "dreamer.actor.entropy": "0.01",
            "dreamer.actor.entropy_target": "100.0",
            "dreamer.actor.entropy_rate": str(math.log(2.0)),
        },
    ):
        agent = make_agent("vector", "discrete", **overrides)
        feat = torch.randn(6, 4, agent.wm.rssm.feat_size, generator=torch.Generator().manual_seed(0))
        actions = torch.nn.functional.one_hot(torch.arange(24).reshape(6, 4) % 3, 3).float()
        zeros = torch.zeros(6, 3)
        loss, _ = agent.actor_loss(feat, actions, zeros, torch.zeros(6, 4), torch.ones(6, 3))
        grads.append(torch.autograd.grad(loss, list(agent.actor.parameters())))
    for fixed, adapted in zip(*grads, strict=True):
        torch.testing.assert_close(fixed, adapted)


@pytest.mark.parametrize("dist", ["tanh_normal", "bounded_normal"])
def test_squash_penalty_pushes_saturated_means_back_and_leaves_the_rest(dist):
    """Golden values: with every pre-tanh mean at x, the penalty adds weight x (|x| - 2)^2 per action
    dimension to the actor's loss and a gradient toward zero; within +-2 it adds nothing. The share of
    saturated means is logged as ``actor/saturated`` with or without the penalty."""
    feat = torch.randn(6, 4, 1, generator=torch.Generator().manual_seed(0))
    actions = torch.zeros(6, 4, 2)
    zeros, ones = torch.zeros(6, 3), torch.ones(6, 3)

    def loss_and_saturated(bias: float, weight: str) -> tuple[float, float, torch.Tensor]:
        agent = make_agent(
            "vector",
            "continuous",
            **{
                "dreamer.actor.dist": dist,
                "dreamer.actor.squash_penalty": weight,
                "dreamer.actor.entropy": "0",
            },
        )
        out = agent.actor.head.out
        with torch.no_grad():
            out.weight.zero_()
            out.bias.zero_()
            out.bias[:2] = bias
        inputs = feat.expand(6, 4, agent.wm.rssm.feat_size)
        loss, metrics = agent.actor_loss(inputs, actions, zeros, torch.zeros(6, 4), ones)
        (grad,) = torch.autograd.grad(loss, [out.bias])
        return float(loss.detach()), float(metrics["actor/saturated"]), grad[:2]

    # tanh_normal bounds its mean at 5 tanh(x / 5); bounded_normal's pre-tanh mean is x itself.
    x = 5 * math.tanh(3.0 / 5) if dist == "tanh_normal" else 3.0
    plain, saturated, plain_grad = loss_and_saturated(3.0, "0")
    penalised, _, grad = loss_and_saturated(3.0, "0.5")
    assert saturated == 1.0
    assert penalised - plain == pytest.approx(0.5 * 2 * (x - 2) ** 2, rel=1e-5)
    assert (grad - plain_grad > 0).all()  # minimising the loss lowers the mean
    inside, saturated, inside_grad = loss_and_saturated(1.5, "0.5")
    assert saturated == 0.0
    unpenalised, _, unpenalised_grad = loss_and_saturated(1.5, "0")
    assert inside == pytest.approx(unpenalised)
    torch.testing.assert_close(inside_grad, unpenalised_grad)
    with pytest.raises(ConfigError, match="squash_penalty"):
        tiny_config("dreamerv3", **{"dreamer.actor.squash_penalty": "-1"})


def test_entropy_target_options_are_checked():
    with pytest.raises(ConfigError, match="entropy_rate"):
        tiny_config("dreamerv3", **{"dreamer.actor.entropy_target": "0", "dreamer.actor.entropy_rate": "0"})
    with pytest.raises(ConfigError, match="entropy_min"):
        tiny_config(
            "dreamerv3",
            **{
                "dreamer.actor.entropy_target": "0",
                "dreamer.actor.entropy_min": "2",
                "dreamer.actor.entropy_max": "1",
            },
        )
    assert tiny_config("dreamerv3", **{"dreamer.actor.entropy_target": "-0.5"}).actor.entropy_target == -0.5
