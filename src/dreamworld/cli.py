"""The ``dreamworld`` command line.

Every command that runs something takes the same configuration flags: ``--preset NAME ...`` (shipped
presets, merged in order), ``--config FILE ...`` (the user's YAML, e.g. a run's ``config.yaml``) and
dotted overrides such as ``--replay.capacity 1e6``. Errors the user can fix print one line and exit 2
(``--debug`` shows the traceback; an environment's own crash also goes to ``LOGDIR/errors.log``).
Ctrl-C and SIGTERM exit with 130 and 143; a training run saves its checkpoint first.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dreamworld.errors import DreamworldError, RunInterrupted

ERRORS_FILE = "errors.log"

ALGOS = ["dreamerv1", "dreamerv2", "dreamerv3", "dreamerv3_2024"]
DEFAULT_ALGO = "dreamerv3"

EXAMPLES = """examples:
  dreamworld train --algo dreamerv3 --env dmc/walker-walk --preset dmc_proprio_cpu --logdir runs/walker
  dreamworld train --logdir runs/walker --steps 50000
  dreamworld envs
  dreamworld collect --env carracing --policy brownian --episodes 10 --workers 2 --logdir runs/cr
  dreamworld collect --config runs/cr/config.yaml --logdir runs/cr-again
  dreamworld config --preset dmc_vision --env.name dmc/cheetah-run
  dreamworld worldmodels collect --rollouts 1000 --workers 8 --logdir exp --preset cpu
  dreamworld worldmodels train-vae --logdir exp
  dreamworld worldmodels train-controller --logdir exp --pop-size 32 --n-samples 4 --target-return 950
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    args.argv = argv
    previous = _terminate_as_interrupt()
    try:
        if rest and not args.takes_overrides:
            raise DreamworldError(f"unexpected arguments {' '.join(rest)}; see dreamworld {args.command} -h")
        _check_flags(parser, args, rest)
        return int(args.handler(args, rest) or 0)
    except RunInterrupted as stop:
        print(stop.message, file=sys.stderr)
        return stop.exit_code
    except DreamworldError as error:
        kept = _keep_traceback(error, getattr(args, "logdir", None))
        print(f"error: {error}{f'; traceback in {kept}' if kept else ''}", file=sys.stderr)
        if debug:
            traceback.print_exception(error)
        return 2
    except KeyboardInterrupt:
        print("interrupted; what was written to disk is kept", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, rest: Sequence[str]) -> None:
    """A flag the command does not know (``--stepz``) is an error naming the closest one; dotted
    flags (``--replay.capacity``) are configuration keys, which the configuration checks."""
    names = [args.command] + ([args.stage] if getattr(args, "stage", None) else [])
    command = parser
    for name in names:
        sub = next(a for a in command._actions if isinstance(a, argparse._SubParsersAction))
        command = sub.choices[name]
    flags = [flag for action in command._actions for flag in action.option_strings if flag.startswith("--")]
    for token in rest:
        key = token.split("=", 1)[0]
        if token.startswith("--") and "." not in key and key not in flags:
            close = difflib.get_close_matches(key, flags, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"see dreamworld {' '.join(names)} -h"
            raise DreamworldError(f"unknown flag {key} for dreamworld {' '.join(names)} ({hint})")


def _terminate_as_interrupt() -> Any:
    """SIGTERM stops a command as Ctrl-C does (exit 143); returns the handler it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handle(signum: int, frame: Any) -> None:
        raise RunInterrupted(signum, "SIGTERM: stopped; what was written to disk is kept")

    return signal.signal(signal.SIGTERM, handle)


def _keep_traceback(error: BaseException, logdir: str | None) -> Path | None:
    """Appends the traceback of an error that came with one from elsewhere (an environment's own
    code, in a worker) to ``LOGDIR/errors.log``; returns that file, or None when nothing was kept."""
    if error.__cause__ is None or not logdir or not Path(logdir).is_dir():
        return None
    path = Path(logdir) / ERRORS_FILE
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    text = "".join(traceback.format_exception(error))
    try:
        with open(path, "a", encoding="utf-8") as file:
            file.write(f"--- {stamp} dreamworld {' '.join(sys.argv[1:])}\n{text}\n")
    except OSError:
        return None
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dreamworld",
        description="Reinforcement learning through learned world models.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    envs = commands.add_parser("envs", help="list environment suites and whether they are installed")
    envs.set_defaults(handler=_envs, takes_overrides=False)

    collect = commands.add_parser(
        "collect",
        help="collect episodes with a random or brownian policy",
        description="Collect episodes into LOGDIR/episodes with a fixed policy; a second run on the "
        "same LOGDIR collects only the missing episodes. Any config key can be overridden with "
        "--section.key VALUE (see dreamworld config --keys).",
    )
    _config_flags(collect)
    collect.add_argument("--env", dest="env.name", metavar="ENV", help="environment id")
    collect.add_argument("--policy", dest="collect.policy", choices=["random", "brownian"])
    collect.add_argument("--episodes", dest="collect.episodes", metavar="N", help="episodes in total")
    collect.add_argument(
        "--workers", dest="env.envs", metavar="K", help="environments, each in its own process"
    )
    collect.set_defaults(handler=_collect, takes_overrides=True)

    train = commands.add_parser(
        "train",
        help="train a Dreamer agent",
        description="Train Dreamer V1, V2 or V3; a second call on the same LOGDIR resumes from its "
        "checkpoint. Any config key can be overridden with --section.key VALUE.",
    )
    _config_flags(train)
    train.add_argument(
        "--algo", choices=ALGOS, help=f"agent preset, applied first (a new run: {DEFAULT_ALGO})"
    )
    train.add_argument("--env", dest="env.name", metavar="ENV", help="environment id")
    train.add_argument("--steps", dest="dreamer.steps", metavar="N", help="policy steps to train for")
    train.add_argument("--envs", dest="env.envs", metavar="K", help="parallel environments")
    train.add_argument("--fresh", action="store_true", help="start over: move an existing LOGDIR aside")
    train.add_argument(
        "--nproc", type=int, default=1, metavar="N",
        help="data-parallel ranks on this machine (torch.distributed; torchrun for several machines)",
    )  # fmt: skip
    train.set_defaults(handler=_train, takes_overrides=True)

    _worldmodels_parser(commands)

    evaluate = commands.add_parser(
        "eval",
        help="evaluate a trained run (Dreamer or World Models) on fresh episodes",
        description="Load the checkpoint and configuration of LOGDIR, run episodes with the run's own "
        "evaluation policy (dreamer.eval_mode; --stochastic samples actions, --deterministic takes the "
        "most likely), print the mean and std of the return and write videos.",
    )
    evaluate.add_argument("--logdir", required=True, help="the run directory")
    evaluate.add_argument("--episodes", type=int, default=10, help="episodes to run")
    evaluate.add_argument("--video", action="store_true", help="write a video of the first episode")
    evaluate.add_argument("--checkpoint", help="a checkpoint file instead of the run's own")
    policy = evaluate.add_mutually_exclusive_group()
    policy.add_argument(
        "--stochastic",
        dest="stochastic",
        action="store_true",
        default=None,
        help="sample actions (Dreamer; default: the run's dreamer.eval_mode)",
    )
    policy.add_argument(
        "--deterministic",
        dest="stochastic",
        action="store_false",
        help="take the most likely action (Dreamer; default: the run's dreamer.eval_mode)",
    )
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda")
    evaluate.set_defaults(handler=_eval, takes_overrides=False)

    report = commands.add_parser(
        "report",
        help="one page (HTML and Markdown) about a run: curves, losses, videos, configuration",
        description="Write LOGDIR/report/index.html and report.md for a Dreamer run or a World Models "
        "experiment.",
    )
    report.add_argument("--logdir", required=True, help="the run directory")
    report.set_defaults(handler=_report, takes_overrides=False)

    dream = commands.add_parser(
        "dream",
        help="play inside a run's learned world model from a local web page",
        description="Serve a page where the keyboard (or the trained agent) drives an imagined rollout "
        "from a real starting frame, with the real environment beside it under the same actions.",
    )
    dream.add_argument(
        "--logdir", required=True, help="a Dreamer run (image task) or World Models experiment"
    )
    dream.add_argument("--checkpoint", help="a Dreamer checkpoint file instead of the run's own")
    dream.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    dream.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one")
    dream.set_defaults(handler=_dream, takes_overrides=False)

    plot = commands.add_parser(
        "plot",
        help="learning curves of many runs: one panel per task, mean and spread over seeds",
        description="Plot runs found under INDIR (Dreamer's layout INDIR/<task>/<method>/<seed>, or any "
        "run directory with a config.yaml) into OUTDIR as PNG, PDF and the binned numbers as JSON.",
    )
    plot.add_argument("--indir", required=True, help="directory holding the runs")
    plot.add_argument("--outdir", required=True, help="where the figures go")
    plot.add_argument(
        "--xaxis", default="step", help="x key: step, env_step (times the action repeat) or any metric key"
    )
    plot.add_argument("--yaxis", default="eval/return", help="y key, e.g. eval/return or episode/score")
    plot.add_argument("--bins", type=float, default=3e4, help="bin width on the x axis; 0 keeps every point")
    plot.add_argument(
        "--reference",
        help="reference curves: a JSON or CSV file (task, method, x, y) or a shipped one by name "
        "(dreamerv3_dmc_proprio: official DreamerV3 scores, x in environment steps)",
    )
    plot.add_argument("--tasks", nargs="+", help="task patterns to keep (fnmatch)")
    plot.add_argument("--methods", nargs="+", help="method patterns to keep (fnmatch)")
    plot.add_argument("--cols", type=int, default=4, help="panels per row")
    plot.add_argument(
        "--size", type=float, nargs=2, default=(4.0, 3.0), metavar=("W", "H"), help="panel size"
    )
    plot.set_defaults(handler=_plot, takes_overrides=False)

    config = commands.add_parser("config", help="print the resolved configuration, or every key with --keys")
    _config_flags(config)
    config.add_argument("--algo", choices=ALGOS, help=f"agent preset, applied first (default {DEFAULT_ALGO})")
    config.add_argument("--env", dest="env.name", metavar="ENV", help="environment id")
    config.add_argument("--keys", action="store_true", help="list every key, default and help line")
    config.set_defaults(handler=_config, takes_overrides=True)
    return parser


def _worldmodels_parser(commands: Any) -> None:
    """``dreamworld worldmodels STAGE``: the World Models pipeline, one subcommand per stage."""
    worldmodels = commands.add_parser(
        "worldmodels",
        help="World Models: collect, train-vae, train-mdnrnn, train-controller, test, report",
        description="The World Models pipeline (Ha & Schmidhuber 2018) on CarRacing by default. Every "
        "stage works in LOGDIR, resumes from what is there unless --noreload, and reads the settings "
        "earlier stages wrote to LOGDIR/config.yaml. --preset cpu|paper|doom selects worldmodels_<name>.",
    )
    worldmodels.set_defaults(handler=lambda args, rest: worldmodels.print_help(), takes_overrides=False)
    stages = worldmodels.add_subparsers(dest="stage", metavar="STAGE")

    def stage(name: str, text: str) -> argparse.ArgumentParser:
        parser = stages.add_parser(name, help=text, description=text)
        _config_flags(parser)
        parser.add_argument("--noreload", action="store_true", help="start this stage over")
        parser.set_defaults(handler=_worldmodels, takes_overrides=True, stage=name)
        return parser

    collect = stage("collect", "stage 1: random rollouts with the brownian policy, in parallel workers")
    collect.add_argument("--env", dest="env.name", metavar="ENV", help="environment id (default carracing)")
    collect.add_argument("--rollouts", dest="collect.episodes", metavar="N", help="rollouts in total")
    collect.add_argument("--workers", dest="env.envs", metavar="K", help="environments, each in a process")
    collect.add_argument("--policy", dest="collect.policy", choices=["random", "brownian"])
    stage("train-vae", "stage 2: the convolutional VAE on the rollouts' frames")
    stage("train-mdnrnn", "stage 3: encode the frames, then the MDN-RNN on the latent sequences")
    controller = stage("train-controller", "stage 4: evolve the linear controller with CMA-ES")
    controller.add_argument("--pop-size", dest="worldmodels.controller.pop_size", metavar="P")
    controller.add_argument("--n-samples", dest="worldmodels.controller.n_samples", metavar="S")
    controller.add_argument("--target-return", dest="worldmodels.controller.target_return", metavar="R")
    controller.add_argument("--generations", dest="worldmodels.controller.generations", metavar="G")
    controller.add_argument("--workers", dest="worldmodels.controller.workers", metavar="K")
    controller.add_argument("--temperature", dest="worldmodels.controller.temperature", metavar="TAU")
    controller.add_argument("--backend", dest="worldmodels.controller.backend", choices=["local", "ray"])
    controller.add_argument("--display", action="store_true", help="show the best candidate's rollouts")
    _variant_flags(controller)
    test = stage("test", "stage 5: the best controller on real episodes: mean, std, videos")
    test.add_argument("--episodes", dest="worldmodels.test_episodes", metavar="N")
    test.add_argument("--video", action="store_true", help="write a video of the first episode")
    test.add_argument("--temperature", dest="worldmodels.controller.temperature", metavar="TAU")
    _variant_flags(test)
    stage("report", "one page with the curves, reconstructions, a dream and the test returns")


def _variant_flags(parser: argparse.ArgumentParser) -> None:
    # Which variant a command works on is chosen per command, never inherited from config.yaml.
    parser.set_defaults(**{"worldmodels.controller.memory": "true", "worldmodels.controller.dream": "false"})
    parser.add_argument(
        "--no-memory", dest="worldmodels.controller.memory", action="store_const", const="false",
        help="controller on z only (without the MDN-RNN's h)",
    )  # fmt: skip
    parser.add_argument(
        "--dream", dest="worldmodels.controller.dream", action="store_const", const="true",
        help="fitness inside the MDN-RNN dream instead of the real environment",
    )  # fmt: skip


def _worldmodels(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """``dreamworld worldmodels STAGE``: one stage in the experiment directory, which it holds."""
    from dreamworld.config.loader import available_presets
    from dreamworld.run.rundir import RunDirectory

    if not args.logdir:
        raise DreamworldError(f"worldmodels {args.stage} needs --logdir DIR (the experiment directory)")
    names = set(available_presets())
    short = sorted(name.removeprefix("worldmodels_") for name in names if name.startswith("worldmodels_"))
    for name in args.preset:
        if name not in names and f"worldmodels_{name}" not in names:
            close = difflib.get_close_matches(name, short, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise DreamworldError(f"unknown World Models preset '{name}' ({hint}presets: {', '.join(short)})")
    args.preset = [f"worldmodels_{name}" if f"worldmodels_{name}" in names else name for name in args.preset]
    saved = Path(args.logdir) / "config.yaml"
    if not saved.exists():
        args.preset = ["worldmodels", *args.preset]
    config = _resolve(args, rest)
    if args.stage == "collect":  # collect() holds the directory itself
        return int(_STAGES[args.stage](args, config) or 0)
    with RunDirectory(config.logdir, config if args.stage in _CONFIGURING else None):
        return int(_STAGES[args.stage](args, config) or 0)


def _wm_collect(args: argparse.Namespace, config: Any) -> int:
    from dreamworld.run.collect import collect

    result = collect(config)
    if result.episodes == 0:
        print(f"{config.logdir} already holds {config.collect.episodes} rollouts; nothing to collect")
    else:
        mean = sum(result.returns) / len(result.returns)
        print(f"collected {result.episodes} rollouts ({result.steps} steps), mean return {mean:.1f}")
    print(f"rollouts: {result.episode_dir}")
    return 0


def _wm_vae(args: argparse.Namespace, config: Any) -> int:
    from dreamworld.algos.world_models.vae_stage import train_vae

    result = train_vae(config, args.noreload, _wm_device(config))
    print(f"best VAE: {result.best} (held-out loss {result.best_loss:.2f}, {result.epochs} epochs)")
    return 0


def _wm_mdnrnn(args: argparse.Namespace, config: Any) -> int:
    from dreamworld.algos.world_models.mdnrnn_stage import train_mdnrnn

    discrete = _discrete_actions(config)
    result = train_mdnrnn(config, discrete, args.noreload, _wm_device(config))
    print(f"best MDN-RNN: {result.best} (held-out loss {result.best_loss:.3f}, {result.epochs} epochs)")
    return 0


def _wm_controller(args: argparse.Namespace, config: Any) -> int:
    from dreamworld.algos.world_models.controller_stage import train_controller

    result = train_controller(config, args.noreload, args.display, _wm_device(config))
    print(
        f"best controller: {result.directory / 'best.pt'} (evaluation return {result.best_return:.1f} "
        f"after {result.generations} generations)"
    )
    return 0


def _wm_test(args: argparse.Namespace, config: Any) -> int:
    from dreamworld.algos.world_models.evaluate import test_controller

    options = config.worldmodels
    result = test_controller(
        config,
        options.test_episodes,
        options.controller.memory,
        options.controller.dream,
        options.controller.temperature,
        args.video,
        device=_wm_device(config),
    )
    print(f"test return: {result.mean:.1f} ± {result.std:.1f} over {len(result.returns)} episodes")
    if "dream_mean" in result.extra:
        dream = f"{result.extra['dream_mean']:.1f} ± {result.extra['dream_std']:.1f}"
        print(f"dream return (the same controller inside the MDN-RNN): {dream}")
    if result.video is not None:
        print(f"video: {result.video}")
    return 0


def _wm_report(args: argparse.Namespace, config: Any) -> int:
    from dreamworld.algos.world_models.report import write_report

    path = write_report(config, _wm_device(config))
    print(f"report: {path}")
    return 0


def _wm_device(config: Any) -> Any:
    import torch

    from dreamworld.run.system import pick_device

    if config.worldmodels.threads:
        torch.set_num_threads(config.worldmodels.threads)
    return pick_device(config.worldmodels.device)


def _discrete_actions(config: Any) -> int:
    """The number of discrete actions of the experiment's environment, 0 for continuous ones."""
    from dreamworld.run.driver import vector_env

    with vector_env(config.env, num_envs=1, parallel="serial") as env:
        return int(getattr(env.act_space, "n", 0))


# The stages whose settings later stages read from config.yaml (test and report only read it).
_CONFIGURING = ("train-vae", "train-mdnrnn", "train-controller")

_STAGES = {
    "collect": _wm_collect,
    "train-vae": _wm_vae,
    "train-mdnrnn": _wm_mdnrnn,
    "train-controller": _wm_controller,
    "test": _wm_test,
    "report": _wm_report,
}


def _config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", nargs="+", default=[], metavar="NAME", help="presets, in order")
    parser.add_argument("--config", nargs="+", default=[], metavar="FILE", help="YAML files, in order")
    parser.add_argument("--logdir", dest="logdir", metavar="DIR", help="run directory")
    parser.add_argument("--seed", dest="seed", metavar="N", help="seed of every random stream")


def _resolve(args: argparse.Namespace, rest: Sequence[str], continues: bool = True) -> Any:
    """The command's configuration. A run directory that holds a ``config.yaml`` is continued from it
    (unless ``--config`` is given, or ``continues`` is false): the presets and overrides on the
    command line change only what they name. A new run starts from ``--algo`` (dreamerv3)."""
    from dreamworld.config import load_config, parse_overrides
    from dreamworld.config.loader import CONFIG_FILE

    flags = {key: value for key, value in vars(args).items() if "." in key or key in ("seed", "logdir")}
    overrides = {key: value for key, value in flags.items() if value is not None}
    overrides.update(parse_overrides(rest))
    saved = Path(args.logdir) / CONFIG_FILE if args.logdir else None
    base = saved if continues and saved is not None and saved.is_file() and not args.config else None
    algo = getattr(args, "algo", None)
    if algo is None and base is None and hasattr(args, "algo"):
        algo = DEFAULT_ALGO
    presets = [algo, *args.preset] if algo else args.preset
    return load_config(presets, args.config, overrides, base=base)


def _envs(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    from dreamworld.envs import suite_table

    table = Table(title="dreamworld environment suites")
    for column in ("suite", "example tasks", "installed", "to install"):
        table.add_column(column)
    for suite in suite_table():
        installed = "[green]yes[/green]" if suite.installed else "[red]no[/red]"
        table.add_row(
            suite.name, ", ".join(suite.examples), installed, "" if suite.installed else suite.install
        )
    Console().print(table)
    return 0


def _collect(args: argparse.Namespace, rest: Sequence[str]) -> int:
    config = _resolve(args, rest)
    _check_env(config)
    from dreamworld.run.collect import collect

    result = collect(config)
    if result.episodes == 0:
        print(f"{config.logdir} already holds {config.collect.episodes} episodes; nothing to collect")
        return 0
    mean = sum(result.returns) / len(result.returns)
    print(f"collected {result.episodes} episodes ({result.steps} steps), mean return {mean:.2f}")
    print(f"episodes:    {result.episode_dir}")
    for video in result.videos:
        print(f"video:       {video}")
    print(f"tensorboard: tensorboard --logdir {config.logdir}")
    return 0


def _train(args: argparse.Namespace, rest: Sequence[str]) -> int:
    config = _resolve(args, rest, continues=not args.fresh)
    _check_env(config)
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from dreamworld.run.distributed import launch

        if args.fresh and (moved := _move_aside(config.logdir)):
            print(f"moved the previous run to {moved}")
        ranks = [arg for arg in args.argv if arg != "--fresh"]
        drop = {i for i, arg in enumerate(ranks) if arg == "--nproc"}
        ranks = [arg for i, arg in enumerate(ranks) if i not in drop and i - 1 not in drop]
        return launch(args.nproc, [arg for arg in ranks if not arg.startswith("--nproc=")])
    from dreamworld.algos.dreamer.loop import train
    from dreamworld.run.episodes import random_returns

    if args.fresh and (moved := _move_aside(config.logdir)):
        print(f"moved the previous run to {moved}")
    result = train(config)
    budget = config.dreamer.max_hours
    early = budget and result.steps < config.dreamer.steps
    stopped = f" (stopped at the {budget:g}-hour budget)" if early else ""
    print(f"trained {result.steps} steps with {result.updates} updates{stopped}")
    if result.eval_returns:
        baseline = random_returns(config, len(result.eval_returns))
        random_mean = sum(baseline) / len(baseline)
        print(f"evaluation return: {result.eval_return:.1f} (random policy: {random_mean:.1f})")
    print(f"checkpoint:  {result.checkpoint}")
    print(f"videos:      {Path(config.logdir) / 'videos'}")
    print(f"tensorboard: tensorboard --logdir {config.logdir}")
    return 0


def _move_aside(logdir: str) -> Path | None:
    from dreamworld.run.checkpoint import move_aside

    return move_aside(Path(logdir))


def _check_env(config: Any) -> None:
    """The environment id, checked before torch and the simulators load (seconds on a busy machine)."""
    from dreamworld.envs import check_env_id

    check_env_id(config.env.name)


def _eval(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from dreamworld.tools.evaluate import evaluate_run

    result = evaluate_run(
        args.logdir, args.episodes, args.video, args.checkpoint, args.stochastic, args.device
    )
    count = len(result.returns)
    line = f"{result.algorithm} evaluation: return {result.mean:.1f} ± {result.std:.1f} over {count} episodes"
    if result.mode:
        line += ", sampled actions" if result.mode == "sample" else ", most likely actions"
    if result.lengths:
        line += f", length {sum(result.lengths) / len(result.lengths):.1f}"
    line += "".join(f", {key} {value:.2f}" for key, value in sorted(result.stats.items()))
    print(line)
    for video in result.videos:
        print(f"video: {video}")
    return 0


def _report(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from dreamworld.tools.report import write_report

    print(f"report: {write_report(args.logdir)}")
    return 0


def _dream(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from dreamworld.tools.dream import open_session, serve

    session = open_session(args.logdir, args.checkpoint)
    try:
        server = serve(session, args.host, args.port)
        host, port = str(server.server_address[0]), server.server_address[1]
        print(f"dreaming on http://{host}:{port}/ (Ctrl-C to stop)")
        try:
            server.serve_forever()
        finally:
            server.server_close()
    finally:
        session.close()
    return 0


def _plot(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from dreamworld.tools.plot import plot

    paths = plot(
        args.indir,
        args.outdir,
        xaxis=args.xaxis,
        yaxis=args.yaxis,
        bins=args.bins,
        reference=args.reference,
        tasks=args.tasks,
        methods=args.methods,
        cols=args.cols,
        size=tuple(args.size),
    )
    for path in paths:
        print(path)
    return 0


def _config(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from dreamworld.config import field_help
    from dreamworld.config.loader import config_yaml

    if args.keys:
        if rest:
            raise DreamworldError(f"--keys lists every key and takes no overrides, not {' '.join(rest)}")
        rows = field_help()
        key_width = max(len(key) for key, _, _ in rows)
        default_width = min(24, max(len(default) for _, default, _ in rows))
        for key, default, text in rows:
            shown = default if len(default) <= default_width else default[: default_width - 3] + "..."
            print(f"{key:{key_width}}  {shown:{default_width}}  {text}")
        return 0
    print(config_yaml(_resolve(args, rest)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
