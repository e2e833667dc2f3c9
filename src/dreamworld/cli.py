"""The ``dreamworld`` command line.

Every command that runs something takes the same configuration flags: ``--preset NAME ...`` (shipped
presets, merged in order), ``--config FILE ...`` (the user's YAML, e.g. a run's ``config.yaml``) and
dotted overrides such as ``--replay.capacity 1e6``. Errors the user can fix print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from dreamworld.errors import DreamworldError

ALGOS = ["dreamerv1", "dreamerv2", "dreamerv3", "dreamerv3_2024"]

EXAMPLES = """examples:
  dreamworld train --algo dreamerv3 --env dmc/walker-walk --preset dmc_proprio --logdir runs/walker
  dreamworld envs
  dreamworld collect --env carracing --policy brownian --episodes 10 --workers 2 --logdir runs/cr
  dreamworld collect --config runs/cr/config.yaml --logdir runs/cr-again
  dreamworld config --preset dmc_vision --env.name dmc/cheetah-run
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        if rest and not args.takes_overrides:
            raise DreamworldError(f"unexpected arguments {' '.join(rest)}; see dreamworld {args.command} -h")
        return int(args.handler(args, rest) or 0)
    except DreamworldError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; what was written to disk is kept", file=sys.stderr)
        return 130


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
    train.add_argument("--algo", default="dreamerv3", choices=ALGOS, help="agent preset, applied first")
    train.add_argument("--env", dest="env.name", metavar="ENV", help="environment id")
    train.add_argument("--steps", dest="dreamer.steps", metavar="N", help="policy steps to train for")
    train.add_argument("--envs", dest="env.envs", metavar="K", help="parallel environments")
    train.add_argument("--fresh", action="store_true", help="start over: move an existing LOGDIR aside")
    train.set_defaults(handler=_train, takes_overrides=True)

    config = commands.add_parser("config", help="print the resolved configuration, or every key with --keys")
    _config_flags(config)
    config.add_argument("--keys", action="store_true", help="list every key, default and help line")
    config.set_defaults(handler=_config, takes_overrides=True)
    return parser


def _config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", nargs="+", default=[], metavar="NAME", help="presets, in order")
    parser.add_argument("--config", nargs="+", default=[], metavar="FILE", help="YAML files, in order")
    parser.add_argument("--logdir", dest="logdir", metavar="DIR", help="run directory")
    parser.add_argument("--seed", dest="seed", metavar="N", help="seed of every random stream")


def _resolve(args: argparse.Namespace, rest: Sequence[str]) -> Any:
    from dreamworld.config import load_config, parse_overrides

    flags = {key: value for key, value in vars(args).items() if "." in key or key in ("seed", "logdir")}
    overrides = {key: value for key, value in flags.items() if value is not None}
    overrides.update(parse_overrides(rest))
    presets = [args.algo, *args.preset] if getattr(args, "algo", None) else args.preset
    return load_config(presets, args.config, overrides)


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
    from dreamworld.run.collect import collect

    config = _resolve(args, rest)
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
    from pathlib import Path

    from dreamworld.run.train import move_aside, random_returns, train

    config = _resolve(args, rest)
    if args.fresh and (moved := move_aside(Path(config.logdir))):
        print(f"moved the previous run to {moved}")
    result = train(config)
    print(f"trained {result.steps} steps with {result.updates} updates")
    if result.eval_returns:
        baseline = random_returns(config, len(result.eval_returns))
        random_mean = sum(baseline) / len(baseline)
        print(f"evaluation return: {result.eval_return:.1f} (random policy: {random_mean:.1f})")
    print(f"checkpoint:  {result.checkpoint}")
    print(f"videos:      {Path(config.logdir) / 'videos'}")
    print(f"tensorboard: tensorboard --logdir {config.logdir}")
    return 0


def _config(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from dreamworld.config import field_help
    from dreamworld.config.loader import config_yaml

    if args.keys:
        for key, default, text in field_help():
            print(f"{key:22} {default:18} {text}")
        return 0
    print(config_yaml(_resolve(args, rest)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
