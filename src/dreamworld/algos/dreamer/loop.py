"""Dreamer's training loop: act, store, replay, update, evaluate, checkpoint.

Metrics are written and checkpoints saved on a wall-clock period (``dreamer.log_every``,
``dreamer.save_every`` seconds) and, when set, also every ``dreamer.log_steps`` / ``dreamer.save_steps``
policy steps.

The loop keeps the ratio of replayed steps to environment steps fixed (``dreamer.train_ratio``, as
DreamerV3 defines it): every policy step (counted over all parallel environments) earns
``train_ratio / (batch * length)`` updates, and an update is taken whenever a whole one is earned.

A run directory resumes exactly: ``<logdir>/checkpoint.pt`` holds the agent, optimisers, counters,
random states, the policy's latent state and the environments' episodes in flight (snapshots, where
the suite supports them: :mod:`dreamworld.envs.base`), and names the replay's chunk files under
``<logdir>/replay/``, which are restored slot for slot. A resumed run then takes the same steps and
updates as one that was never stopped (tests/test_train.py checks this). Where the environments
cannot be captured (Atari, Box2D), the episodes in flight end at the checkpoint and the resumed run
starts new ones; their steps stay in the replay. The checkpoint also holds the random policy of the
prefill and the metrics averaged since the last write, so that a run resumed during the prefill, or
between two metric writes, writes what an uninterrupted one writes.

What a killed run wrote after its last checkpoint is dropped when it resumes: the checkpoint records
how long ``metrics.jsonl`` and ``scores.jsonl`` were and the newest episode file, so the resumed run
truncates the logs, removes later episodes and videos, and tells TensorBoard to discard later events.
A new run writes its first checkpoint at step 0, before its prefill, so that this holds for a run
killed before its first periodic checkpoint too (it would otherwise start over and append to what
it had written). A killed and resumed run's directory then holds what an uninterrupted one holds.

Ctrl-C or SIGTERM lets the current update finish, writes a checkpoint and raises
:class:`~dreamworld.errors.RunInterrupted` (exit status 130 or 143 on the command line); a second
Ctrl-C aborts at once. An update whose gradients are not finite is skipped (:mod:`dreamworld.nn.optim`);
``dreamer.max_nonfinite`` of them in a row stop the run with an error, and a checkpoint is never
overwritten by one holding a non-finite number.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamworld.algos.dreamer.agent import CHECKPOINT_KIND, Dreamer, PolicyState
from dreamworld.config import Config, config_to_dict
from dreamworld.config.loader import TASK_KEYS, changed_keys
from dreamworld.data import EPISODE_DIR, EpisodeStore, Replay
from dreamworld.data.replay import REPLAY_DIR
from dreamworld.envs.parallel import VectorEnv, exit_if_reimported
from dreamworld.errors import CheckpointError, DreamworldError, RunInterrupted
from dreamworld.run.checkpoint import (
    CHECKPOINT_NAME,
    arrays_to_tensors,
    load_checkpoint,
    save_checkpoint,
    tensors_to_arrays,
)
from dreamworld.run.distributed import any_rank, barrier, broadcast_parameters, check_replicas, gather_objects
from dreamworld.run.distributed import current as current_ranks
from dreamworld.run.distributed import setup as setup_ranks
from dreamworld.run.driver import Driver, vector_env
from dreamworld.run.episodes import EpisodeTally, episode_stats
from dreamworld.run.logger import Logger, NullLogger, rewind_logs
from dreamworld.run.policies import RandomPolicy
from dreamworld.run.rundir import RunDirectory
from dreamworld.run.seeding import rng_state, seed_everything, set_rng_state
from dreamworld.run.system import learner_threads, pick_device, tune_allocator

KIND = CHECKPOINT_KIND


@dataclass
class TrainResult:
    """Where a training run left its outputs, and its final evaluation."""

    logdir: Path
    steps: int
    updates: int
    eval_return: float | None = None
    eval_returns: list[float] = field(default_factory=list)
    checkpoint: Path | None = None


@dataclass
class Counters:
    """Progress of a run; saved in checkpoints."""

    steps: int = 0
    updates: int = 0
    episodes: int = 0
    earned: float = 0.0

    def state(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "updates": self.updates,
            "episodes": self.episodes,
            "earned": self.earned,
        }


def train(config: Config, agent: Dreamer | None = None) -> TrainResult:
    """Trains a Dreamer agent as ``config`` describes, resuming from ``config.logdir`` if possible.

    Args:
        config: The resolved configuration.
        agent: An agent to train in place (built from ``config`` when None). A checkpoint in the run
            directory overrides its state.

    Returns:
        Counters, the checkpoint path and the final evaluation return.
    """
    exit_if_reimported()  # a worker process re-importing an unguarded script must not train
    ranks = setup_ranks()  # a data-parallel run's ranks (run/distributed.py); else one process
    # Rank 0 holds the run directory and writes to it; the other ranks write nothing.
    directory = RunDirectory(config.logdir, config) if ranks.main else nullcontext(_OtherRank())
    with directory as run:
        seed_everything(config.seed)  # the same initial parameters on every rank
        tune_allocator()
        torch.set_num_threads(learner_threads(config.dreamer.threads))
        env = vector_env(config.env, training=True)
        eval_env = vector_env(config.env, num_envs=1, parallel="serial")
        with env, eval_env:
            if agent is None:
                device = pick_device(config.dreamer.device)
                agent = Dreamer(config.dreamer, env.obs_space, env.act_space, device)
            if agent.device.type == "cuda":
                torch.set_float32_matmul_precision("high")  # float32 runs take tf32 matmuls on a GPU
            broadcast_parameters(agent)
            loop = _Loop(config, agent, env, eval_env)
            run.started()  # only now does the run's config.yaml change
            return loop.run()


MODEL_PREFIXES = ("dreamer.world_model.", "dreamer.actor.", "dreamer.critic.")


class _OtherRank:
    """What a rank other than 0 has instead of the run directory."""

    def started(self) -> None:
        """Rank 0 writes ``config.yaml``."""


class NonFiniteError(DreamworldError):
    """Too many updates in a row had non-finite gradients."""


class _StopSignals:
    """Turns the first Ctrl-C or SIGTERM into a request to stop after the current update; a second
    one aborts at once. Installed only in the main thread (signal handlers live there)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # the second one: stop now, without a checkpoint
        self.signum = signum
        name = signal.Signals(signum).name
        print(
            f"\n{name}: saving a checkpoint after this update (Ctrl-C again aborts at once)", file=sys.stderr
        )


class _EvaluationStopped(Exception):
    """A stop was requested during an evaluation, which is abandoned."""


class DeviceMeans:
    """Means of each update's scalar metrics over a log interval, summed on the device.

    An update returns its metrics as device tensors; adding them is one stack and one sum, and
    :meth:`read` brings the means to the host once per interval (one synchronisation instead of one per
    metric and update).
    """

    def __init__(self) -> None:
        self.sums: dict[tuple[str, ...], tuple[torch.Tensor, int]] = {}

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        keys = tuple(metrics)
        values = torch.stack([value.detach().float() for value in metrics.values()])
        total, count = self.sums.get(keys, (torch.zeros_like(values), 0))
        self.sums[keys] = (total + values, count + 1)

    def read(self) -> dict[str, float]:
        """The means since the last read, by name; starts a new interval."""
        means: dict[str, float] = {}
        for keys, (total, count) in self.sums.items():
            means.update(zip(keys, (total / count).tolist(), strict=True))
        self.sums = {}
        return means

    def state_dict(self) -> list[dict[str, Any]]:
        """The sums of the interval so far, as plain data for a checkpoint."""
        return [
            {"keys": list(keys), "total": total, "count": count} for keys, (total, count) in self.sums.items()
        ]

    def load_state_dict(self, state: list[dict[str, Any]], device: torch.device) -> None:
        self.sums = {
            tuple(group["keys"]): (group["total"].to(device), int(group["count"])) for group in state
        }


class _Clock:
    """Fires every ``seconds`` of wall-clock time, and when ``steps > 0`` at each multiple of ``steps``
    policy steps (the same steps whether or not the run was resumed in between)."""

    def __init__(self, seconds: float, steps: int, start_step: int) -> None:
        self.seconds, self.steps = seconds, steps
        self.last_time, self.last_step = time.monotonic(), start_step

    def due(self, step: int) -> bool:
        now = time.monotonic()
        crossed = self.steps and step // self.steps > self.last_step // self.steps
        if now - self.last_time >= self.seconds or crossed:
            self.last_time, self.last_step = now, step
            return True
        return False


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to_device(item, device) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_device(item, device) for item in value)
    return value


class _Loop:
    """The state of one training run and the clocks that drive its side tasks."""

    def __init__(self, config: Config, agent: Dreamer, env: VectorEnv, eval_env: VectorEnv) -> None:
        self.config, self.agent, self.env, self.eval_env = config, agent, env, eval_env
        self.logdir = Path(config.logdir)
        self.checkpoint = self.logdir / CHECKPOINT_NAME
        self.store = EpisodeStore(self.logdir / EPISODE_DIR)
        self.ranks = current_ranks()
        rank = self.ranks.rank  # each rank draws its own environments, replay batches and actions
        self.replay_dir = self.logdir / (REPLAY_DIR if rank == 0 else f"{REPLAY_DIR}-rank{rank}")
        self.exact = True  # whether a resumed rank found its own state in the checkpoint
        self.replay = Replay(config.replay.capacity, config.replay.length, seed=config.seed + rank)
        self.counters = Counters()
        self.policy_state: PolicyState = None
        self.metrics: dict[str, list[float]] = {}
        self.update_metrics = DeviceMeans()
        self.stop = _StopSignals()
        self.last_eval: tuple[int, list[float]] = (-1, [])  # step and returns of the latest evaluation
        resumed = self._resume() if self.checkpoint.exists() else None
        before = resumed if resumed is not None else {}
        self.seconds_before = float(before.get("seconds", 0.0))  # the clocks of earlier invocations
        self.cpu_before = float(before.get("cpu", 0.0))
        self.started, self.cpu_started = time.monotonic(), time.process_time()
        self.last_rates = (self.started, self.counters.steps, self.counters.updates)
        dreamer = config.dreamer
        self.ratio = dreamer.train_ratio / (config.replay.batch * config.replay.length)
        self.logger: Logger | NullLogger = (
            NullLogger()
            if not self.ranks.main
            else Logger(
                self.logdir,
                total_steps=dreamer.steps,
                tensorboard=config.log.tensorboard,
                progress=config.log.progress,
                video_fps=config.log.video_fps,
                description=f"{config.env.name}",
                purge_step=None if resumed is None else self.counters.steps + 1,
            )
        )
        self.prefill_policy = RandomPolicy(env.act_space, env.num_envs, seed=config.seed + 7_919 * rank)
        if resumed is not None:
            for rng, saved in zip(self.prefill_policy.rngs, resumed.get("prefill_rngs", []), strict=False):
                rng.bit_generator.state = saved
            self.metrics = {key: list(values) for key, values in resumed.get("episode_metrics", {}).items()}
            self.update_metrics.load_state_dict(resumed.get("update_metrics", []), agent.device)
        self.driver = Driver(env, seed=config.seed + self.counters.episodes + 100_003 * rank)
        if self.ranks.world > 1 and (resumed is None or not self.exact):
            torch.manual_seed(config.seed + 1_000_003 * rank + self.counters.updates)
        saved_ranks = 1 + len(resumed.get("ranks") or []) if resumed is not None else self.ranks.world
        if saved_ranks != self.ranks.world and self.ranks.main:
            print(
                f"the checkpoint is of {saved_ranks} rank(s), this run has {self.ranks.world}: every rank "
                "goes on from rank 0's agent and replay",
                flush=True,
            )
        self.driver.on_step(self._on_step)
        self.driver.on_episode(self._on_episode)
        if resumed is not None and resumed.get("threads") and not config.dreamer.threads:
            torch.set_num_threads(int(resumed["threads"]))  # the run's own, for an exact resume
        same_envs = (
            resumed is not None and resumed.get("envs") is not None and len(resumed["envs"]) == env.num_envs
        )
        if same_envs and self.exact and resumed is not None:
            env.set_states(tensors_to_arrays(resumed["envs"]))
            self.driver.load_state_dict(tensors_to_arrays(resumed["driver"]))
            self.policy_state = _to_device(resumed["policy_state"], agent.device)

    def hours(self) -> float:
        """Wall-clock hours this run has trained, over all its resumes (up to their last checkpoints)."""
        return (self.seconds_before + time.monotonic() - self.started) / 3600

    def cpu_hours(self) -> float:
        """CPU hours of this process (all its threads; not environment worker processes), over resumes."""
        return (self.cpu_before + time.process_time() - self.cpu_started) / 3600

    def out_of_time(self) -> bool:
        """Whether the run has used up ``dreamer.max_hours`` (when set)."""
        return bool(self.config.dreamer.max_hours) and self.hours() >= self.config.dreamer.max_hours

    def run(self) -> TrainResult:
        dreamer = self.config.dreamer
        log = _Clock(dreamer.log_every, dreamer.log_steps, self.counters.steps)
        save = _Clock(dreamer.save_every, dreamer.save_steps, self.counters.steps)
        every = dreamer.eval_every
        # Evaluations fall on multiples of eval_every, whatever step a resumed run starts from.
        next_eval = (self.counters.steps // every + 1) * every if every else None
        self._announce()
        with self.logger, self.stop:
            if not self.checkpoint.exists():  # a new run: a checkpoint at step 0, so that a run
                self.save()  # killed before its first periodic one drops what it wrote on resuming
            self._prefill()
            if not self.stop.signum:
                self._warmup()
            while self.counters.steps < dreamer.steps and not self._should_stop():
                self.driver.run(self._act, steps=self.env.num_envs)
                self._update()
                if log.due(self.counters.steps):
                    self._write_metrics()
                if next_eval is not None and self.counters.steps >= next_eval:
                    self._evaluate_unless_stopped()
                    next_eval = (self.counters.steps // every + 1) * every
                due = save.due(self.counters.steps) and self.counters.steps < dreamer.steps
                if any_rank(due):  # (the last step's checkpoint follows the final evaluation)
                    self.save()
            self._write_metrics()
            if self.stop.signum:
                self._save_and_raise(self.stop.signum)
            # The final checkpoint follows the final evaluation, so that it accounts for every line;
            # a run that has just evaluated at this step is not evaluated twice.
            if self.last_eval[0] == self.counters.steps:
                returns = self.last_eval[1]
            else:
                returns = self._evaluate_unless_stopped()
            self.save()
            if self.stop.signum:
                self._save_and_raise(self.stop.signum)
        return TrainResult(
            self.logdir,
            self.counters.steps,
            self.counters.updates,
            float(np.mean(returns)) if returns else None,
            returns,
            self.checkpoint,
        )

    def _should_stop(self) -> bool:
        """Out of time or asked to stop (Ctrl-C, SIGTERM): on any rank, then on all of them."""
        stop = self.out_of_time() or bool(self.stop.signum)
        return any_rank(stop) if self.ranks.world > 1 else stop

    def _announce(self) -> None:
        """One line on what the run is about to do, so that a default run is never a surprise."""
        if not self.ranks.main:
            return
        config, counters = self.config, self.counters
        params = sum(p.numel() for p in self.agent.parameters()) / 1e6
        count = torch.get_num_threads()
        threads = f", {count} thread{'' if count == 1 else 's'}" if self.agent.device.type == "cpu" else ""
        where = f"resuming from step {counters.steps:,}" if counters.steps else "a new run"
        print(
            f"training {config.env.name} for {config.dreamer.steps:,} steps ({where}) in {self.logdir} on "
            f"{self.agent.device}{threads}: {params:.2g}M parameters, {config.env.envs} environment(s)"
            + (f", {self.ranks.world} ranks" if self.ranks.world > 1 else ""),
            flush=True,
        )

    def _evaluate_unless_stopped(self) -> list[float]:
        try:
            return self.evaluate()
        except _EvaluationStopped:
            return []

    def _save_and_raise(self, signum: int) -> None:
        path = self.save()
        name = signal.Signals(signum).name
        raise RunInterrupted(
            signum,
            f"{name}: stopped at step {self.counters.steps:,} with a checkpoint ({path}); run the same "
            "command again to resume",
        )

    def evaluate(self) -> list[float]:
        """Runs ``eval_episodes`` episodes with the evaluation policy; logs returns and one video."""
        dreamer = self.config.dreamer
        if not dreamer.eval_episodes or not self.ranks.main:  # rank 0 evaluates
            return []
        tally = EpisodeTally()
        frames: list[np.ndarray] = []
        driver = Driver(self.eval_env, seed=self.config.seed + 1_000_003 + self.counters.steps)
        latent: list[PolicyState] = [None]

        def act(obs: dict[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
            if self.stop.signum:
                raise _EvaluationStopped
            if not tally.returns:
                frame = obs["image"][0] if "image" in obs else self.eval_env.render(0)
                if frame is not None:
                    frames.append(frame)
            action, latent[0] = self.agent.policy(obs, latent[0], mode=dreamer.eval_mode)
            return action, None

        driver.on_episode(tally)
        driver.run(act, episodes=dreamer.eval_episodes)
        returns = tally.returns[: dreamer.eval_episodes]
        self.last_eval = (self.counters.steps, returns)
        self.logger.note(
            f"step {self.counters.steps:,}: evaluation return {np.mean(returns):.1f} ± {np.std(returns):.1f} "
            f"over {len(returns)} episode(s)"
        )
        self.logger.scalar("eval/return", float(np.mean(returns)))
        self.logger.scalar("eval/return_std", float(np.std(returns)))
        self.logger.scalar("eval/length", float(np.mean(tally.lengths[: len(returns)])))
        self.logger.scalar("time/hours", self.hours())
        self.logger.scalar("time/cpu_hours", self.cpu_hours())
        for key, value in tally.mean_stats(len(returns)).items():
            self.logger.scalar(f"eval/{key}", value)
        if frames:
            self.logger.video("eval/video", np.stack(frames), step=self.counters.steps)
        self.logger.write(self.counters.steps)
        return returns

    def save(self) -> Path:
        """Writes the replay's new chunks, then the checkpoint atomically, then drops stale chunks.

        Raises:
            NonFiniteError: The agent holds a NaN or an infinity; the checkpoint on disk is kept.
        """
        check_replicas(self.agent)  # every rank, at the same points: identical parameters
        if not self.agent.is_finite():  # (on every rank alike: their parameters are the same)
            raise NonFiniteError(
                f"the agent holds NaN or infinite values at step {self.counters.steps:,}; the checkpoint "
                f"in {self.logdir} was not overwritten: lower the learning rates or check the environment"
            )
        mine = self._rank_state()  # every rank writes its replay's new chunks
        others = gather_objects(mine)[1:]
        if self.ranks.main:
            episodes = self.store.paths() if self.config.replay.save_episodes else []
            state = {
                **self.agent.training_state(),
                **mine,
                "counters": self.counters.state(),
                "run_config": config_to_dict(self.config),
                "seconds": self.hours() * 3600,
                "cpu": self.cpu_hours() * 3600,
                "threads": torch.get_num_threads(),
                "logs": self.logger.marks(),
                "last_episode": episodes[-1].name if episodes else "",
                "ranks": others,  # what ranks 1..N-1 need to go on exactly
            }
            save_checkpoint(self.checkpoint, state, kind=KIND)
        barrier()  # stale chunks go only once the checkpoint that no longer names them is written
        self.replay.prune(self.replay_dir, mine["replay"])
        return self.checkpoint

    def _rank_state(self) -> dict[str, Any]:
        """What this rank alone holds: its replay's manifest, random state, environments in flight,
        the random policy of its prefill and the metrics since the last write."""
        envs = self.env.get_states() if self.driver.obs is not None else None
        return {
            "rng": rng_state(),
            "replay": self.replay.save(self.replay_dir),
            "envs": None if envs is None else arrays_to_tensors(envs),
            "driver": None if envs is None else arrays_to_tensors(self.driver.state_dict()),
            "policy_state": None if envs is None else _to_device(self.policy_state, torch.device("cpu")),
            "prefill_rngs": [rng.bit_generator.state for rng in self.prefill_policy.rngs],
            "episode_metrics": {key: list(values) for key, values in self.metrics.items()},
            "update_metrics": _to_device(self.update_metrics.state_dict(), torch.device("cpu")),
        }

    def _resume(self) -> dict[str, Any]:
        """Restores the learner and the replay; returns the checkpoint for the environment part."""
        state = load_checkpoint(self.checkpoint, kind=KIND)
        changed = changed_keys(state.get("run_config"), config_to_dict(self.config))
        task = [key for key in changed if key in TASK_KEYS]
        try:
            if task:
                raise CheckpointError("")
            self.agent.load_training_state(state)
        except CheckpointError:
            model = [key for key in changed if key.startswith(MODEL_PREFIXES) and ".opt." not in key]
            named = task or model
            if not named:
                raise
            key, (here, there) = named[0], changed[named[0]]
            more = f" (and {len(named) - 1} more)" if len(named) > 1 else ""
            raise CheckpointError(
                f"{key} is {here} here but {there} in the run of {self.checkpoint}{more}, which cannot "
                f"change in a run: continue it without that change, or start another (--fresh, or "
                "another --logdir)"
            ) from None
        self.counters = Counters(**state["counters"])
        # Rank r > 0 of a run with as many ranks as the checkpoint's goes on from its own state;
        # otherwise from rank 0's (its replay and random state), with a note.
        rank, others = self.ranks.rank, state.get("ranks") or []
        self.exact = rank == 0 or len(others) == self.ranks.world - 1
        if rank > 0 and self.exact:
            state = {**state, **others[rank - 1]}
        elif rank > 0:
            state = {**state, "envs": None}
        set_rng_state(state["rng"])
        if "replay" in state:
            source = self.replay_dir if self.exact else self.logdir / REPLAY_DIR
            self.replay.load(source, state["replay"])
            if self.exact:
                self.replay.prune(self.replay_dir, state["replay"])
            else:  # rank 0's replay, copied into this rank's folder at the next save, sampled anew
                self.replay.mark_unsaved()
                seed = [self.config.seed, self.ranks.rank, self.counters.updates]
                self.replay.rng = np.random.default_rng(seed)
        else:  # a checkpoint of dreamworld 0.1 without replay files: refill from the episodes
            self.replay.restore(self.store)
            self.replay.rng.bit_generator.state = state["replay_rng"]
        if "logs" in state and self.ranks.main:  # drop what a killed run wrote after this checkpoint
            rewind_logs(self.logdir, state["logs"], self.counters.steps)
            self.store.remove_after(state["last_episode"])
        return state

    def _prefill(self) -> None:
        """Random actions until ``dreamer.prefill`` steps (never past ``dreamer.steps``)."""
        target = min(self.config.dreamer.prefill, self.config.dreamer.steps)
        if self.counters.steps >= target:
            return
        while self.counters.steps < target and not self.stop.signum:
            before = self.counters.steps
            self.driver.run(self.prefill_policy, steps=self.env.num_envs)
            if self.counters.steps // 100 > before // 100:  # the display, every 100 steps
                self.logger.progress(self.counters.steps)

    def _warmup(self) -> None:
        """Compiles a compiled agent's update on a replayed batch before training, so the first
        updates are not slow ones; the replay draws the same batches as without it."""
        if self.agent.compile_mode == "none":
            return
        rng = self.replay.rng.bit_generator.state
        try:
            data = self.replay.sample(self.config.replay.batch)
        except ValueError:
            return  # no full window yet: the first update compiles
        finally:
            self.replay.rng.bit_generator.state = rng
        seconds = self.agent.warmup(data)
        print(f"compiled the update ({self.agent.compile_mode}) in {seconds:.1f} s", flush=True)
        self.logger.scalar("time/compile_seconds", seconds)

    def _act(self, obs: dict[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        action, self.policy_state = self.agent.policy(obs, self.policy_state, mode="explore")
        return action, None

    def _on_step(self, step: dict[str, np.ndarray]) -> None:
        self.replay.add(step)
        self.counters.steps += len(step["is_first"]) * self.ranks.world  # the steps of all ranks
        if self.counters.steps > self.config.dreamer.prefill:
            # Each rank's own steps earn its updates; N ranks of batch B replay N x B per update.
            self.counters.earned += self.ratio * len(step["is_first"])

    def _on_episode(self, episode: dict[str, np.ndarray], index: int) -> None:
        self.counters.episodes += 1
        if self.config.replay.save_episodes and self.ranks.main:
            self.store.save(episode)
        stats = episode_stats(episode)
        for key, value in stats.items():
            self.metrics.setdefault(f"episode/{key}", []).append(value)
        score, length = float(episode["reward"].sum()), len(episode["reward"]) - 1
        self.logger.score(self.counters.steps, score, length, **stats)

    def _update(self) -> None:
        batch = self.config.replay.batch
        while self.counters.earned >= 1.0 and not self.stop.signum:
            try:
                data = self.replay.sample(batch)
            except ValueError:
                return  # no full window yet: the earned updates wait for more data
            self.update_metrics.add(self.agent.train_step(data))
            self.counters.earned -= 1.0
            self.counters.updates += 1
            if self.agent.device.type == "cpu":  # a free read there; on a GPU at metric writes
                self._check_nonfinite()
            every = self.config.dreamer.report_every
            if every and self.counters.updates % every == 0:
                video = self.agent.open_loop(self.replay.sample(min(batch, 4)))
                if video is not None:
                    self.logger.video("wm/open_loop", video, step=self.counters.steps)

    def _check_nonfinite(self) -> None:
        """Stops the run after ``dreamer.max_nonfinite`` skipped updates in a row."""
        limit = self.config.dreamer.max_nonfinite
        if limit and int(self.agent.nonfinite_streak) >= limit:
            raise NonFiniteError(
                f"{limit} updates in a row had NaN or infinite gradients and were skipped (step "
                f"{self.counters.steps:,}); the last good checkpoint is kept: lower the learning rates, "
                "check the rewards' scale, or raise dreamer.max_nonfinite"
            )

    def _write_metrics(self) -> None:
        self._check_nonfinite()
        for key, values in self.metrics.items():
            self.logger.scalar(key, float(np.mean(values)))
        self.metrics = {}
        for key, value in self.update_metrics.read().items():
            self.logger.scalar(key, value)
        for key, value in self.replay.stats().items():
            self.logger.scalar(key, value)
        self.logger.scalar("train/updates", float(self.counters.updates))
        now, steps, updates = time.monotonic(), self.counters.steps, self.counters.updates
        seconds = now - self.last_rates[0]
        if seconds > 0:
            self.logger.scalar("time/steps_per_second", (steps - self.last_rates[1]) / seconds)
            self.logger.scalar("time/updates_per_second", (updates - self.last_rates[2]) / seconds)
        self.logger.scalar("time/hours", self.hours())
        self.logger.scalar("time/cpu_hours", self.cpu_hours())
        self.last_rates = (now, steps, updates)
        self.logger.write(self.counters.steps)
