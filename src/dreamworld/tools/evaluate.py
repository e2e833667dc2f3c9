"""``dreamworld eval``: a trained run on fresh episodes, whichever algorithm trained it.

A Dreamer run is recognised by its ``checkpoint.pt``, a World Models experiment by its ``vae/``
directory and controllers. The checkpoint loads onto this machine's device (a run trained on a GPU
evaluates on a CPU). Returns go to ``<run>/eval/eval.json`` (Dreamer: with episode lengths and the
means of the environment's statistics such as ``success``; World Models: the controller's ``test.json``) and
videos to ``<run>/eval/videos/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamworld.errors import DreamworldError
from dreamworld.run.checkpoint import CHECKPOINT_NAME, load_checkpoint

EVAL_DIR = "eval"
RESULT_NAME = "eval.json"


@dataclass
class EvalResult:
    """Returns of the evaluation episodes and where the videos went."""

    algorithm: str
    returns: list[float]
    videos: list[Path] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    """Policy steps of each episode (Dreamer runs)."""
    stats: dict[str, float] = field(default_factory=dict)
    """Means over the episodes of the environment's ``log_<name>`` values at their last step, e.g.
    ``success`` (Dreamer runs)."""
    mode: str = ""
    """How a Dreamer chose its actions: ``mode`` (the most likely) or ``sample``."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def evaluate_run(
    logdir: str | Path,
    episodes: int = 10,
    video: bool = False,
    checkpoint: str | Path | None = None,
    stochastic: bool | None = None,
    device: str = "auto",
) -> EvalResult:
    """Evaluates the run in ``logdir`` (or the given checkpoint) for ``episodes`` episodes.

    Args:
        logdir: The run directory.
        episodes: Episodes to run.
        video: Write a video of the first episode.
        checkpoint: A checkpoint file instead of the run's own (Dreamer: any ``checkpoint.pt`` or
            ``agent.save`` file; World Models: a controller's ``best.pt``).
        stochastic: Sample actions (True) or take the most likely (False); None follows the run's
            own ``dreamer.eval_mode``, so that ``dreamworld eval`` measures what the run's
            evaluations measured (Dreamer).
        device: ``auto``, ``cpu`` or ``cuda``.

    Raises:
        DreamworldError: The directory holds no trained run (names what is missing).
    """
    logdir = Path(logdir)
    path = Path(checkpoint) if checkpoint else logdir / CHECKPOINT_NAME
    if (logdir / "vae").is_dir() and (checkpoint is None or Path(checkpoint).name == "best.pt"):
        return _evaluate_worldmodels(logdir, episodes, video, checkpoint, device)
    if not path.exists():
        raise DreamworldError(f"no checkpoint at {path}; train first or pass --checkpoint FILE")
    return _evaluate_dreamer(logdir, path, episodes, video, stochastic, device)


def _evaluate_dreamer(
    logdir: Path, path: Path, episodes: int, video: bool, stochastic: bool | None, device: str
) -> EvalResult:
    from dreamworld.algos.dreamer.agent import Dreamer
    from dreamworld.run.driver import Driver, vector_env
    from dreamworld.run.episodes import EpisodeTally
    from dreamworld.run.logger import Logger

    agent = Dreamer.load(path, device=device)
    config = agent.run_config
    assert config is not None
    tally = EpisodeTally()
    frames: list[np.ndarray] = []
    latent: list[Any] = [None]
    mode = config.dreamer.eval_mode if stochastic is None else ("sample" if stochastic else "mode")
    with vector_env(config.env, num_envs=1, parallel="serial") as env:

        def act(obs: dict[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
            if video and not tally.returns:
                frame = obs["image"][0] if "image" in obs else env.render(0)
                if frame is not None:
                    frames.append(np.asarray(frame))
            action, latent[0] = agent.policy(obs, latent[0], mode=mode)
            return action, None

        driver = Driver(env, seed=config.seed + 5_000_011)
        driver.on_episode(tally)
        driver.run(act, episodes=episodes)
    returns, lengths, stats = tally.returns[:episodes], tally.lengths[:episodes], tally.mean_stats(episodes)
    result = EvalResult("dreamer", returns, lengths=lengths, stats=stats, mode=mode)
    with Logger(logdir / EVAL_DIR, tensorboard=config.log.tensorboard, progress=False) as logger:
        if frames:
            result.videos.append(logger.video("eval/video", np.stack(frames), step=0))
        logger.scalar("eval/return", result.mean)
        logger.scalar("eval/return_std", result.std)
        logger.scalar("eval/length", float(np.mean(result.lengths)))
        for key, value in result.stats.items():
            logger.scalar(f"eval/{key}", value)
        logger.write(0)
    record = {"checkpoint": str(path), "mode": mode, "mean": result.mean, "std": result.std}
    record.update(stats=result.stats, returns=result.returns, lengths=result.lengths)
    (logdir / EVAL_DIR / RESULT_NAME).write_text(json.dumps(record, indent=1))
    return result


def _evaluate_worldmodels(
    logdir: Path, episodes: int, video: bool, checkpoint: str | Path | None, device: str
) -> EvalResult:
    from dreamworld.algos.world_models.evaluate import test_controller
    from dreamworld.config import load_config
    from dreamworld.run.system import pick_device

    config = load_config(["worldmodels"], [logdir / "config.yaml"], {"logdir": str(logdir)})
    directory = Path(checkpoint).parent if checkpoint else logdir / "controller"
    if not (directory / "best.pt").exists():
        found = sorted(path.parent.name for path in logdir.glob("controller*/best.pt"))
        hint = f"; trained controllers: {', '.join(found)} (pass --checkpoint DIR/best.pt)" if found else ""
        raise DreamworldError(f"no trained controller in {directory}{hint}")
    spec = load_checkpoint(directory / "best.pt", kind="worldmodels-controller")["spec"]
    dream = "-dream-tau" in directory.name
    temperature = float(directory.name.rsplit("tau", 1)[1]) if dream else 1.15
    result = test_controller(
        config,
        episodes,
        spec["memory"],
        dream,
        temperature,
        video,
        device=pick_device(device),
        directory=directory,
    )
    return EvalResult("worldmodels", result.returns, [result.video] if result.video else [])
