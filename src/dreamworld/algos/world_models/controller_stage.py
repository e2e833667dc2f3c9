"""Stage 4, ``train-controller``: evolve the linear controller (C) with CMA-ES.

Each generation asks CMA-ES (the ``cma`` package) for ``pop_size`` candidates, runs ``n_samples``
rollouts of each (in the real environment, or all at once inside the MDN-RNN dream), and tells it
their mean returns. Every ``eval_every`` generations the CMA-ES mean is evaluated on
``eval_rollouts`` episodes (real ones, or dreamed ones for a controller trained in the dream); the
best evaluated controller is kept in ``best.pt``, and training stops when its return reaches
``target_return``.

Controllers live in their own directory per variant, so that the variants can be compared:
``controller`` ([z, h] in the real environment), ``controller-z`` (``--no-memory``), ``controller-zhc``
([z, h, c], ``worldmodels.controller.cell``) and, trained in the dream, ``controller-dream-tau1.15``
(one per temperature), ``controller-z-dream-tau1.15`` and so on.
Each resumes from its ``checkpoint.pt``, which holds the CMA-ES state.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from rich.console import Console

from dreamworld.algos.world_models.backends import Backend, ProcessBackend, RayBackend
from dreamworld.algos.world_models.mdnrnn_stage import CACHE_NAME, load_mdnrnn
from dreamworld.algos.world_models.mdnrnn_stage import STAGE_DIR as MDNRNN_DIR
from dreamworld.algos.world_models.rollouts import Agent, dream_rollouts
from dreamworld.algos.world_models.vae_stage import load_vae
from dreamworld.config import Config
from dreamworld.envs.parallel import VectorEnv
from dreamworld.errors import CheckpointError, DreamworldError
from dreamworld.models.controller import LinearController
from dreamworld.run.checkpoint import CHECKPOINT_NAME, load_checkpoint, move_aside, save_checkpoint
from dreamworld.run.driver import vector_env
from dreamworld.run.logger import Logger
from dreamworld.run.rundir import mark_started
from dreamworld.run.seeding import rng_state, set_rng_state

KIND = "worldmodels-controller"
BEST_NAME = "best.pt"


def controller_dir(
    logdir: Path, memory: bool, dream: bool, temperature: float = 1.15, cell: bool = False
) -> Path:
    """The directory of one controller variant: ``controller[-z|-zhc][-dream-tau<temperature>]``."""
    inputs = ("-zhc" if cell else "") if memory else "-z"
    return Path(logdir) / ("controller" + inputs + (f"-dream-tau{temperature:g}" if dream else ""))


@dataclass
class ControllerResult:
    """The best controller found and its real evaluation return."""

    directory: Path
    best_return: float
    generations: int


def build_agent(
    config: Config, memory: bool, need_mdnrnn: bool, act_space: Any, device: Any, cell: bool = False
) -> Agent:
    """V, M (when needed) and an untrained C for the experiment in ``config.logdir``.

    ``cell`` (with ``memory``) feeds the controller M's cell state as well: ``[z, h, c]``.
    """
    logdir = Path(config.logdir)
    vae, vae_id = load_vae(logdir, device)
    models = {"vae": vae_id}
    mdnrnn = None
    if need_mdnrnn or memory:
        mdnrnn, spec = load_mdnrnn(logdir, device)
        models["mdnrnn"] = spec["model_id"]
        if "done_weight" not in spec:  # saved before M recorded it: trained with the configured one
            mdnrnn.done_weight = config.worldmodels.mdnrnn.done_weight
    discrete = int(act_space.n) if hasattr(act_space, "n") else 0
    actions = discrete or int(np.prod(act_space.shape))
    cell = cell and memory
    inp = vae.z + (mdnrnn.hidden * (2 if cell else 1) if memory and mdnrnn is not None else 0)
    controller = LinearController(inp, actions, discrete=bool(discrete))
    clip_brake = config.env.name == "carracing" and not discrete
    return Agent(vae, mdnrnn, controller, memory, discrete, clip_brake, models, cell)


def fitness_env(config: Config, workers: int, parallel: str | None = None) -> VectorEnv:
    """The real environments of fitness rollouts: images, the controller's time limit."""
    images = dataclasses.replace(config.env, obs="image", time_limit=config.worldmodels.controller.time_limit)
    return vector_env(images, workers, parallel)


def check_models(saved: dict[str, Any], agent: Agent, directory: Path) -> None:
    """Raises a one-line error when a controller's checkpoint names another V or M than ``agent``'s.

    Checkpoints written before controllers recorded their models carry no ids and pass.
    """
    if "models" in saved and saved["models"] != agent.models:
        raise DreamworldError(
            f"{directory} was evolved with another V or M than the experiment's best ones (retrained "
            "since); use --noreload to start the controller over"
        )


def initial_latents(logdir: Path, count: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` first latents of dreams: posteriors of real first frames, sampled."""
    path = Path(logdir) / MDNRNN_DIR / CACHE_NAME
    mean, logstd = _first_posteriors(str(path.resolve()), path.stat().st_mtime_ns)
    chosen = rng.choice(len(mean), size=count)  # the same draws as choosing among the first frames
    mean, logstd = mean[chosen], logstd[chosen]
    return torch.as_tensor(mean + np.exp(logstd) * rng.standard_normal(mean.shape), dtype=torch.float32)


@functools.lru_cache(maxsize=2)
def _first_posteriors(path: str, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and log-std of every episode's first frame in the latent cache.

    Read once per process (the cache holds every frame: ~2 s for 700k frames, each generation).
    """
    with np.load(path, allow_pickle=False) as data:
        firsts = data["offsets"][:-1]
        return data["mean"][firsts], data["logstd"][firsts]


def train_controller(
    config: Config, noreload: bool = False, display: bool = False, device: Any = "cpu"
) -> ControllerResult:
    """Evolves the controller as ``config.worldmodels.controller`` says; resumes its directory."""
    options = config.worldmodels.controller
    logdir = Path(config.logdir)
    directory = controller_dir(logdir, options.memory, options.dream, options.temperature, options.cell)
    console = Console(soft_wrap=True)  # log files: no wrapping at 80 columns
    if noreload and (moved := move_aside(directory)) is not None:
        console.print(f"moved the previous {directory.name} to {moved}")
    directory.mkdir(parents=True, exist_ok=True)
    with fitness_env(config, 1, "serial") as env:  # here only to tell the action space
        agent = build_agent(config, options.memory, options.dream, env.act_space, device, options.cell)
    if options.dream:
        backend: Backend = _NoRealRollouts()
    elif options.backend == "ray":
        backend = RayBackend(config, agent, options.workers)
    else:
        backend = ProcessBackend(config, agent, options.workers)
    try:
        return _Evolution(config, agent, directory, device).run(backend, display, console)
    finally:
        backend.close()


class _NoRealRollouts:
    """The backend of a controller trained in the dream: it never runs the real environment."""

    def rollouts(self, *args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray | None]:
        raise AssertionError("a controller trained in the dream ran a real rollout")

    def close(self) -> None:
        pass


class _Evolution:
    """CMA-ES over the controller's parameters, with its checkpoint."""

    def __init__(self, config: Config, agent: Agent, directory: Path, device: Any) -> None:
        import cma

        self.config, self.agent, self.directory, self.device = config, agent, directory, device
        self.options = config.worldmodels.controller
        self.generation, self.best_return = 0, -float("inf")
        self.best_params: torch.Tensor | None = None
        self.rng = np.random.default_rng(config.seed)
        size = agent.controller.size
        self.es = cma.CMAEvolutionStrategy(
            np.zeros(size),
            self.options.sigma,
            {"popsize": self.options.pop_size, "seed": config.seed + 1, "verbose": -9},
        )
        if (directory / CHECKPOINT_NAME).exists():
            self._resume()

    def run(self, backend: Backend, display: bool, console: Console) -> ControllerResult:
        mark_started()  # the stage's checkpoint loaded: the experiment's config.yaml may change now
        options = self.options
        if self.best_return >= options.target_return:
            console.print(f"{self.directory.name}: target reached before ({self.best_return:.1f})")
            return self._result()
        log = self.config.log
        with Logger(
            self.directory,
            total_steps=options.generations,
            tensorboard=log.tensorboard,
            progress=log.progress,
        ) as logger:
            while self.generation < options.generations and self.best_return < options.target_return:
                solutions = self.es.ask()
                fitness = self._fitness(backend, np.asarray(solutions))
                self.es.tell(solutions, (-fitness).tolist())  # CMA-ES minimises
                self.generation += 1
                logger.add(
                    {
                        "fitness_mean": float(fitness.mean()),
                        "fitness_best": float(fitness.max()),
                        "fitness_worst": float(fitness.min()),
                        "sigma": float(self.es.sigma),
                    },
                    prefix="controller/",
                )
                if self.generation % options.eval_every == 0 or self.generation == options.generations:
                    self._evaluate(backend, logger, console, display)
                logger.write(self.generation)
                self._save()
        return self._result()

    def _fitness(self, backend: Backend, solutions: np.ndarray) -> np.ndarray:
        options = self.options
        population = torch.as_tensor(solutions, dtype=torch.float32, device=self.device)
        jobs = np.repeat(np.arange(len(solutions)), options.n_samples)
        if options.dream:
            returns = self._dream(population, jobs)
        else:
            seed = int(self.rng.integers(2**31))
            returns, _ = backend.rollouts(population, jobs, seed, patience=options.patience)
        return returns.reshape(len(solutions), options.n_samples).mean(1)

    def _dream(self, population: torch.Tensor, jobs: np.ndarray) -> np.ndarray:
        """Returns of ``jobs`` rolled out inside the MDN-RNN, from real first frames."""
        options = self.options
        seed = int(self.rng.integers(2**31))
        z0 = initial_latents(Path(self.config.logdir), len(jobs), self.rng).to(self.device)
        return dream_rollouts(
            self.agent,
            population,
            jobs,
            z0,
            seed + np.arange(len(jobs)),
            options.time_limit,
            options.temperature,
            options.dream_reward,
            options.dream_done,
        )

    def _evaluate(self, backend: Backend, logger: Logger, console: Console, display: bool) -> None:
        """Runs the CMA-ES mean; keeps it if it beats the best so far.

        A controller trained in the dream is also evaluated (and so chosen) in the dream: the real
        environment first sees it in ``test``, as in the paper's experiment.
        """
        mean = torch.as_tensor(self.es.mean, dtype=torch.float32, device=self.device).unsqueeze(0)
        jobs = np.zeros(self.options.eval_rollouts, np.int64)
        frames: np.ndarray | None = None
        if self.options.dream:
            returns = self._dream(mean, jobs)
        else:
            returns, frames = backend.rollouts(mean, jobs, seed=int(self.rng.integers(2**31)), record=True)
        score = float(returns.mean())
        logger.scalar("controller/eval_return", score)
        logger.scalar("controller/eval_return_std", float(returns.std()))
        if frames is not None:
            path = logger.video("controller/eval_video", frames, step=self.generation)
            if display:
                _display(frames, path, console)
        if score > self.best_return:
            self.best_return, self.best_params = score, mean[0].cpu()
            state = {
                "params": self.best_params,
                "return": score,
                "return_std": float(returns.std()),
                "generation": self.generation,
                "spec": self._spec(),
                "models": self.agent.models,
            }
            save_checkpoint(self.directory / BEST_NAME, state, kind=KIND)
        where = "dreamed" if self.options.dream else "real"
        console.print(
            f"{self.directory.name} generation {self.generation}: evaluation {score:.1f} "
            f"± {returns.std():.1f} over {len(returns)} {where} episodes (best {self.best_return:.1f})"
        )

    def _spec(self) -> dict[str, Any]:
        agent = self.agent
        return {
            "inp": agent.controller.inp,
            "actions": agent.controller.actions,
            "discrete": agent.discrete,
            "memory": agent.memory,
            "clip_brake": agent.clip_brake,
            **({"cell": True} if agent.cell else {}),  # absent otherwise: older checkpoints still match
        }

    def _save(self) -> None:
        state = {
            "generation": self.generation,
            "best_return": self.best_return,
            "best_params": self.best_params,
            "es": pickle.dumps(self.es),
            "rng": self.rng.bit_generator.state,
            "global_rng": rng_state(),
            "spec": self._spec(),
            "models": self.agent.models,
        }
        save_checkpoint(self.directory / CHECKPOINT_NAME, state, kind=KIND)

    def _resume(self) -> None:
        state = load_checkpoint(self.directory / CHECKPOINT_NAME, kind=KIND)
        if state["spec"] != self._spec():
            raise DreamworldError(
                f"{self.directory} holds a controller with other settings; keep them or use --noreload"
            )
        check_models(state, self.agent, self.directory)
        self.es = _load_es(state["es"], self.directory)
        self.generation, self.best_return = state["generation"], state["best_return"]
        self.best_params = state["best_params"]
        self.rng.bit_generator.state = state["rng"]
        set_rng_state(state["global_rng"])

    def _result(self) -> ControllerResult:
        return ControllerResult(self.directory, self.best_return, self.generation)


class _CMAUnpickler(pickle.Unpickler):
    """Rebuilds a CMA-ES state and nothing else.

    ``cma`` objects are only picklable as a whole, so the checkpoint holds them pickled; this reader
    accepts exactly the classes such a pickle names (checked against cma 3.3 - 4.x) and the one
    attribute lookup it makes (the sampler's ``RandomState.randn``). Any other global, such as a
    function of ``os`` or ``builtins.eval``, is refused before anything is called.
    """

    _ALLOWED: ClassVar[dict[str, set[str]]] = {
        "cma.boundary_handler": {"BoundNone", "BoundTransform", "BoundPenalty"},
        "cma.evolution_strategy": {
            "CMAEvolutionStrategy", "_CMASolutionDict_functional", "_CMAStopDict", "_StopTolXStagnation",
            "_pass",
        },
        "cma.logger": {"CMADataLogger"},
        "cma.optimization_tools": {"BestSolution"},
        "cma.options_parameters": {"CMAOptions", "CMAParameters", "is_feasible"},
        "cma.recombination_weights": {"RecombinationWeights"},
        "cma.sampler": {"GaussFullSampler", "GaussStandardConstant"},
        "cma.sigma_adaptation": {
            "CMAAdaptSigmaCSA", "CMAAdaptSigmaTPA", "CMAAdaptSigmaNone", "_TPAParameters",
        },
        "cma.transformations": {"DiagonalDecoding", "GenoPheno", "RoundIntegerVariables"},
        "cma.utilities.utils": {
            "BlancClass", "DictFromTagsInString", "ElapsedWCTime", "MoreToWrite", "SolutionDict",
        },
        "numpy": {"dtype", "ndarray"},
        "numpy.core.multiarray": {"_reconstruct", "scalar"},
        "numpy._core.multiarray": {"_reconstruct", "scalar"},
        "numpy.linalg": {"eigh"},
        "numpy.random._mt19937": {"MT19937"},
        "numpy.random._pickle": {"__bit_generator_ctor", "__randomstate_ctor"},
        "collections": {"OrderedDict", "defaultdict"},
        "builtins": {"range", "slice", "set", "frozenset", "complex", "bytearray"},
    }  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("builtins", "getattr"):
            return _sampler_getattr
        if name in self._ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a CMA-ES state")


def _sampler_getattr(obj: Any, name: str) -> Any:
    if isinstance(obj, np.random.RandomState) and name in ("randn", "rand", "standard_normal"):
        return getattr(obj, name)
    raise pickle.UnpicklingError(f"attribute {name} of {type(obj).__name__} is not part of a CMA-ES state")


def _load_es(data: bytes, directory: Path) -> Any:
    try:
        return _CMAUnpickler(io.BytesIO(data)).load()
    except Exception as error:
        raise CheckpointError(
            f"the CMA-ES state in {directory / CHECKPOINT_NAME} cannot be read ({error}); "
            "start the controller over with --noreload"
        ) from None


def _display(frames: np.ndarray, path: Path, console: Console) -> None:
    """Shows the best candidate's rollout in a window when a display exists, else names the video."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        console.print(f"no display found; the rollout of the best candidate is in {path}")
        return
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    image = axis.imshow(frames[0])
    axis.set_axis_off()
    for frame in frames[::2]:
        image.set_data(frame)
        plt.pause(0.001)
    plt.close(figure)
