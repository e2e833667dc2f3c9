"""Stage 3, ``train-mdnrnn``: encode every frame once with the best VAE, then fit the MDN-RNN (M).

The encodings (posterior mean and log standard deviation per frame) are cached in
``<logdir>/mdnrnn/latents.npz`` together with the id of the VAE that made them; a retrained VAE
invalidates the cache. Each batch draws fresh ``z = mean + std * noise`` from the cached posteriors,
as the original implementation does, so M learns from the VAE's uncertainty too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from dreamworld.algos.world_models.data import action_features, split_rollouts
from dreamworld.algos.world_models.stage import StageResult, load_best, stage_loop
from dreamworld.algos.world_models.vae_stage import load_vae
from dreamworld.config import Config
from dreamworld.data.store import EpisodeStore
from dreamworld.models.mdn_rnn import MDNRNN
from dreamworld.models.vae import VAE

KIND = "worldmodels-mdnrnn"
STAGE_DIR = "mdnrnn"
CACHE_NAME = "latents.npz"
_EVAL_SEED = 54_321


@dataclass
class Latents:
    """Encoded rollouts as flat arrays; episode ``i`` is ``offsets[i]:offsets[i + 1]``."""

    mean: np.ndarray
    logstd: np.ndarray
    action: np.ndarray  # float features: one-hot for discrete actions
    reward: np.ndarray
    is_terminal: np.ndarray
    offsets: np.ndarray
    holdout: int  # the last ``holdout`` episodes are held out

    def episodes(self, held_out: bool) -> np.ndarray:
        """Indices of the training or the held-out episodes."""
        count = len(self.offsets) - 1
        return np.arange(count - self.holdout, count) if held_out else np.arange(count - self.holdout)


def build_mdnrnn(spec: dict[str, Any]) -> MDNRNN:
    """An MDN-RNN from the ``spec`` stored with it."""
    # Models saved before the spec recorded the done weight were trained without one unless the
    # experiment's configuration said otherwise: build_agent fills that case in.
    return MDNRNN(spec["z"], spec["actions"], spec["hidden"], spec["mixtures"], spec.get("done_weight", 1.0))


def load_mdnrnn(logdir: Path, device: torch.device | str = "cpu") -> tuple[MDNRNN, dict[str, Any]]:
    """The best MDN-RNN of an experiment and its spec (which records the action encoding), with the
    model's id added as ``model_id``."""
    model, state = load_best(Path(logdir) / STAGE_DIR, KIND, build_mdnrnn)
    return model.to(device), {**state["spec"], "model_id": str(state["model_id"])}  # type: ignore[return-value]


@torch.no_grad()
def encode_rollouts(
    logdir: Path, vae: VAE, vae_id: str, holdout: float, discrete: int, device: Any
) -> Latents:
    """Encodes every stored rollout (cached per VAE); ``discrete`` is the number of discrete actions."""
    cache = Path(logdir) / STAGE_DIR / CACHE_NAME
    train_paths, holdout_paths = split_rollouts(Path(logdir), holdout)
    paths = train_paths + holdout_paths
    if cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            if str(data["vae_id"]) == vae_id and int(data["episodes"]) == len(paths):
                names = ("mean", "logstd", "action", "reward", "is_terminal", "offsets")
                return Latents(**{name: data[name] for name in names}, holdout=len(holdout_paths))
    console = Console(soft_wrap=True)  # log files: no wrapping at 80 columns
    console.print(f"encoding {len(paths)} rollouts with the VAE (cached in {cache})")
    store = EpisodeStore(paths[0].parent)
    parts: dict[str, list[np.ndarray]] = {
        name: [] for name in ("mean", "logstd", "action", "reward", "is_terminal")
    }
    vae.eval()
    for path in paths:
        episode = store.load(path)
        means, logstds = [], []
        for start in range(0, len(episode["image"]), 256):
            mean, logstd = vae.encode(torch.as_tensor(episode["image"][start : start + 256], device=device))
            means.append(mean.cpu().numpy())
            logstds.append(logstd.cpu().numpy())
        parts["mean"].append(np.concatenate(means))
        parts["logstd"].append(np.concatenate(logstds))
        parts["action"].append(action_features(episode["action"], discrete))
        parts["reward"].append(episode["reward"].astype(np.float32))
        parts["is_terminal"].append(episode["is_terminal"].astype(np.float32))
    offsets = np.cumsum([0] + [len(mean) for mean in parts["mean"]])
    arrays = {name: np.concatenate(values) for name, values in parts.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.tmp.npz")
    extra = {"offsets": offsets, "vae_id": np.array(vae_id), "episodes": np.array(len(paths))}
    np.savez(tmp, **arrays, **extra)  # type: ignore[arg-type]
    tmp.replace(cache)
    return Latents(**arrays, offsets=offsets, holdout=len(holdout_paths))


def sample_windows(
    latents: Latents, episodes: np.ndarray, batch: int, length: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """``batch`` windows of ``length`` transitions; every transition of ``episodes`` is equally likely.

    Position ``t`` of a window holds the latent and action at step ``s + t`` and, as targets, the
    latent, reward and termination at step ``s + t + 1``. A window may begin up to ``length - 1``
    steps before an episode and end after it, clipped to the episode and padded at its end with
    ``mask = 0``: so the first and last transitions (the death that ends a ViZDoom episode) are in as
    many windows as any other, where windows that had to fit inside an episode would see an episode's
    last transition once for every ``T - length + 1`` times they see one in its middle.
    """
    starts, transitions, positions = _window_starts(latents, episodes, length)
    chosen = rng.choice(len(episodes), size=batch, p=positions / positions.sum())
    begin = (rng.random(batch) * positions[chosen]).astype(np.int64) - (length - 1)
    low, high = np.maximum(begin, 0), np.minimum(begin + length, transitions[chosen])
    first = starts[chosen] + low
    step = first[:, None] + np.arange(length)[None]
    mask = np.arange(length)[None] < (high - low)[:, None]
    step = np.where(mask, step, first[:, None])  # padding repeats a real step; the mask drops it
    target = step + mask
    return {
        "mean": latents.mean[step],
        "logstd": latents.logstd[step],
        "action": latents.action[step],
        "next_mean": latents.mean[target],
        "next_logstd": latents.logstd[target],
        "reward": latents.reward[target],
        "done": latents.is_terminal[target],
        "mask": mask.astype(np.float32),
    }


def windows_per_epoch(latents: Latents, episodes: np.ndarray, length: int) -> int:
    """Windows that hold, on average, every transition of ``episodes`` once."""
    return math.ceil(_window_starts(latents, episodes, length)[2].sum() / length)


def _window_starts(
    latents: Latents, episodes: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each episode's first step, its transitions, and the window starts that overlap it."""
    starts = latents.offsets[episodes]
    transitions = np.maximum(latents.offsets[episodes + 1] - starts - 1, 0)
    return starts, transitions, np.where(transitions > 0, transitions + length - 1, 0)


def train_mdnrnn(
    config: Config, discrete: int, noreload: bool = False, device: torch.device | str = "cpu"
) -> StageResult:
    """Trains the MDN-RNN on the encoded rollouts; keeps the best one in ``<logdir>/mdnrnn/best.pt``.

    Args:
        config: The resolved configuration.
        discrete: Number of discrete actions, or 0 for continuous actions.
        noreload: Start the stage over.
        device: Where to train.
    """
    options = config.worldmodels.mdnrnn
    logdir = Path(config.logdir)
    vae, vae_id = load_vae(logdir, device)
    if noreload:
        (logdir / STAGE_DIR / CACHE_NAME).unlink(missing_ok=True)
    latents = encode_rollouts(logdir, vae, vae_id, options.holdout, discrete, device)
    actions = latents.action.shape[-1]
    torch.manual_seed(config.seed)
    spec = {
        "z": vae.z,
        "actions": actions,
        "discrete": discrete,
        "hidden": options.hidden,
        "mixtures": options.mixtures,
        "done_weight": options.done_weight,
        "vae_id": vae_id,
    }
    model = build_mdnrnn(spec).to(device)
    loop = stage_loop(config, STAGE_DIR, KIND, model, spec, options, noreload)
    rng = np.random.default_rng(config.seed + loop.epoch)
    train_eps, held_eps = latents.episodes(False), latents.episodes(True)
    if len(held_eps) == 0:
        held_eps = train_eps
    updates = max(1, windows_per_epoch(latents, train_eps, options.length) // options.batch)

    def batch_loss(windows: dict[str, np.ndarray]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        data = {key: torch.as_tensor(value, device=device) for key, value in windows.items()}
        z = data["mean"] + data["logstd"].exp() * torch.randn_like(data["mean"])
        next_z = data["next_mean"] + data["next_logstd"].exp() * torch.randn_like(data["mean"])
        return model.loss(
            z, data["action"], next_z, data["reward"], data["done"], data["mask"], options.scales
        )

    def train_epoch() -> dict[str, float]:
        model.train()
        totals: dict[str, float] = {}
        for _ in range(updates):
            loss, parts = batch_loss(sample_windows(latents, train_eps, options.batch, options.length, rng))
            loop.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), options.clip)
            loop.optimizer.step()
            for key, value in {"loss": loss.detach(), **parts}.items():
                totals[key] = totals.get(key, 0.0) + float(value)
        return {key: value / updates for key, value in totals.items()}

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        held_rng = np.random.default_rng(_EVAL_SEED)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_EVAL_SEED)
            losses = [
                float(
                    batch_loss(sample_windows(latents, held_eps, options.batch, options.length, held_rng))[0]
                )
                for _ in range(max(4, updates // 20))
            ]
        return float(np.mean(losses))

    return loop.run(train_epoch, evaluate)
