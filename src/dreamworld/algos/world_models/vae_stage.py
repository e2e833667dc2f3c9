"""Stage 2, ``train-vae``: fit the VAE (V) to the frames of the collected rollouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamworld.algos.world_models.data import load_frames, split_rollouts
from dreamworld.algos.world_models.stage import StageResult, load_best, stage_loop
from dreamworld.config import Config
from dreamworld.models.vae import VAE

KIND = "worldmodels-vae"
STAGE_DIR = "vae"
_EVAL_SEED = 12_345  # the same noise for every held-out evaluation, so epochs compare fairly


def build_vae(spec: dict[str, Any]) -> VAE:
    """A VAE from the ``spec`` stored with it."""
    return VAE(spec["size"], spec["channels"], spec["z"], spec["depth"])


def load_vae(logdir: Path, device: torch.device | str = "cpu") -> tuple[VAE, str]:
    """The best VAE of an experiment and its id (later stages cache what they derive from it)."""
    model, state = load_best(Path(logdir) / STAGE_DIR, KIND, build_vae)
    return model.to(device), str(state["model_id"])  # type: ignore[return-value]


def train_vae(config: Config, noreload: bool = False, device: torch.device | str = "cpu") -> StageResult:
    """Trains the VAE on ``<logdir>/episodes`` and keeps the best one in ``<logdir>/vae/best.pt``."""
    options = config.worldmodels.vae
    logdir = Path(config.logdir)
    train_paths, holdout_paths = split_rollouts(logdir, options.holdout)
    budget = options.max_frames
    probe = load_frames(train_paths[:1], 1)  # the frame shape, before deciding to load them all
    size, channels = probe.shape[1], probe.shape[-1]
    torch.manual_seed(config.seed)
    spec = {"size": size, "channels": channels, "z": options.z, "depth": options.depth}
    model = build_vae(spec).to(device)
    loop = stage_loop(config, STAGE_DIR, KIND, model, spec, options, noreload)
    if (done := loop.finished()) is not None:
        return done
    frames = load_frames(train_paths, budget)
    holdout = load_frames(holdout_paths, max(options.batch, budget // 10)) if holdout_paths else frames[:0]
    if len(holdout) == 0:
        holdout = frames[-options.batch :]  # one rollout only: judge on training frames
    rng = np.random.default_rng(config.seed + loop.epoch)

    def train_epoch() -> dict[str, float]:
        model.train()
        totals: dict[str, float] = {}
        order = rng.permutation(len(frames))
        batches = range(0, len(order) - options.batch + 1, options.batch) or [0]
        for start in batches:
            image = torch.as_tensor(frames[order[start : start + options.batch]], device=device)
            loss, parts = model.loss(image, options.kl_free)
            loop.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loop.optimizer.step()
            for key, value in {"loss": loss.detach(), **parts}.items():
                totals[key] = totals.get(key, 0.0) + float(value)
        return {key: value / len(batches) for key, value in totals.items()}

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        total = 0.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_EVAL_SEED)
            for start in range(0, len(holdout), options.batch):
                image = torch.as_tensor(holdout[start : start + options.batch], device=device)
                total += float(model.loss(image, options.kl_free)[0]) * len(image)
        return total / len(holdout)

    def report(logger: Any) -> None:
        grid = reconstruction_grid(model, holdout[:: max(1, len(holdout) // 8)][:8], device)
        logger.image("vae/reconstruction", grid)

    return loop.run(train_epoch, evaluate, report)


@torch.no_grad()
def reconstruction_grid(model: VAE, frames: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Frames on the top row and their reconstructions (from the posterior mean) below, uint8."""
    model.eval()
    mean, _ = model.encode(torch.as_tensor(frames, device=device))
    recon = ((model.decode(mean) + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return np.concatenate([np.concatenate(list(frames), 1), np.concatenate(list(recon), 1)], 0)
