"""World Models: mixture math, the three models, CMA-ES, dreams, stage resumption, the whole pipeline.

One tiny experiment on real CarRacing rollouts (4 rollouts of 40 steps) is built once per module by the
command line; tests that change it work on copies.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil

import gymnasium
import numpy as np
import pytest
import torch

from dreamworld.algos.world_models import vae_stage
from dreamworld.algos.world_models.backends import LocalBackend, RayBackend
from dreamworld.algos.world_models.controller_stage import (
    _CMAUnpickler,
    _Evolution,
    build_agent,
    initial_latents,
)
from dreamworld.algos.world_models.mdnrnn_stage import Latents, sample_windows, windows_per_epoch
from dreamworld.algos.world_models.rollouts import Agent, dream_rollouts, real_rollouts
from dreamworld.cli import main
from dreamworld.config import load_config
from dreamworld.errors import CheckpointError, DreamworldError
from dreamworld.models.controller import LinearController
from dreamworld.models.mdn_rnn import MDNRNN
from dreamworld.models.vae import VAE
from dreamworld.nn.functional import mixture_log_prob, mixture_sample
from dreamworld.run.checkpoint import load_checkpoint

TINY = {
    "--log.progress": "false",
    "--worldmodels.vae.depth": "8",
    "--worldmodels.vae.batch": "16",
    "--worldmodels.vae.epochs": "1",
    "--worldmodels.mdnrnn.hidden": "16",
    "--worldmodels.mdnrnn.length": "8",
    "--worldmodels.mdnrnn.batch": "4",
    "--worldmodels.mdnrnn.epochs": "1",
    "--worldmodels.controller.time_limit": "25",
    "--worldmodels.controller.eval_every": "1",
    "--worldmodels.controller.eval_rollouts": "2",
    "--worldmodels.controller.workers": "2",
}


TINY_CONTROLLER = [
    "worldmodels",
    "train-controller",
    "--pop-size",
    "4",
    "--n-samples",
    "1",
    "--generations",
    "1",
]
"""One generation of a population of 4, one rollout each."""


def flags(**extra: str) -> list[str]:
    merged = {**TINY, **{f"--{key.replace('__', '.')}": value for key, value in extra.items()}}
    return [item for pair in merged.items() for item in pair]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A collected, VAE- and MDN-RNN-trained tiny CarRacing experiment."""
    logdir = tmp_path_factory.mktemp("wm") / "exp"
    base = ["worldmodels", "collect", "--logdir", str(logdir), "--rollouts", "4", "--workers", "2"]
    assert main([*base, "--env.time_limit", "40", *flags()]) == 0
    assert main(["worldmodels", "train-vae", "--logdir", str(logdir), *flags()]) == 0
    assert main(["worldmodels", "train-mdnrnn", "--logdir", str(logdir), *flags()]) == 0
    return logdir


@pytest.fixture
def copy(experiment, tmp_path):
    target = tmp_path / "exp"
    shutil.copytree(experiment, target)
    return target


def test_mixture_log_prob_equals_brute_force():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, generator=gen)
    logits, mean, logstd = (torch.randn(6, 5, generator=gen) for _ in range(3))
    weights = torch.softmax(logits, -1)
    brute = []
    for i in range(6):
        density = 0.0
        for k in range(5):
            std = math.exp(logstd[i, k])
            density += (
                weights[i, k]
                * math.exp(-0.5 * ((x[i] - mean[i, k]) / std) ** 2)
                / (std * math.sqrt(2 * math.pi))
            )
        brute.append(math.log(density))
    torch.testing.assert_close(
        mixture_log_prob(x, logits, mean, logstd), torch.tensor(brute), rtol=1e-5, atol=1e-5
    )


def test_mixture_sample_at_low_temperature_is_the_mode_and_matches_weights_at_one():
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    mean = torch.tensor([[-3.0, 1.5, 4.0]])
    logstd = torch.zeros(1, 3)
    gen = torch.Generator().manual_seed(0)
    n = 20_000
    uniform, normal = torch.rand(n, generator=gen), torch.randn(n, generator=gen)
    cold = mixture_sample(logits.expand(n, 3), mean.expand(n, 3), logstd.expand(n, 3), 1e-4, uniform, normal)
    assert (cold - 1.5).abs().max() < 0.05
    warm = mixture_sample(logits.expand(n, 3), mean.expand(n, 3), logstd.expand(n, 3), 1.0, uniform, normal)
    assert abs(warm.mean().item() - (torch.softmax(logits, -1) * mean).sum().item()) < 0.05


def test_vae_and_mdnrnn_shapes():
    vae = VAE(64, 3, z=32, depth=8)
    mean, logstd = vae.encode(torch.zeros(5, 64, 64, 3, dtype=torch.uint8))
    assert mean.shape == logstd.shape == (5, 32) and vae.decode(mean).shape == (5, 64, 64, 3)
    model = MDNRNN(z=32, actions=3, hidden=24, mixtures=5)
    prediction, state = model(torch.zeros(2, 7, 32), torch.zeros(2, 7, 3))
    assert prediction.logits.shape == (2, 7, 32, 5) and prediction.reward.shape == (2, 7)
    step, _ = model.step(torch.zeros(2, 32), torch.zeros(2, 3), state)
    assert step.mean.shape == (2, 32, 5) and state[0].shape == (1, 2, 24)


def test_mdnrnn_step_equals_the_sequence_run():
    torch.manual_seed(0)
    model = MDNRNN(z=4, actions=2, hidden=8, mixtures=3)
    z, action = torch.randn(3, 6, 4), torch.randn(3, 6, 2)
    whole, _ = model(z, action)
    state = model.initial(3)
    for t in range(6):
        step, state = model.step(z[:, t], action[:, t], state)
        torch.testing.assert_close(step.mean, whole.mean[:, t])


def test_vae_loss_falls_on_real_carracing_frames(experiment):
    from dreamworld.algos.world_models.data import load_frames, split_rollouts

    frames = load_frames(split_rollouts(experiment, 0.0)[0], 200)
    torch.manual_seed(0)
    vae = VAE(64, 3, z=8, depth=8)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    batch = torch.as_tensor(frames[:32])
    losses = []
    for _ in range(30):
        loss, _ = vae.loss(batch, kl_free=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:3])


def test_mdnrnn_windows_cover_every_transition_equally_including_deaths():
    frames = [3, 10, 50, 7]  # some episodes shorter than a window
    offsets = np.concatenate([[0], np.cumsum(frames)])
    total = offsets[-1]
    terminal = np.zeros(total, np.float32)
    terminal[offsets[1:] - 1] = 1.0  # every episode ends in a death
    latents = Latents(
        mean=np.arange(total, dtype=np.float32)[:, None],
        logstd=np.zeros((total, 1), np.float32),
        action=np.zeros((total, 1), np.float32),
        reward=np.zeros(total, np.float32),
        is_terminal=terminal,
        offsets=offsets,
        holdout=0,
    )
    windows = sample_windows(latents, latents.episodes(False), 40_000, 8, np.random.default_rng(0))
    step, target, mask = windows["mean"][..., 0], windows["next_mean"][..., 0], windows["mask"] > 0
    assert np.all(target[mask] == step[mask] + 1)
    episode = np.searchsorted(offsets, step, side="right")
    assert np.all(episode[mask] == np.searchsorted(offsets, target[mask], side="right"))  # never across
    assert np.all(np.diff(step, axis=1)[mask[:, 1:]] == 1) and np.all(mask[:, 0])
    counts = np.bincount(target[mask].astype(np.int64), minlength=total)[
        np.setdiff1d(np.arange(total), offsets)
    ]
    assert counts.min() > 0.9 * counts.mean() and counts.max() < 1.1 * counts.mean()
    deaths = windows["done"][mask].mean()
    assert deaths == pytest.approx(len(frames) / (total - len(frames)), rel=0.1)
    assert windows_per_epoch(latents, latents.episodes(False), 8) * 8 * mask.mean() == pytest.approx(
        total - len(frames), rel=0.05
    )


def test_done_weight_scales_only_the_ending_steps():
    model = MDNRNN(z=2, actions=1, hidden=4, mixtures=1)
    weighted = MDNRNN(z=2, actions=1, hidden=4, mixtures=1, done_weight=10.0)
    weighted.load_state_dict(model.state_dict())
    z, action = torch.randn(1, 3, 2), torch.zeros(1, 3, 1)
    done, mask = torch.tensor([[0.0, 0.0, 1.0]]), torch.ones(1, 3)
    scales = {"gmm": 0.0, "reward": 0.0, "done": 1.0}
    plain = model.loss(z, action, z, torch.zeros(1, 3), done, mask, scales)[1]["done"]
    heavy = weighted.loss(z, action, z, torch.zeros(1, 3), done, mask, scales)[1]["done"]
    prediction, _ = model(z, action)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(prediction.done, done, reduction="none")[0]
    torch.testing.assert_close(plain, bce.mean())
    torch.testing.assert_close(heavy, (bce[0] + bce[1] + 10 * bce[2]) / 3)


def test_done_probability_undoes_the_done_weight():
    """A done head fitted with ends weighted w has its odds multiplied by w; the calibrated
    probability recovers the true frequency of episode ends."""
    torch.manual_seed(0)
    weight, frequency = 10.0, 0.05
    model = MDNRNN(z=2, actions=1, hidden=4, mixtures=1, done_weight=weight)
    # 2,000 one-step sequences from the same input, 5% of them ending: a single logit is fitted.
    z, action = torch.zeros(2000, 1, 2), torch.zeros(2000, 1, 1)
    done = (torch.arange(2000) < 100).float()[:, None]
    scales = {"gmm": 0.0, "reward": 0.0, "done": 1.0}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        loss, _ = model.loss(z, action, z, torch.zeros(2000, 1), done, torch.ones(2000, 1), scales)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        prediction, _ = model(z[:1], action[:1])
        raw = torch.sigmoid(prediction.done).item()
        calibrated = model.done_probability(prediction).item()
    odds = weight * frequency / (1 - frequency)
    assert raw == pytest.approx(odds / (1 + odds), abs=0.01)  # 0.345: the weighted optimum
    assert calibrated == pytest.approx(frequency, abs=0.005)


def test_dreams_end_on_the_calibrated_done_probability():
    torch.manual_seed(1)
    weighted = MDNRNN(z=4, actions=2, hidden=8, mixtures=3, done_weight=10.0)
    with torch.no_grad():
        weighted.head.weight[-1] *= 8.0
    plain = MDNRNN(z=4, actions=2, hidden=8, mixtures=3)
    plain.load_state_dict(weighted.state_dict())
    with torch.no_grad():
        plain.head.bias[-1] -= math.log(10.0)  # the same calibrated probability, without a weight
    controller = LinearController(inp=12, actions=2)
    population = torch.randn(3, controller.size) * 0.5
    jobs, z0, seeds = np.array([0, 1, 2, 0, 1, 2]), torch.randn(6, 4), np.arange(6)
    for done in ("threshold", "sample"):
        returns = [
            dream_rollouts(
                Agent(VAE(16, 3, z=4, depth=4), m, controller, True),
                population,
                jobs,
                z0,
                seeds,
                40,
                1.0,
                "survival",
                done,
            )
            for m in (weighted, plain)
        ]
        np.testing.assert_array_equal(returns[0], returns[1])
    uncalibrated = MDNRNN(z=4, actions=2, hidden=8, mixtures=3)
    uncalibrated.load_state_dict(weighted.state_dict())  # the raw logit: dreams end sooner
    agent = Agent(VAE(16, 3, z=4, depth=4), uncalibrated, controller, True)
    raw = dream_rollouts(agent, population, jobs, z0, seeds, 40, 1.0, "survival", "sample")
    assert raw.sum() < returns[0].sum()


def test_controller_flatten_unflatten_and_batched_members():
    controller = LinearController(inp=5, actions=3)
    assert controller.size == 18
    params = torch.randn(4, 18)
    weight, bias = controller.unflatten(params)
    assert torch.equal(controller.flatten(weight, bias), params)
    x = torch.randn(6, 5)
    member = torch.tensor([0, 3, 1, 1, 2, 0])
    out = controller.act(params, x, member)
    for i in range(6):
        expected = torch.tanh(x[i] @ weight[member[i]] + bias[member[i]])
        torch.testing.assert_close(out[i], expected)
    discrete = LinearController(inp=5, actions=3, discrete=True)
    assert discrete.act(params, x, member).dtype == torch.int64


def test_batched_dream_equals_rollouts_run_one_by_one():
    torch.manual_seed(0)
    mdnrnn = MDNRNN(z=4, actions=2, hidden=8, mixtures=3)
    with (
        torch.no_grad()
    ):  # a done logit that crosses 0 depending on the state: rollouts end at different steps
        mdnrnn.head.weight[-1] *= 8.0
        mdnrnn.head.bias[-1] = 0.3
    controller = LinearController(inp=12, actions=2)
    agent = Agent(VAE(16, 3, z=4, depth=4), mdnrnn, controller, memory=True)
    population = torch.randn(3, controller.size) * 0.5
    jobs = np.array([0, 1, 2, 2, 1])
    z0 = torch.randn(5, 4)
    seeds = np.arange(5) + 100
    for done in ("threshold", "sample"):
        together = dream_rollouts(agent, population, jobs, z0, seeds, 30, 1.15, "survival", done)
        alone = [
            dream_rollouts(
                agent,
                population,
                jobs[i : i + 1],
                z0[i : i + 1],
                seeds[i : i + 1],
                30,
                1.15,
                "survival",
                done,
            )[0]
            for i in range(5)
        ]
        np.testing.assert_allclose(together, alone, rtol=1e-6)
        assert len(set(together.tolist())) > 1, f"all rollouts took as long ({together}): nothing was tested"
    model = dream_rollouts(agent, population, jobs, z0, seeds, 30, 1.15, "model")
    assert model.shape == (5,) and np.isfinite(model).all()


def test_dreams_start_from_sampled_posteriors_of_real_first_frames(copy):
    cache = copy / "mdnrnn" / "latents.npz"
    with np.load(cache) as data:
        firsts = data["offsets"][:-1]
        mean, logstd = data["mean"][firsts], data["logstd"][firsts]
    z0 = initial_latents(copy, 500, np.random.default_rng(3)).numpy()
    rng = np.random.default_rng(3)
    chosen = rng.choice(firsts, size=500)  # the reference: draw among the first frames' offsets
    index = np.searchsorted(firsts, chosen)
    expected = mean[index] + np.exp(logstd[index]) * rng.standard_normal((500, mean.shape[1]))
    np.testing.assert_allclose(z0, expected, rtol=1e-5, atol=1e-5)
    # The first frames are read once per process, and again when the cache file changes.
    with np.load(cache) as data:
        arrays = dict(data)
    arrays["mean"] = arrays["mean"] + 100.0
    np.savez(cache, **arrays)
    os.utime(cache, ns=(cache.stat().st_atime_ns, cache.stat().st_mtime_ns + 10**9))
    assert initial_latents(copy, 4, np.random.default_rng(0)).min() > 50.0


def test_cma_es_improves_a_known_fitness(copy):
    """The stage's CMA-ES loop, with fitness = -|params - target|^2, moves its mean to the target."""
    overrides = {
        "logdir": str(copy),
        "worldmodels.controller.pop_size": "12",
        "worldmodels.controller.generations": "80",
        "worldmodels.controller.eval_every": "1000",
        "worldmodels.controller.eval_rollouts": "1",
        "worldmodels.controller.time_limit": "5",
        "log.progress": "false",
    }
    config = load_config(["worldmodels"], overrides=overrides)
    from rich.console import Console

    from dreamworld.algos.world_models.controller_stage import fitness_env

    with fitness_env(config, 1) as env:
        agent = build_agent(config, False, False, env.act_space, "cpu")
        evolution = _Evolution(config, agent, copy / "controller-test", "cpu")
        target = np.linspace(-0.3, 0.3, agent.controller.size)
        evolution._fitness = lambda env, solutions: -np.square(solutions - target).sum(1)  # type: ignore[method-assign]
        before = np.square(evolution.es.mean - target).sum()
        result = evolution.run(LocalBackend(env, agent), display=False, console=Console(quiet=True))
        after = np.square(evolution.es.mean - target).sum()
    assert result.generations == 80 and after < 0.2 * before


def test_dream_training_never_touches_the_real_environment(copy):
    """Fitness and the periodic evaluations of a dream-trained controller are dreamed; best.pt is
    the best dream evaluation."""
    overrides = {
        "logdir": str(copy),
        "worldmodels.controller.dream": "true",
        "worldmodels.controller.pop_size": "4",
        "worldmodels.controller.n_samples": "2",
        "worldmodels.controller.generations": "2",
        "worldmodels.controller.eval_every": "1",
        "worldmodels.controller.eval_rollouts": "3",
        "worldmodels.controller.time_limit": "6",
        "log.progress": "false",
    }
    config = load_config(["worldmodels"], overrides=overrides)
    from rich.console import Console

    from dreamworld.algos.world_models.controller_stage import fitness_env

    class NoRealEnvironment:
        def rollouts(self, *args, **kwargs):
            raise AssertionError("a dream-trained controller ran in the real environment")

        def close(self):
            pass

    with fitness_env(config, 1) as env:
        agent = build_agent(config, True, True, env.act_space, "cpu")
    evolution = _Evolution(config, agent, copy / "controller-dream-test", "cpu")
    result = evolution.run(NoRealEnvironment(), display=False, console=Console(quiet=True))
    best = load_checkpoint(copy / "controller-dream-test" / "best.pt", kind="worldmodels-controller")
    assert result.generations == 2 and np.isfinite(result.best_return)
    assert best["return"] == result.best_return


def test_cma_state_is_restored_and_foreign_pickles_are_refused():
    import cma

    es = cma.CMAEvolutionStrategy(np.zeros(5), 0.1, {"popsize": 6, "seed": 1, "verbose": -9})
    es.tell(es.ask(), list(range(6)))
    restored = _CMAUnpickler(__import__("io").BytesIO(pickle.dumps(es))).load()
    np.testing.assert_array_equal(restored.mean, es.mean)
    np.testing.assert_array_equal(np.asarray(restored.ask()), np.asarray(es.ask()))

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    from dreamworld.algos.world_models.controller_stage import _load_es

    with pytest.raises(CheckpointError, match="--noreload"):
        _load_es(pickle.dumps(Evil()), __import__("pathlib").Path("x"))


def test_real_rollouts_finish_every_job_and_give_up_on_stalls(experiment):
    overrides = {"logdir": str(experiment), "worldmodels.controller.time_limit": "20"}
    config = load_config(["worldmodels"], overrides=overrides)
    from dreamworld.algos.world_models.controller_stage import fitness_env

    with fitness_env(config, 2) as env:
        agent = build_agent(config, True, False, env.act_space, "cpu")
        population = torch.zeros(2, agent.controller.size)
        population[1, -2] = -5.0  # gas pinned at 0 (tanh(-5) -> 0 after the suite's rescale)
        jobs = np.array([0, 1, 0, 1, 1])
        returns, frames = real_rollouts(env, agent, population, jobs, seed=0, record=True)
        assert returns.shape == (5,) and frames is not None and 2 <= len(frames) <= 26
        assert np.all(returns != 0.0), returns  # every job ran (CarRacing pays -0.1 per step at least)
        one, _ = real_rollouts(env, agent, population[:1], np.zeros(3, np.int64), seed=0)
        assert np.all(one != 0.0), one
        stalled, _ = real_rollouts(env, agent, population, jobs, seed=0, patience=3)
        assert np.all(stalled[[1, 3, 4]] > returns[[1, 3, 4]] - 1e-6)  # fewer -0.1 steps after giving up


def test_stages_resume_and_noreload_starts_over(copy, capsys, monkeypatch):
    vae = ["worldmodels", "train-vae", "--logdir", str(copy)]
    assert main([*vae, *flags(worldmodels__vae__epochs="2")]) == 0
    state = load_checkpoint(copy / "vae" / "checkpoint.pt", kind="worldmodels-vae")
    assert state["epoch"] == 2  # one epoch from the fixture, one more now
    budgets = []
    original = vae_stage.load_frames
    monkeypatch.setattr(vae_stage, "load_frames", lambda paths, n: budgets.append(n) or original(paths, n))
    assert main([*vae, *flags(worldmodels__vae__epochs="2")]) == 0
    assert "already trained" in capsys.readouterr().out
    assert budgets == [1]  # a finished stage reads one frame's shape, not its training frames
    monkeypatch.undo()
    assert main([*vae, "--noreload", *flags(worldmodels__vae__epochs="1")]) == 0
    assert load_checkpoint(copy / "vae" / "checkpoint.pt", kind="worldmodels-vae")["epoch"] == 1
    assert list(copy.glob("vae.old-*"))
    controller = [
        "worldmodels",
        "train-controller",
        "--logdir",
        str(copy),
        "--pop-size",
        "4",
        "--n-samples",
        "1",
    ]
    assert main(["worldmodels", "train-mdnrnn", "--logdir", str(copy), "--noreload", *flags()]) == 0
    assert main([*controller, "--generations", "1", *flags()]) == 0
    assert main([*controller, "--generations", "2", *flags()]) == 0
    state = load_checkpoint(copy / "controller" / "checkpoint.pt", kind="worldmodels-controller")
    assert state["generation"] == 2
    # A controller evolved with an M that was retrained since is refused, by training and by testing.
    capsys.readouterr()
    assert main(["worldmodels", "train-mdnrnn", "--logdir", str(copy), "--noreload", *flags()]) == 0
    assert main([*controller, "--generations", "3", *flags()]) == 2
    assert main(["worldmodels", "test", "--logdir", str(copy), "--episodes", "1", *flags()]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all("another V or M" in line and "--noreload" in line for line in errors)
    assert main([*controller, "--generations", "1", "--noreload", *flags()]) == 0
    assert main(["worldmodels", "test", "--logdir", str(copy), "--episodes", "1", *flags()]) == 0


def test_mdnrnn_records_its_done_weight_and_older_models_take_the_configured_one(copy):
    from dreamworld.algos.world_models.mdnrnn_stage import load_mdnrnn
    from dreamworld.run.checkpoint import save_checkpoint

    mdnrnn = ["worldmodels", "train-mdnrnn", "--logdir", str(copy)]
    assert main([*mdnrnn, "--noreload", *flags(worldmodels__mdnrnn__done_weight="5")]) == 0
    model, spec = load_mdnrnn(copy)
    assert spec["done_weight"] == 5.0 and model.done_weight == 5.0
    # A model saved before the spec held the weight: its stage resumes, and the configuration says
    # what weight it was trained with.
    for name in ("checkpoint.pt", "best.pt"):
        state = load_checkpoint(copy / "mdnrnn" / name, kind="worldmodels-mdnrnn")
        del state["spec"]["done_weight"]
        save_checkpoint(copy / "mdnrnn" / name, state, kind="worldmodels-mdnrnn")
    assert main([*mdnrnn, *flags(worldmodels__mdnrnn__done_weight="5")]) == 0
    config = load_config(overrides={"logdir": str(copy), "worldmodels.mdnrnn.done_weight": "3"})
    agent = build_agent(config, True, True, gymnasium.spaces.Box(-1.0, 1.0, (3,)), "cpu")
    assert agent.mdnrnn is not None and agent.mdnrnn.done_weight == 3.0


def test_a_tiny_pipeline_runs_end_to_end_and_writes_the_report(copy, capsys):
    common = ["--logdir", str(copy), *flags()]
    controller = TINY_CONTROLLER
    assert main([*controller, *common]) == 0
    assert main([*controller, "--no-memory", *common]) == 0
    assert main([*controller, "--dream", "--temperature", "1.15", *common]) == 0
    assert main(["worldmodels", "test", "--episodes", "2", "--video", "--env.time_limit", "20", *common]) == 0
    assert (
        main(["worldmodels", "test", "--episodes", "2", "--no-memory", "--env.time_limit", "20", *common])
        == 0
    )
    assert "test return" in capsys.readouterr().out
    assert main(["worldmodels", "test", "--episodes", "2", "--dream", *common]) == 0
    assert "dream return" in capsys.readouterr().out
    assert main(["eval", "--logdir", str(copy), "--episodes", "2"]) == 0
    assert "worldmodels evaluation" in capsys.readouterr().out
    z_only = copy / "controller-z" / "best.pt"
    assert main(["eval", "--logdir", str(copy), "--episodes", "1", "--checkpoint", str(z_only)]) == 0
    assert json.loads((copy / "controller-z" / "test.json").read_text())["episodes"] == 1
    assert main(["report", "--logdir", str(copy)]) == 0  # the shared command builds the same page
    assert main(["worldmodels", "report", *common]) == 0
    report = copy / "report"
    html = (report / "index.html").read_text()
    for name in (
        "vae_loss.png",
        "reconstructions.png",
        "dream.gif",
        "controller_fitness.png",
        "controller-z_fitness.png",
    ):
        assert (report / name).stat().st_size > 0 and name in html
    assert "z only" in html and "[z, h]" in html and "dream at tau 1.15" in html


def test_cell_state_controllers_read_z_h_and_c_and_keep_their_own_directory(copy, capsys):
    mdnrnn = MDNRNN(z=4, actions=3, hidden=8)
    z, state = torch.randn(5, 4), (torch.randn(1, 5, 8), torch.randn(1, 5, 8))
    agent = Agent(VAE(16, 3, z=4, depth=4), mdnrnn, LinearController(20, 3), memory=True, cell=True)
    torch.testing.assert_close(agent.inputs(z, state), torch.cat([z, state[0][0], state[1][0]], -1))
    agent.cell = False
    torch.testing.assert_close(agent.inputs(z, state), torch.cat([z, state[0][0]], -1))

    common = ["--logdir", str(copy), *flags(worldmodels__controller__cell="true")]
    dream = ["--dream", "--temperature", "1.15"]
    controller = TINY_CONTROLLER
    assert main([*controller, *dream, *common]) == 0
    directory = copy / "controller-zhc-dream-tau1.15"
    best = load_checkpoint(directory / "best.pt", kind="worldmodels-controller")
    assert best["spec"]["cell"] and best["spec"]["inp"] == 32 + 2 * 16  # z + h + c of the tiny M
    assert not (copy / "controller-dream-tau1.15").exists()
    assert main(["worldmodels", "test", "--episodes", "1", *dream, "--env.time_limit", "20", *common]) == 0
    assert json.loads((directory / "test.json").read_text())["episodes"] == 1
    assert (
        main(["eval", "--logdir", str(copy), "--episodes", "1", "--checkpoint", str(directory / "best.pt")])
        == 0
    )
    assert main(["worldmodels", "report", *common]) == 0
    assert "[z, h, c], trained in the dream at tau 1.15" in (copy / "report" / "index.html").read_text()


def test_missing_stage_is_a_one_line_error(tmp_path, capsys):
    assert main(["worldmodels", "train-vae", "--logdir", str(tmp_path)]) == 2
    assert "worldmodels collect" in capsys.readouterr().err


def test_ray_backend_gives_the_local_returns(experiment):
    """The same jobs and seeds on a local Ray instance and in local workers give the same returns."""
    pytest.importorskip("ray")
    import ray

    overrides = {"logdir": str(experiment), "worldmodels.controller.time_limit": "15"}
    config = load_config(["worldmodels"], overrides=overrides)
    from dreamworld.algos.world_models.controller_stage import fitness_env

    try:
        with fitness_env(config, 1, "serial") as env:
            agent = build_agent(config, True, False, env.act_space, "cpu")
            population = torch.randn(2, agent.controller.size) * 0.1
            jobs = np.array([0, 1, 1, 0])
            remote = RayBackend(config, agent, workers=2)  # starts a local Ray instance
            try:
                returns, frames = remote.rollouts(population, jobs, seed=5, record=True)
                # Workers at normal priority (Ray's default nice 15 starved them on a busy machine).
                assert ray.get(ray.remote(num_cpus=0)(lambda: __import__("os").nice(0)).remote()) == 0
            finally:
                remote.close()
            # Job k ran from seed 5 + k in one environment, whichever worker took it.
            local = [real_rollouts(env, agent, population, jobs[k : k + 1], 5 + k)[0] for k in range(4)]
    finally:
        ray.shutdown()
    np.testing.assert_allclose(returns, np.concatenate(local), rtol=1e-5)
    assert frames is not None and len(frames) >= 2


def test_process_backend_runs_job_k_from_seed_plus_k_whatever_the_workers(experiment):
    from dreamworld.algos.world_models.backends import ProcessBackend
    from dreamworld.algos.world_models.controller_stage import fitness_env

    overrides = {"logdir": str(experiment), "worldmodels.controller.time_limit": "12"}
    config = load_config(["worldmodels"], overrides=overrides)
    with fitness_env(config, 1, "serial") as env:
        agent = build_agent(config, True, False, env.act_space, "cpu")
        population = torch.randn(2, agent.controller.size) * 0.1
        jobs = np.array([0, 1, 1, 0, 1])
        reference = [real_rollouts(env, agent, population, jobs[k : k + 1], 5 + k) for k in range(5)]
    results = []
    for workers in (1, 2):
        backend = ProcessBackend(config, agent, workers)
        try:
            results.append(backend.rollouts(population, jobs, seed=5, record=True))
        finally:
            backend.close()
    for returns, frames in results:
        np.testing.assert_allclose(returns, [r[0][0] for r in reference], rtol=1e-5)
        assert frames is not None and len(frames) >= 2
    # A worker that cannot start says why, in one line.
    broken = load_config(["worldmodels"], overrides={**overrides, "env.kwargs": {"bogus": 1}})
    backend = ProcessBackend(broken, agent, 1)
    try:
        with pytest.raises(DreamworldError, match=r"rollout worker could not start.*bogus"):
            backend.rollouts(population, jobs, seed=5)
    finally:
        backend.close()


def test_dream_page_for_world_models(experiment):
    from selenium.webdriver.common.keys import Keys

    from browser import check_dream_page, dream_page
    from dreamworld.tools.dream import open_session

    session = open_session(experiment)
    assert session.info()["temperature"] == 1.15 and session.info()["carracing"]
    with dream_page(session) as browser:
        check_dream_page(browser, Keys.ARROW_UP)
        slider = browser.find_element("id", "temp")
        assert slider.is_displayed()
