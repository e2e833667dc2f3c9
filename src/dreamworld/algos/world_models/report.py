"""``worldmodels report``: one page about an experiment, in ``<logdir>/report/`` (HTML and Markdown).

It shows the VAE and MDN-RNN loss curves, reconstructions of held-out frames, a dreamed rollout beside
the real one it started from (same actions), each controller variant's fitness curve, and the test
returns of the variants side by side: with memory ``[z, h]`` against ``z`` alone, real against dream.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamworld.algos.world_models.data import action_features, split_rollouts
from dreamworld.algos.world_models.evaluate import RESULT_NAME
from dreamworld.algos.world_models.mdnrnn_stage import load_mdnrnn
from dreamworld.algos.world_models.vae_stage import load_vae, reconstruction_grid
from dreamworld.config import Config
from dreamworld.data.store import EpisodeStore
from dreamworld.models.vae import VAE
from dreamworld.tools.page import Page, curve_figure, read_metrics

REPORT_DIR = "report"
_DREAM_STEPS = 150


def write_report(config: Config, device: Any = "cpu") -> Path:
    """Builds the page from what the stages left in ``config.logdir``; returns the HTML file."""
    logdir = Path(config.logdir)
    page = Page(f"World Models: {config.env.name} ({logdir.name})")
    _losses(page, logdir)
    vae = _reconstructions(page, logdir, config, device)
    if vae is not None:
        _dream(page, logdir, vae, config, device)
    _controllers(page, logdir)
    return page.write(logdir / REPORT_DIR)


def _losses(page: Page, logdir: Path) -> None:
    page.section("Training curves")
    for stage, title in (("vae", "VAE"), ("mdnrnn", "MDN-RNN")):
        records = read_metrics(logdir / stage / "metrics.jsonl")
        if not records:
            page.text(f"The {title} has not been trained yet.")
            continue
        keys = [f"{stage}/loss", f"{stage}/holdout_loss"]
        page.figure(
            curve_figure(records, keys, "epoch", f"{title} loss"),
            f"{stage}_loss.png",
            f"{title} loss per epoch",
        )


def _reconstructions(page: Page, logdir: Path, config: Config, device: Any) -> VAE | None:
    if not (logdir / "vae" / "best.pt").exists():
        return None
    vae, _ = load_vae(logdir, device)
    _, holdout = split_rollouts(logdir, config.worldmodels.vae.holdout)
    paths = holdout or EpisodeStore(logdir / "episodes").paths()[-1:]
    frames = EpisodeStore(paths[0].parent).load(paths[0])["image"]
    chosen = frames[np.linspace(0, len(frames) - 1, 8).astype(int)]
    page.section("VAE reconstructions")
    page.image(
        reconstruction_grid(vae, chosen, device),
        "reconstructions.png",
        "held-out frames (top), decoded z (bottom)",
    )
    return vae


@torch.no_grad()
def _dream(page: Page, logdir: Path, vae: VAE, config: Config, device: Any) -> None:
    if not (logdir / "mdnrnn" / "best.pt").exists():
        return
    mdnrnn, spec = load_mdnrnn(logdir, device)
    _, holdout = split_rollouts(logdir, config.worldmodels.mdnrnn.holdout)
    paths = holdout or EpisodeStore(logdir / "episodes").paths()[-1:]
    episode = EpisodeStore(paths[0].parent).load(paths[0])
    steps = min(_DREAM_STEPS, len(episode["image"]))
    real = episode["image"][:steps]
    actions = torch.as_tensor(action_features(episode["action"][:steps], spec["discrete"]), device=device)
    temperature = 1.0
    generator = torch.Generator(device).manual_seed(config.seed)
    z = vae.encode(torch.as_tensor(real[:1], device=device))[0]
    state = mdnrnn.initial(1, device)
    latents = [z]
    for t in range(steps - 1):
        prediction, state = mdnrnn.step(z, actions[t : t + 1], state)
        uniform = torch.rand(z.shape, generator=generator, device=device)
        normal = torch.randn(z.shape, generator=generator, device=device)
        z = mdnrnn.sample(prediction, temperature, uniform, normal)
        latents.append(z)
    dreamed = ((vae.decode(torch.cat(latents)) + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    side = np.concatenate([real, dreamed], 2)
    page.section("A dream beside reality")
    page.text(
        f"Left: a held-out real rollout. Right: the MDN-RNN's dream from the same first frame under the "
        f"same {steps} actions (temperature {temperature}), decoded by the VAE."
    )
    page.animation(side, "dream.gif", "real (left) and dreamed (right) rollout")
    page.image(
        np.concatenate(list(side[:: max(1, steps // 6)][:6]), 0), "dream_strip.png", "every few frames"
    )


def _controllers(page: Page, logdir: Path) -> None:
    page.section("Controllers")
    rows = []
    for directory in sorted(logdir.glob("controller*"), key=_variant_order):
        records = read_metrics(directory / "metrics.jsonl")
        if not records or not directory.is_dir():
            continue
        variant = directory.name.removeprefix("controller").split("-dream")[0]
        dream = "-dream" in directory.name
        tau = directory.name.rsplit("tau", 1)[-1]
        where = f"trained in the dream at tau {tau}" if dream else "trained in reality"
        label = {"": "[z, h]", "-z": "z only", "-zhc": "[z, h, c]"}.get(variant, variant) + ", " + where
        keys = ["controller/fitness_mean", "controller/fitness_best", "controller/eval_return"]
        name = f"{directory.name}_fitness.png"
        page.figure(
            curve_figure(records, keys, "generation", f"CMA-ES: {label}"), name, f"fitness of {label}"
        )
        result_path = directory / RESULT_NAME
        if result_path.exists():
            result = json.loads(result_path.read_text())
            virtual = (
                f"{result['dream_mean']:.1f} ± {result['dream_std']:.1f}" if "dream_mean" in result else "-"
            )
            rows.append([label, f"{result['mean']:.1f} ± {result['std']:.1f}", virtual, result["episodes"]])
        else:
            rows.append([label, "not tested yet", "-", 0])
    if rows:
        page.section("Test returns: with and without memory")
        page.table(["controller", "real return (mean ± std)", "return in the dream", "episodes"], rows)
    else:
        page.text("No controller has been trained yet.")


def _variant_order(path: Path) -> tuple[bool, bool, str]:
    """Real before dream, memory before none, then by name (temperature)."""
    return ("-dream" in path.name, "-z-" in path.name + "-", path.name)
