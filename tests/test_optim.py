"""The foreach optimisers against naive references: Adam (torch.optim), LaProp, clipping, warm-up,
weight decay, joint steps, and checkpoints of the earlier torch.optim layout."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dreamworld.nn.optim import Optimizer, step_jointly


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def loss_of(module: nn.Module, step: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(step)
    x = torch.randn(16, 4, generator=generator)
    return (module(x) * 3.0).square().mean()  # large enough gradients to be clipped


def reference_steps(module: nn.Module, name: str, steps: int, **options: float) -> list[float]:
    """The same updates written one tensor at a time, as the Dreamer papers describe them."""
    lr, eps, clip = options.get("lr", 1e-2), options.get("eps", 1e-8), options.get("clip", 0.0)
    agc, decay, warmup = options.get("agc", 0.0), options.get("weight_decay", 0.0), options.get("warmup", 0)
    params = list(module.parameters())
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    norms = []
    for t in range(1, steps + 1):
        for p in params:
            p.grad = None
        loss_of(module, t).backward()
        with torch.no_grad():
            grads = [p.grad for p in params]
            norms.append(float(torch.sqrt(sum(g.square().sum() for g in grads))))
            if agc:
                for p, g in zip(params, grads, strict=True):
                    limit = agc * max(float(p.norm()), 1e-3)
                    g.mul_(min(limit / (float(g.norm()) + 1e-12), 1.0))
            elif clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            rate = lr * (min(1.0, t / warmup) if warmup else 1.0)
            for p, g, m_, v_ in zip(params, grads, m, v, strict=True):
                p.mul_(1 - decay)
                v_.mul_(0.999).add_(0.001 * g * g)
                rms = (v_ / (1 - 0.999**t)).sqrt() + eps
                if name == "adam":
                    m_.mul_(0.9).add_(0.1 * g)
                    p.sub_(rate / (1 - 0.9**t) * m_ / rms)
                else:
                    m_.mul_(0.9).add_(0.1 * g / rms)
                    p.sub_(rate / (1 - 0.9**t) * m_)
    return norms


CASES = [
    ("adam", {"clip": 0.5}),
    ("adam", {"clip": 0.0, "warmup": 3}),
    ("laprop", {"agc": 0.3, "eps": 1e-20, "warmup": 2}),
    ("adam", {"clip": 1000.0, "weight_decay": 0.01}),
]


@pytest.mark.parametrize(("name", "options"), CASES)
def test_optimiser_matches_the_naive_reference(name, options):
    fast, slow = net(), net()
    opt = Optimizer(
        fast,
        name,
        lr=1e-2,
        eps=options.get("eps", 1e-8),
        **_only(options, "clip", "agc", "weight_decay", "warmup"),
    )
    norms = [float(opt.step(loss_of(fast, t))) for t in range(1, 6)]
    expected = reference_steps(slow, name, 5, lr=1e-2, **options)
    assert norms == pytest.approx(expected, rel=1e-5)
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adam_matches_torch_optim_with_clipping_and_warmup():
    fast, slow = net(), net()
    opt = Optimizer(fast, "adam", lr=3e-3, eps=1e-5, clip=0.3, warmup=4)
    torch_opt = torch.optim.Adam(slow.parameters(), lr=3e-3, eps=1e-5)
    schedule = torch.optim.lr_scheduler.LambdaLR(torch_opt, lambda step: min(1.0, (step + 1) / 4))
    for t in range(1, 8):
        opt.step(loss_of(fast, t))
        torch_opt.zero_grad()
        loss_of(slow, t).backward()
        torch.nn.utils.clip_grad_norm_(slow.parameters(), 0.3)
        torch_opt.step()
        schedule.step()
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_a_checkpoint_of_the_torch_optim_layout_continues_the_same_steps():
    """Runs checkpointed before the foreach optimisers resume with their Adam moments and step count."""
    fast, slow = net(), net()
    torch_opt = torch.optim.Adam(slow.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(torch_opt, lambda step: 1.0)
    for t in range(1, 4):
        torch_opt.zero_grad()
        loss_of(slow, t).backward()
        torch_opt.step()
    fast.load_state_dict(slow.state_dict())
    opt = Optimizer(fast, "adam", lr=1e-2, clip=0.0)
    opt.load_state_dict({"optimizer": torch_opt.state_dict(), "schedule": schedule.state_dict()})
    assert float(opt.count) == 3
    opt.step(loss_of(fast, 4))
    torch_opt.zero_grad()
    loss_of(slow, 4).backward()
    torch_opt.step()
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_state_loads_in_place_and_refuses_other_shapes():
    module = net()
    opt = Optimizer(module, "laprop", lr=1e-3)
    opt.step(loss_of(module, 1))
    saved = copy.deepcopy(opt.state_dict())
    storage = [m.data_ptr() for m in opt.moment1]
    opt.step(loss_of(module, 2))
    opt.load_state_dict(saved)
    assert [m.data_ptr() for m in opt.moment1] == storage  # compiled and captured steps keep working
    assert float(opt.count) == 1
    torch.testing.assert_close(opt.moment2, saved["moment2"])
    other = Optimizer(nn.Linear(2, 2), "laprop")
    with pytest.raises(ValueError, match="saved moment1"):
        other.load_state_dict(saved)
    with pytest.raises(ValueError, match="laprop, not adam"):
        Optimizer(module, "adam").load_state_dict(saved)


def test_joint_step_trains_each_module_on_its_own_loss_only():
    first, second = nn.Linear(3, 1), nn.Linear(3, 1)
    opts = [Optimizer(first, "adam", lr=0.1), Optimizer(second, "adam", lr=0.1)]
    x = torch.ones(2, 3)
    before = second.weight.detach().clone()
    norms = step_jointly(first(x).sum() + 0.0 * second(x).sum(), opts)
    assert float(norms[0]) > 0 and float(norms[1]) == 0
    assert torch.equal(second.weight, before)  # a zero gradient moves Adam by nothing


def test_parameters_without_gradients_are_left_alone():
    module = net()
    frozen = module[2].weight.detach().clone()
    opt = Optimizer(module, "adam", lr=0.1)
    out = module[0](torch.ones(2, 4)).sum()  # the last layer takes no part
    opt.step(out)
    assert torch.equal(module[2].weight, frozen)
    assert float(opt.moment1[2].abs().sum()) == 0


def _only(options: dict[str, float], *keys: str) -> dict[str, float]:
    return {key: value for key, value in options.items() if key in keys}
