"""Configuration of the Dreamer agent. The versions V1, V2 and V3 are presets of these options
(``config/presets/dreamerv{1,2,3}.yaml``); the defaults here are DreamerV3 (2023) at size S.
"""

from __future__ import annotations

from dataclasses import dataclass

from dreamworld.config.fields import choice, option, positive, section
from dreamworld.errors import ConfigError


def _default_scales() -> dict[str, float]:
    return {"image": 1.0, "vector": 1.0, "reward": 1.0, "cont": 1.0, "dyn": 0.5, "rep": 0.1}


@dataclass(frozen=True)
class OptimConfig:
    """One optimiser."""

    name: str = option("adam (with global-norm clipping) or laprop (DreamerV3 2024)", "adam")
    lr: float = option("learning rate", 1e-4)
    eps: float = option("epsilon of the optimiser", 1e-8)
    clip: float = option("global gradient-norm clip; 0 disables", 1000.0)
    agc: float = option("adaptive gradient clipping threshold (replaces clip); 0 disables", 0.0)
    weight_decay: float = option("parameters shrink by this fraction before each step", 0.0)
    warmup: int = option("updates of linear learning-rate warm-up from 0", 0)

    def __post_init__(self) -> None:
        choice("optimiser name", self.name, ("adam", "laprop"))


@dataclass(frozen=True)
class WorldModelConfig:
    """Encoder, RSSM, decoder, reward and continue heads, and their losses."""

    deter: int = option("recurrent state size", 512)
    stoch: int = option("number of latent variables", 32)
    classes: int = option("classes per categorical latent; 0 gives Gaussian latents (DreamerV1)", 32)
    hidden: int | None = option("hidden units inside the RSSM; null takes units", None)
    units: int = option("hidden units of encoder MLP, decoder and heads", 512)
    layers: int = option("hidden layers of encoder MLP, decoder and heads", 2)
    act: str = option("activation: silu, elu, relu, tanh, gelu", "silu")
    norm: str = option("normalisation after hidden layers: none, layer, rms", "layer")
    depth: int = option("channels of the first conv stage (doubling per stage)", 32)
    kernel: int = option("conv kernel size", 4)
    core: str = option("recurrent core: gru (input layer + GRU) or block (block-diagonal GRU)", "gru")
    gru_norm: str = option("norm over the GRU gate pre-activations (gru core): none, layer, rms", "layer")
    blocks: int = option("blocks of the block core", 8)
    unimix: float = option("uniform mix of categorical latents", 0.01)
    min_std: float = option("smallest std of Gaussian latents", 0.1)
    initial: str = option("initial RSSM state: zeros or learned", "learned")
    prior_layers: int = option("hidden layers of the prior network", 1)
    symlog_inputs: bool = option("squash vector observations with symlog before encoding", True)
    vector_norm: bool = option(
        "standardise each vector observation dimension (encoder input and decoder target) with the mean "
        "and std of the first replayed batch, then frozen and saved with the agent: for coordinates "
        "that vary little around a large offset, like a robot arm's positions in metres",
        False,
    )
    vector_output: str = option("vector decoder loss: mse or symlog_mse", "symlog_mse")
    reward_output: str = option("reward head: mse or symexp_twohot", "symexp_twohot")
    cont: bool = option("predict episode continuation (else assume episodes never end)", True)
    bins: int = option("bins of two-hot heads", 255)
    kl_free: float = option("free nats: KL terms below this are not minimised", 1.0)
    kl_free_avg: bool = option(
        "apply free nats to the batch-mean KL (V1, V2) instead of to each step (V3)", False
    )
    scales: dict[str, float] = section(
        "loss scales: image, vector, reward, cont, dyn (trains the prior), rep (the posterior)",
        _default_scales,
    )
    opt: OptimConfig = section("world-model optimiser", OptimConfig)

    def __post_init__(self) -> None:
        choice("dreamer.world_model.core", self.core, ("gru", "block"))
        choice("dreamer.world_model.initial", self.initial, ("zeros", "learned"))
        choice("dreamer.world_model.vector_output", self.vector_output, ("mse", "symlog_mse"))
        choice("dreamer.world_model.reward_output", self.reward_output, ("mse", "symexp_twohot"))
        missing = set(_default_scales()) - set(self.scales)
        unknown = set(self.scales) - set(_default_scales())
        if missing or unknown:
            raise ConfigError(
                f"config key 'dreamer.world_model.scales' needs exactly {sorted(_default_scales())}; "
                f"missing {sorted(missing)}, unknown {sorted(unknown)}"
            )


def _actor_opt() -> OptimConfig:
    return OptimConfig(lr=3e-5, eps=1e-5, clip=100.0)


@dataclass(frozen=True)
class ActorConfig:
    """The policy and how it learns from imagined trajectories."""

    units: int = option("hidden units", 512)
    layers: int = option("hidden layers", 2)
    dist: str = option("continuous actions: bounded_normal (V2, V3) or tanh_normal (V1)", "bounded_normal")
    unimix: float = option("uniform mix of discrete actions", 0.01)
    min_std: float = option("smallest std of continuous actions", 0.1)
    max_std: float = option("largest std of continuous actions (bounded_normal)", 1.0)
    init_std: float = option(
        "tanh_normal: the std before the squash at initialisation (V1: 5, nearly bang-bang; about 1 "
        "spreads the first actions over the range)",
        5.0,
    )
    squash_penalty: float = option(
        "continuous actions: weight of a squared penalty on the means before their tanh beyond "
        "+-2 (actions beyond 0.96), where the squash's slope falls below 0.07 and the return's gradient "
        "can no longer bring a mean back from the bound; 0 off",
        0.0,
    )
    grad_discrete: str = option("gradient for discrete actions: reinforce, dynamics or mix", "reinforce")
    grad_continuous: str = option("gradient for continuous actions: reinforce, dynamics or mix", "reinforce")
    mix: float = option("with grad mix: weight of the dynamics gradient (the rest is REINFORCE)", 0.1)
    entropy: float = option("entropy bonus scale (with entropy_target: its starting value)", 3e-4)
    entropy_target: float | None = option(
        "entropy per action dimension (a categorical's: of the whole distribution) that an adaptive "
        "scale holds, as SAC and DreamerV2 do; null keeps the scale fixed at dreamer.actor.entropy",
        None,
    )
    entropy_rate: float = option("with entropy_target: log-change of the scale per update", 0.01)
    entropy_min: float | None = option(
        "with entropy_target: smallest scale; null takes dreamer.actor.entropy, so that the target only "
        "raises the scale (an entropy above it keeps the fixed bonus)",
        None,
    )
    entropy_max: float = option("with entropy_target: largest scale", 1.0)
    explore_noise: float = option("Gaussian noise added to continuous actions while collecting (V1)", 0.0)
    noise_color: float = option(
        "continuous actions while collecting: the exponent beta of the sampling noise's spectrum "
        "1/f^beta (0 white: drawn anew each step; 1 pink; 2 red), the same Normal at each step but "
        "drifting over many (Eberhard et al. 2023)",
        0.0,
    )
    return_norm: bool = option("divide advantages by the EMA percentile range of returns (V3)", True)
    norm_decay: float = option("EMA decay of the return percentiles", 0.99)
    norm_low: float = option("lower return percentile", 5.0)
    norm_high: float = option("upper return percentile", 95.0)
    norm_limit: float = option("smallest return scale", 1.0)
    opt: OptimConfig = section("actor optimiser", _actor_opt)

    @property
    def entropy_floor(self) -> float:
        """The adaptive entropy scale's smallest value: ``entropy_min``, or the fixed ``entropy``."""
        return self.entropy if self.entropy_min is None else self.entropy_min

    def __post_init__(self) -> None:
        choice("dreamer.actor.dist", self.dist, ("bounded_normal", "tanh_normal"))
        if not 0 <= self.noise_color <= 3:
            raise ConfigError(
                f"config key 'dreamer.actor.noise_color' is {self.noise_color}; use 0 (white) to 3 "
                "(1 is pink, 2 red)"
            )
        if self.squash_penalty < 0:
            raise ConfigError(
                f"config key 'dreamer.actor.squash_penalty' must be 0 (off) or positive, got "
                f"{self.squash_penalty}"
            )
        if self.init_std <= 0:
            raise ConfigError(f"config key 'dreamer.actor.init_std' must be positive, got {self.init_std}")
        for key in ("grad_discrete", "grad_continuous"):
            choice(f"dreamer.actor.{key}", getattr(self, key), ("reinforce", "dynamics", "mix"))
        if self.entropy_target is not None:
            for key in ("entropy_rate", "entropy_max"):
                positive(f"dreamer.actor.{key}", getattr(self, key))
            positive("dreamer.actor.entropy_min", self.entropy_floor)
            if self.entropy_floor > self.entropy_max:
                raise ConfigError(
                    f"config key 'dreamer.actor.entropy_min' ({self.entropy_floor}) is above "
                    f"'dreamer.actor.entropy_max' ({self.entropy_max}); lower it or raise the maximum"
                )


@dataclass(frozen=True)
class CriticConfig:
    """The value function, its slow copy and its losses."""

    units: int = option("hidden units", 512)
    layers: int = option("hidden layers", 2)
    output: str = option("value head: mse or symexp_twohot", "symexp_twohot")
    slow_fraction: float = option("how far the slow critic moves toward the critic per move", 0.02)
    slow_every: int = option("updates between moves of the slow critic", 1)
    slow_target: bool = option(
        "bootstrap lambda-returns from the slow critic (V2) instead of the critic", False
    )
    slow_reg: float = option("scale of the regulariser toward the slow critic's predictions (V3)", 1.0)
    replay_scale: float = option(
        "scale of the value loss on replayed trajectories (V3 2024); 0 disables", 0.0
    )
    opt: OptimConfig = section("critic optimiser", _actor_opt)

    def __post_init__(self) -> None:
        choice("dreamer.critic.output", self.output, ("mse", "symexp_twohot"))


def _explore_opt() -> OptimConfig:
    return OptimConfig(lr=3e-4, clip=100.0)


@dataclass(frozen=True)
class ExploreConfig:
    """Exploration by the disagreement of an ensemble of one-step latent predictors (Plan2Explore,
    Sekar et al. 2020): imagined steps whose next latent the members disagree on earn a novelty reward."""

    disag: float = option(
        "scale of the novelty reward (the ensemble's disagreement divided by its running mean, so "
        "about 1 per step before scaling) added to the model's reward in imagination; 0 disables the "
        "ensemble",
        0.0,
    )
    models: int = option("ensemble members", 8)
    units: int = option("hidden units of each member", 256)
    layers: int = option("hidden layers of each member", 2)
    decay: float = option("EMA decay of the disagreement's running mean", 0.99)
    opt: OptimConfig = section("ensemble optimiser", _explore_opt)

    def __post_init__(self) -> None:
        if self.disag < 0:
            raise ConfigError(
                f"config key 'dreamer.explore.disag' must be 0 (off) or positive, got {self.disag}"
            )
        if self.models < 2:
            raise ConfigError(
                f"config key 'dreamer.explore.models' is {self.models}; disagreement needs at least 2 members"
            )
        for key in ("units", "layers"):
            positive(f"dreamer.explore.{key}", getattr(self, key))
        if not 0 < self.decay < 1:
            raise ConfigError(f"config key 'dreamer.explore.decay' must be in (0, 1), got {self.decay}")


@dataclass(frozen=True)
class DreamerConfig:
    """The Dreamer agent and its training schedule."""

    world_model: WorldModelConfig = section("world model", WorldModelConfig)
    actor: ActorConfig = section("actor", ActorConfig)
    critic: CriticConfig = section("critic", CriticConfig)
    explore: ExploreConfig = section("novelty-seeking exploration (off by default)", ExploreConfig)
    horizon: int = option("imagination horizon H", 15)
    imagine_starts: int = option(
        "replayed states that start imagined trajectories, drawn anew each update; 0: every one of "
        "the batch x length states (the papers' choice). Fewer make the actor and critic part of an "
        "update cheaper, which on a CPU buys more updates of the world model",
        0,
    )
    discount: float = option("discount factor gamma (V3: 1 - 1/333)", 0.997)
    return_lambda: float = option("lambda of the lambda-returns", 0.95)
    steps: int = option("environment (policy) steps to train for", 100_000)
    max_hours: float = option(
        "stop earlier, after this many hours of training over all resumes (checkpoint and final "
        "evaluation as at the end); 0: no limit",
        0.0,
    )
    train_ratio: float = option("replayed steps per policy step: updates = ratio / (batch * length)", 512.0)
    prefill: int = option("policy steps of random actions before training starts", 1024)
    eval_every: int = option("policy steps between evaluations; 0 disables", 10_000)
    eval_episodes: int = option("episodes per evaluation", 5)
    eval_mode: str = option("evaluation actions: mode (deterministic) or sample", "mode")
    log_every: float = option("seconds between metric writes", 60.0)
    log_steps: int = option("policy steps between metric writes as well; 0: by time only", 0)
    save_every: float = option("seconds between checkpoints", 600.0)
    save_steps: int = option("policy steps between checkpoints as well; 0: by time only", 0)
    report_every: int = option("updates between open-loop prediction videos; 0 disables", 2_000)
    device: str = option("auto (cuda if available), cpu or cuda[:N]", "auto")
    precision: str = option(
        "float32 (tf32 matmuls on a GPU), or bfloat16: matmuls and convolutions in bfloat16 (autocast); "
        "losses, distributions, recurrent state and optimiser state stay float32",
        "float32",
    )
    compile: str = option(
        "the update: none (eager), compile (torch.compile, whole graphs), cudagraphs (compiled and "
        "captured in CUDA graphs: one launch per graph); auto: cudagraphs on CUDA, none on the CPU "
        "(its fastest measured path)",
        "auto",
    )
    threads: int = option(
        "torch threads of the learner; 0: as many as the cores that are free when the run starts", 0
    )
    max_nonfinite: int = option(
        "updates in a row whose gradients are NaN or infinite (each is skipped) after which the run "
        "stops with an error; 0: never stop",
        100,
    )

    def __post_init__(self) -> None:
        choice("dreamer.eval_mode", self.eval_mode, ("mode", "sample"))
        if self.max_hours < 0:
            raise ConfigError(
                f"config key 'dreamer.max_hours' must be 0 (no limit) or positive, got {self.max_hours}"
            )
        if self.imagine_starts < 0:
            raise ConfigError(
                f"config key 'dreamer.imagine_starts' must be 0 (every replayed state) or positive, "
                f"got {self.imagine_starts}"
            )
        if self.imagine_starts and self.critic.replay_scale:
            raise ConfigError(
                "dreamer.imagine_starts needs an imagined return from every replayed state when "
                "dreamer.critic.replay_scale is set: set one of them to 0"
            )
        choice("dreamer.precision", self.precision, ("float32", "bfloat16"))
        choice("dreamer.compile", self.compile, ("auto", "none", "compile", "cudagraphs"))
