"""Configuration of the World Models pipeline (``dreamworld worldmodels ...``).

The defaults are the paper's CarRacing settings (Ha & Schmidhuber 2018, appendix A); the presets
``worldmodels_cpu`` (2 CPU cores, about 3 hours end to end), ``worldmodels_paper`` and
``worldmodels_doom`` (the ViZDoom TakeCover dream experiment) change them. The worldmodels commands
accept ``--preset cpu`` for ``worldmodels_cpu``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dreamworld.config.fields import choice, option, positive, section


@dataclass(frozen=True)
class VAEConfig:
    """Stage 2, ``train-vae``: the convolutional VAE (V)."""

    z: int = option("latent size", 32)
    depth: int = option("channels of the first convolution (doubling per stage)", 32)
    kl_free: float = option("free nats per latent dimension (the KL tolerance of the original code)", 0.5)
    lr: float = option("Adam learning rate", 1e-3)
    batch: int = option("frames per update", 100)
    epochs: int = option("passes over the training frames at most", 10)
    max_frames: int = option(
        "frames loaded for training, spread evenly over the rollouts (memory bound)", 1_000_000
    )
    holdout: float = option("fraction of rollouts held out to choose the best model and stop early", 0.05)
    patience: int = option("epochs without improvement before stopping", 3)
    lr_patience: int = option("epochs without improvement before the learning rate halves", 1)

    def __post_init__(self) -> None:
        for key in ("z", "depth", "lr", "batch", "epochs", "max_frames"):
            positive(f"worldmodels.vae.{key}", getattr(self, key))


@dataclass(frozen=True)
class MDNRNNConfig:
    """Stage 3, ``train-mdnrnn``: the mixture-density LSTM (M)."""

    hidden: int = option("LSTM units", 256)
    mixtures: int = option("Gaussians per latent dimension", 5)
    length: int = option("steps per training sequence", 32)
    batch: int = option("sequences per update", 16)
    lr: float = option("Adam learning rate", 1e-3)
    clip: float = option("global gradient-norm clip", 1.0)
    epochs: int = option("passes over the training steps at most", 20)
    holdout: float = option("fraction of rollouts held out to choose the best model and stop early", 0.05)
    patience: int = option("epochs without improvement before stopping", 3)
    lr_patience: int = option("epochs without improvement before the learning rate halves", 1)
    scales: dict[str, float] = section(
        "loss weights: gmm (per latent dimension), reward, done",
        lambda: {"gmm": 1.0, "reward": 1.0, "done": 1.0},
    )
    done_weight: float = option(
        "weight of the steps that end an episode in the done loss (rare; 10 in the paper's Doom code)", 1.0
    )

    def __post_init__(self) -> None:
        for key in ("hidden", "mixtures", "length", "batch", "lr", "epochs", "done_weight"):
            positive(f"worldmodels.mdnrnn.{key}", getattr(self, key))


@dataclass(frozen=True)
class ControllerConfig:
    """Stage 4, ``train-controller``: the linear controller (C) evolved with CMA-ES."""

    pop_size: int = option("CMA-ES population size", 64)
    n_samples: int = option("rollouts per candidate; its fitness is their mean return", 16)
    sigma: float = option("initial CMA-ES step size", 0.1)
    target_return: float = option("stop once the best controller's evaluation return reaches this", 950.0)
    generations: int = option("generations at most", 2000)
    memory: bool = option("controller input [z, h]; false gives z only (train-controller --no-memory)", True)
    cell: bool = option(
        "with memory, the controller also reads M's LSTM cell state: [z, h, c] (the paper's ViZDoom "
        "controller); its controllers live in controller-zhc*",
        False,
    )
    dream: bool = option("evaluate fitness inside the MDN-RNN instead of the real environment", False)
    temperature: float = option("dream: sampling temperature tau of the MDN-RNN", 1.15)
    dream_reward: str = option("dream: model (the reward head) or survival (+1 per step alive)", "model")
    dream_done: str = option(
        "dream: an episode ends where the done probability exceeds 0.5 (threshold) or by a draw (sample)",
        "threshold",
    )
    time_limit: int = option("steps per fitness rollout at most (real and dream)", 1000)
    patience: int = option(
        "real fitness rollouts end after this many steps in a row without positive reward; 0: never", 0
    )
    eval_every: int = option("generations between evaluations of the CMA-ES mean in the real environment", 5)
    eval_rollouts: int = option("real rollouts per evaluation", 16)
    workers: int = option("real environments stepped in parallel during fitness evaluation", 2)
    backend: str = option("where real rollouts run: local (worker processes) or ray", "local")

    def __post_init__(self) -> None:
        choice("worldmodels.controller.dream_reward", self.dream_reward, ("model", "survival"))
        choice("worldmodels.controller.backend", self.backend, ("local", "ray"))
        choice("worldmodels.controller.dream_done", self.dream_done, ("threshold", "sample"))
        for key in ("pop_size", "n_samples", "sigma", "generations", "temperature", "time_limit", "workers"):
            positive(f"worldmodels.controller.{key}", getattr(self, key))


@dataclass(frozen=True)
class WorldModelsConfig:
    """The World Models pipeline: collect -> train-vae -> train-mdnrnn -> train-controller -> test."""

    vae: VAEConfig = section("stage 2: the VAE", VAEConfig)
    mdnrnn: MDNRNNConfig = section("stage 3: the MDN-RNN", MDNRNNConfig)
    controller: ControllerConfig = section("stage 4: the controller", ControllerConfig)
    test_episodes: int = option("stage 5: real episodes of the test", 100)
    device: str = option("auto (CUDA when available), cpu or cuda", "auto")
    threads: int = option("torch threads; 0 keeps torch's default", 0)
