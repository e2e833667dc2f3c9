"""What the VAE and MDN-RNN stages share: epochs, a held-out loss, learning-rate halving, early
stopping, the best model kept apart, and resuming from the stage's directory.

A stage directory (``<logdir>/vae``, ``<logdir>/mdnrnn``) holds:

- ``checkpoint.pt``: the last epoch's model, optimiser, scheduler, counters and random state, written
  atomically after every epoch; the next run of the stage continues from it;
- ``best.pt``: the model with the lowest held-out loss so far and the settings to rebuild it, which
  later stages load;
- ``metrics.jsonl`` and TensorBoard events.

``--noreload`` moves an existing stage directory aside (``vae.old-<time>``) and starts over.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from dreamworld.config import Config
from dreamworld.errors import DreamworldError
from dreamworld.run.checkpoint import CHECKPOINT_NAME, load_checkpoint, move_aside, save_checkpoint
from dreamworld.run.logger import Logger
from dreamworld.run.rundir import mark_started
from dreamworld.run.seeding import rng_state, set_rng_state

BEST_NAME = "best.pt"


@dataclass(frozen=True)
class Schedule:
    """How long a stage trains and when it stops early."""

    epochs: int
    patience: int
    lr_patience: int


@dataclass
class StageResult:
    """Where a stage left its best model, and how good it is."""

    directory: Path
    best: Path
    best_loss: float
    epochs: int


class EpochLoop:
    """Runs epochs of one model until ``epochs``, or until the held-out loss stops improving.

    Args:
        directory: The stage directory.
        kind: Checkpoint kind (``worldmodels-vae``); a checkpoint of another kind is refused.
        model: The network; its ``state_dict`` goes into both files.
        spec: Plain data that rebuilds the network (sizes), stored in ``best.pt``.
        lr: Initial Adam learning rate.
        schedule: Epochs, patience and learning-rate patience.
        noreload: Move an existing directory aside and start over.
        logger: Keyword arguments of :class:`~dreamworld.run.logger.Logger`.
    """

    def __init__(
        self,
        directory: Path,
        kind: str,
        model: nn.Module,
        spec: dict[str, Any],
        lr: float,
        schedule: Schedule,
        noreload: bool,
        logger: dict[str, Any],
    ) -> None:
        self.directory, self.kind, self.model, self.spec = directory, kind, model, spec
        self.schedule = schedule
        self.console = Console(soft_wrap=True)  # log files: no wrapping at 80 columns
        if noreload and (moved := move_aside(directory)) is not None:
            self.console.print(f"moved the previous {directory.name} stage to {moved}")
        directory.mkdir(parents=True, exist_ok=True)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=0.5, patience=schedule.lr_patience
        )
        self.epoch, self.best_loss, self.bad_epochs, self.stopped = 0, float("inf"), 0, False
        self.model_id = ""
        self.logger_options = logger
        if (directory / CHECKPOINT_NAME).exists():
            self._resume()

    def run(
        self,
        train_epoch: Callable[[], dict[str, float]],
        evaluate: Callable[[], float],
        report: Callable[[Logger], None] | None = None,
    ) -> StageResult:
        """Trains epoch after epoch; returns the best model's file.

        Args:
            train_epoch: One pass over the training data; returns mean metrics.
            evaluate: The held-out loss (lower is better).
            report: Called after each epoch to add images to the logger.
        """
        mark_started()  # the stage's checkpoint loaded: the experiment's config.yaml may change now
        name = self.directory.name
        if (done := self.finished()) is not None:
            return done
        with Logger(self.directory, total_steps=self.schedule.epochs, **self.logger_options) as logger:
            while self.epoch < self.schedule.epochs and not self.stopped:
                metrics = train_epoch()
                loss = evaluate()
                self.epoch += 1
                self.scheduler.step(loss)
                if loss < self.best_loss:
                    self.best_loss, self.bad_epochs = loss, 0
                    self._save_best()
                else:
                    self.bad_epochs += 1
                self.stopped = self.bad_epochs >= self.schedule.patience
                logger.add(metrics, prefix=f"{name}/")
                logger.scalar(f"{name}/holdout_loss", loss)
                logger.scalar(f"{name}/lr", self.optimizer.param_groups[0]["lr"])
                if report is not None:
                    report(logger)
                logger.write(self.epoch)
                self._save()
                self.console.print(
                    f"{name} epoch {self.epoch}: train loss {metrics.get('loss', float('nan')):.4g}, "
                    f"held-out {loss:.4g} (best {self.best_loss:.4g})"
                )
        return self._result()

    def finished(self) -> StageResult | None:
        """The result, saying so, when a resumed stage has nothing left to train; else None.

        Lets a stage skip loading its data when it is already done.
        """
        if not (self.stopped or self.epoch >= self.schedule.epochs):
            return None
        self.console.print(
            f"{self.directory.name}: already trained ({self.epoch} epochs, "
            f"best held-out loss {self.best_loss:.4g})"
        )
        return self._result()

    def _result(self) -> StageResult:
        return StageResult(self.directory, self.directory / BEST_NAME, self.best_loss, self.epoch)

    def _save(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "best_loss": self.best_loss,
            "bad_epochs": self.bad_epochs,
            "stopped": self.stopped,
            "model_id": self.model_id,
            "spec": self.spec,
            "rng": rng_state(),
        }
        save_checkpoint(self.directory / CHECKPOINT_NAME, state, kind=self.kind)

    def _save_best(self) -> None:
        self.model_id = uuid.uuid4().hex
        state = {
            "model": self.model.state_dict(),
            "spec": self.spec,
            "loss": self.best_loss,
            "epoch": self.epoch,
        }
        save_checkpoint(self.directory / BEST_NAME, {**state, "model_id": self.model_id}, kind=self.kind)

    def _resume(self) -> None:
        state = load_checkpoint(self.directory / CHECKPOINT_NAME, kind=self.kind)
        # A key the saved spec lacks was added to the stage later: the configuration supplies it.
        changed = [key for key, value in state["spec"].items() if self.spec.get(key, value) != value]
        if changed:
            key = changed[0]
            raise DreamworldError(
                f"{self.directory.name} setting '{key}' is {self.spec[key]} here but {state['spec'][key]} in "
                f"{self.directory}'s model; keep the settings or start the stage over with --noreload"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.best_loss = state["epoch"], state["best_loss"]
        self.bad_epochs, self.stopped, self.model_id = (
            state["bad_epochs"],
            state["stopped"],
            state["model_id"],
        )
        set_rng_state(state["rng"])


def stage_loop(
    config: Config,
    stage: str,
    kind: str,
    model: nn.Module,
    spec: dict[str, Any],
    options: Any,
    noreload: bool,
) -> EpochLoop:
    """The :class:`EpochLoop` of ``<logdir>/<stage>`` with a section's ``lr``, ``epochs``, ``patience``
    and ``lr_patience`` and the run's logging settings."""
    return EpochLoop(
        Path(config.logdir) / stage,
        kind,
        model,
        spec,
        options.lr,
        Schedule(options.epochs, options.patience, options.lr_patience),
        noreload,
        {"tensorboard": config.log.tensorboard, "progress": config.log.progress},
    )


def load_best(
    directory: Path, kind: str, build: Callable[[dict[str, Any]], nn.Module]
) -> tuple[nn.Module, dict[str, Any]]:
    """The best model of a stage, rebuilt from its spec; also returns the file's state.

    Raises:
        DreamworldError: The stage has not produced a model yet (names the command to run).
    """
    path = directory / BEST_NAME
    if not path.exists():
        stage = {"vae": "train-vae", "mdnrnn": "train-mdnrnn"}.get(directory.name, directory.name)
        raise DreamworldError(f"no trained model in {directory}; run `dreamworld worldmodels {stage}` first")
    state = load_checkpoint(path, kind=kind)
    model = build(state["spec"])
    model.load_state_dict(state["model"])
    model.eval()
    return model, state
