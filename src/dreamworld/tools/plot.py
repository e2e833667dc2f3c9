"""Learning curves of many runs: one subplot per task, one line per method, seeds aggregated.

Mirrors the flags of Dreamer's ``plotting.py``. Runs are found under an input directory either in
Dreamer's layout ``<indir>/<task>/<method>/<seed>/metrics.jsonl`` or anywhere below it, with the task
and seed read from the run's ``config.yaml``. Every seed is binned on the x axis (:func:`bin_curve`);
a method's line is the mean over the seeds that reach a bin and its band spans their min..max.

Example:
    >>> plot("runs", "plots", yaxis="eval/return", bins=3e4)  # doctest: +SKIP
    [PosixPath('plots/eval_return.png'), PosixPath('plots/eval_return.pdf'), ...]
"""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dreamworld.config.loader import CONFIG_FILE
from dreamworld.envs import action_repeat
from dreamworld.errors import DreamworldError
from dreamworld.run.logger import METRICS_FILE, SCORES_FILE

_SCORE_KEYS = ("score", "episode/score")
_SEED_SUFFIX = re.compile(r"[-_.]?seed[-_]?\d+$")
ENV_STEP = "env_step"
"""The x key that counts environment steps: a record's ``step`` (policy steps) times the run's action
repeat (``env.repeat`` in its ``config.yaml``), so that runs with different repeats and published curves
share an axis."""
REFERENCES = Path(__file__).parent / "references"
"""Reference curves shipped with dreamworld, passed to ``--reference`` by their file name's stem."""


@dataclass(frozen=True)
class Run:
    """One run directory and the labels it is plotted under."""

    path: Path
    task: str
    method: str
    seed: str
    repeat: int = 1
    """Environment steps per policy step (``env.repeat``)."""


@dataclass(frozen=True)
class Curve:
    """A method's aggregated curve on one task; arrays have shape ``(N,)``, one entry per bin."""

    task: str
    method: str
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    count: np.ndarray
    """How many seeds have a point in each bin."""
    seeds: tuple[str, ...]


@dataclass(frozen=True)
class Reference:
    """A published curve to compare against, drawn dashed."""

    task: str
    method: str
    x: np.ndarray
    y: np.ndarray


def find_runs(indir: str | Path) -> list[Run]:
    """Every directory under ``indir`` (``indir`` included) that holds a ``metrics.jsonl``, sorted.

    Exactly three levels below ``indir`` a run's path is ``<task>/<method>/<seed>`` (Dreamer's layout);
    elsewhere task and seed come from the nearest ``config.yaml`` (``env.name``, ``seed``) and the method
    is the parent directory's name (the run's own name, less a ``-seed<N>`` suffix, directly under
    ``indir``). The records of ``dreamworld eval`` (``<run>/eval``) are not runs and are left out.

    Example:
        >>> [(r.task, r.method, r.seed) for r in find_runs("runs")]  # doctest: +SKIP
        [('dmc/walker-walk', 'dreamerv3', '0'), ('dmc/walker-walk', 'dreamerv3', '1')]
    """
    indir = Path(indir)
    found = [path.parent for path in indir.rglob(METRICS_FILE) if path.is_file()]
    runs = [_identify(path, indir) for path in found if not _is_evaluation(path)]
    return sorted(runs, key=lambda run: (run.task, run.method, run.seed, str(run.path)))


def _is_evaluation(path: Path) -> bool:
    """Whether ``path`` holds ``dreamworld eval``'s records of a trained run, which are not a run."""
    from dreamworld.tools.evaluate import EVAL_DIR, RESULT_NAME

    return (path / RESULT_NAME).is_file() or (path.name == EVAL_DIR and (path.parent / CONFIG_FILE).is_file())


def _identify(path: Path, indir: Path) -> Run:
    parts = path.relative_to(indir).parts
    # The nearest config.yaml up to indir: World Models stages log below the run's directory.
    near = (path,) if len(parts) == 3 else (path, *path.parents[: len(parts)])
    found = [d / CONFIG_FILE for d in near if (d / CONFIG_FILE).is_file()]
    try:
        loaded = yaml.safe_load(found[0].read_text(encoding="utf-8")) if found else None
    except (OSError, yaml.YAMLError) as error:
        warnings.warn(f"{found[0]}: unreadable ({error})", stacklevel=3)
        loaded = None
    loaded = loaded if isinstance(loaded, dict) else {}
    env: dict[str, Any] = loaded["env"] if isinstance(loaded.get("env"), dict) else {}
    repeat = _env_repeat(env)
    if len(parts) == 3:
        return Run(path, *parts, repeat=repeat)
    # Directly under indir a run's name stands for its method, less a seed suffix (walker-seed3).
    method = _SEED_SUFFIX.sub("", path.name) or path.name if len(parts) <= 1 else path.parent.name
    task = env.get("name")
    if task is None:
        warnings.warn(f"{path}: no env.name in a {CONFIG_FILE}; plotting it as task 'unknown'", stacklevel=3)
    return Run(path, str(task or "unknown"), method, str(loaded.get("seed", path.name)), repeat)


def run_action_repeat(logdir: str | Path) -> int | None:
    """Environment steps per policy step of the run in ``logdir``: ``env.repeat`` in its saved
    ``config.yaml``, or its suite's default; None where the run has no readable configuration (not
    started yet).

    Example:
        >>> run_action_repeat("no-such-run") is None
        True
    """
    path = Path(logdir) / CONFIG_FILE
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(loaded, dict):
        return None
    return _env_repeat(loaded["env"] if isinstance(loaded.get("env"), dict) else {})


def _env_repeat(env: dict[str, Any]) -> int:
    given = env.get("repeat")
    return action_repeat(str(env.get("name", "")), given if isinstance(given, int) and given > 0 else None)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file (a run's ``metrics.jsonl`` or ``scores.jsonl``), none for
    a missing file; malformed lines (a run stopped mid-write) are skipped with one warning per file.

    Example:
        >>> read_records("no-such-run/metrics.jsonl")
        []
    """
    path = Path(path)
    if not path.is_file():
        return []
    records, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line) if line.strip() else {}
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            bad += 1
        elif record:
            records.append(record)
    if bad:
        warnings.warn(f"{path}: skipped {bad} malformed line(s)", stacklevel=2)
    return records


def _run_records(path: Path, yaxis: str) -> list[dict[str, Any]]:
    """A run's ``metrics.jsonl``, or its ``scores.jsonl`` (``score`` as ``yaxis``) for a score key
    that the metrics lack."""
    metrics = read_records(path / METRICS_FILE)
    scores = path / SCORES_FILE
    if yaxis in _SCORE_KEYS and scores.is_file() and not any(yaxis in r for r in metrics):
        return [{**r, yaxis: r["score"]} for r in read_records(scores) if "score" in r]
    return metrics


def _points(records: Sequence[dict[str, Any]], xaxis: str, yaxis: str) -> tuple[np.ndarray, np.ndarray]:
    """The finite numeric ``(x, y)`` pairs of the records that hold both keys, as two ``(N,)`` arrays.

    ``"nan"``/``"inf"`` strings (how the logger writes non-finite values) and NaNs are left out.
    """
    pairs = [(_number(r.get(xaxis)), _number(r.get(yaxis))) for r in records]
    kept = [(x, y) for x, y in pairs if x is not None and y is not None]
    return np.array([x for x, _ in kept], float), np.array([y for _, y in kept], float)


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def bin_curve(x: np.ndarray, y: np.ndarray, bins: float) -> tuple[np.ndarray, np.ndarray]:
    """Means of ``y`` in bins of width ``bins`` along ``x``.

    Bin ``k`` covers ``[k * bins, (k + 1) * bins)`` and is placed where its data are, at the mean ``x``
    of its points (evaluations every 2,000 steps in bins of 1,000 stay at 2,000, 4,000, ...); empty
    bins are left out. ``bins <= 0`` keeps the raw points (values at an equal ``x`` averaged).

    Args:
        x, y: The points, each of shape ``(N,)``.
        bins: The bin width, in units of ``x``.

    Returns:
        ``(positions, means)``, each of shape ``(K,)``, sorted.

    Example:
        >>> bin_curve(np.array([0.0, 5.0, 10.0, 25.0]), np.array([1.0, 3.0, 4.0, 6.0]), 10)
        (array([ 2.5, 10. , 25. ]), array([2., 4., 6.]))
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape (N,), got {x.shape} and {y.shape}")
    return _group_means(x, y, bins)


def _group_means(x: np.ndarray, y: np.ndarray, bins: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``x`` and mean ``y`` of the points in each bin of width ``bins`` (each distinct ``x``
    when ``bins <= 0``)."""
    _, inverse = np.unique(np.floor(x / bins) if bins > 0 else x, return_inverse=True)
    count = np.bincount(inverse)
    return np.bincount(inverse, weights=x) / count, np.bincount(inverse, weights=y) / count


def aggregate(
    task: str, method: str, seeds: Sequence[tuple[str, np.ndarray, np.ndarray]], bins: float = 0.0
) -> Curve:
    """Mean and min..max over seeds at every bin any seed has; ``seeds`` holds ``(name, x, y)``.

    Each seed's ``x`` must hold one value per bin (as :func:`bin_curve` returns); a bin's point is
    at the mean of the seeds' ``x`` in it.

    Example:
        >>> c = aggregate("t", "m", [("0", np.array([1.0, 2.0]), np.array([2.0, 4.0])),
        ...                          ("1", np.array([1.0]), np.array([4.0]))])
        >>> c.x, c.mean, c.low, c.high, c.count
        (array([1., 2.]), array([3., 4.]), array([2., 4.]), array([4., 4.]), array([2, 1]))
    """
    ys = np.concatenate([y for _, _, y in seeds])
    xs = np.concatenate([x for _, x, _ in seeds])
    _, inverse = np.unique(np.floor(xs / bins) if bins > 0 else xs, return_inverse=True)
    count = np.bincount(inverse)
    x = np.bincount(inverse, weights=xs) / count
    low, high = np.full(len(x), np.inf), np.full(len(x), -np.inf)
    np.minimum.at(low, inverse, ys)
    np.maximum.at(high, inverse, ys)
    mean = np.bincount(inverse, weights=ys, minlength=len(x)) / count
    return Curve(task, method, x, mean, low, high, count, tuple(name for name, _, _ in seeds))


def collect_curves(runs: Sequence[Run], xaxis: str, yaxis: str, bins: float) -> list[Curve]:
    """One aggregated :class:`Curve` per (task, method) that has points; raises when none has any."""
    groups: dict[tuple[str, str], list[tuple[str, np.ndarray, np.ndarray]]] = {}
    keys: set[str] = set()
    for run in runs:
        records = _run_records(run.path, yaxis)
        if ENV_STEP in (xaxis, yaxis):
            records = [_with_env_step(r, run.repeat) for r in records]
        keys.update(*records)
        keys.update(["score"] if (run.path / SCORES_FILE).is_file() else [])
        x, y = _points(records, xaxis, yaxis)
        if len(x):
            groups.setdefault((run.task, run.method), []).append((run.seed, *bin_curve(x, y, bins)))
    if not groups:
        raise DreamworldError(
            f"no points with both --xaxis '{xaxis}' and --yaxis '{yaxis}' in {len(runs)} run(s); "
            f"keys found: {', '.join(sorted(keys)) or 'none'}; pass one of them"
        )
    return [aggregate(task, method, seeds, bins) for (task, method), seeds in sorted(groups.items())]


def _with_env_step(record: dict[str, Any], repeat: int) -> dict[str, Any]:
    step = _number(record.get("step"))
    return record if ENV_STEP in record or step is None else {**record, ENV_STEP: step * repeat}


def task_key(name: str) -> str:
    """A task name as references are matched to runs: lower case, every run of other characters than
    letters and digits one ``_`` (``dmc/ball_in_cup-catch``, its directory ``dmc_ball_in_cup-catch``
    and ``dmc_ball_in_cup_catch`` are one task).

    Example:
        >>> task_key("dmc/ball_in_cup-catch") == task_key("dmc_ball_in_cup-catch")
        True
    """
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def shipped_references() -> list[str]:
    """The names of the reference files that ship with dreamworld (``--reference NAME``)."""
    return sorted(p.stem for p in REFERENCES.iterdir() if p.suffix in (".csv", ".json"))


def reference_path(name: str | Path) -> Path:
    """``name`` itself when it is a file, else the shipped reference of that name.

    Raises:
        DreamworldError: Neither exists.
    """
    path = Path(name)
    if path.is_file():
        return path
    shipped = [p for p in sorted(REFERENCES.glob(f"{name}.*")) if p.suffix in (".csv", ".json")]
    if shipped:
        return shipped[0]
    raise DreamworldError(
        f"no reference file {name}; pass a file (CSV task,method,x,y or JSON) or one of the shipped "
        f"references: {', '.join(shipped_references())}"
    )


def load_reference(path: str | Path) -> list[Reference]:
    """Reference curves from JSON or CSV, sorted by task and method, each sorted by ``x``.

    JSON is a list of ``{"task", "method", "x", "y"}`` records (``x`` and ``y`` numbers or lists) or
    ``{task: {method: [[x, y], ...]}}``; CSV has the header ``task,method,x,y``, one point per row.
    ``path`` may also name a shipped reference (:func:`shipped_references`), e.g.
    ``dreamerv3_dmc_proprio``: DreamerV3's official scores, ``x`` in environment steps (plot with
    ``xaxis="env_step"``).

    Example:
        >>> load_reference("dreamerv3_paper.csv")[0].method  # doctest: +SKIP
        'DreamerV3 (paper)'
    """
    path = reference_path(path)
    groups: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    try:
        for task, method, x, y in _reference_rows(path):
            xs, ys = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
            if xs.ndim != 1 or xs.shape != ys.shape:
                raise ValueError(f"x and y of {task}/{method} differ in shape: {xs.shape} and {ys.shape}")
            groups.setdefault((str(task), str(method)), []).append((xs, ys))
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        raise DreamworldError(
            f"could not read reference curves from {path} ({error!r}); write JSON records "
            "{task, method, x, y}, JSON {task: {method: [[x, y], ...]}} or CSV with header task,method,x,y"
        ) from None
    references = []
    for (task, method), parts in sorted(groups.items()):
        x, y = np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
        order = np.argsort(x, kind="stable")
        references.append(Reference(task, method, x[order], y[order]))
    return references


def _reference_rows(path: Path) -> list[tuple[Any, Any, Any, Any]]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as file:
            return [(r["task"], r["method"], r["x"], r["y"]) for r in csv.DictReader(file)]
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        return [(t, m, p[0], p[1]) for t, methods in data.items() for m, ps in methods.items() for p in ps]
    return [(r["task"], r["method"], r["x"], r["y"]) for r in data]


def figure(
    curves: Sequence[Curve],
    references: Sequence[Reference],
    labels: tuple[str, str],
    cols: int = 4,
    size: tuple[float, float] = (4, 3),
) -> Any:
    """A matplotlib figure: a subplot per task of ``curves`` (``size`` inches each, ``cols`` per row),
    a mean line and shaded min..max band per method, and the tasks' references dashed."""
    from matplotlib.figure import Figure

    tasks = sorted({c.task for c in curves})
    keys = {task_key(task) for task in tasks}
    names = sorted({c.method for c in curves} | {r.method for r in references if task_key(r.task) in keys})
    colors = {name: f"C{i % 10}" for i, name in enumerate(names)}
    cols = max(1, min(cols, len(tasks)))
    rows = math.ceil(len(tasks) / cols)
    fig = Figure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    handles: dict[str, Any] = {}
    for axis, task in zip(axes, tasks, strict=False):
        for c in (c for c in curves if c.task == task):
            (handles[c.method],) = axis.plot(c.x, c.mean, color=colors[c.method], label=c.method)
            axis.fill_between(c.x, c.low, c.high, color=colors[c.method], alpha=0.2, linewidth=0)
        for r in (r for r in references if task_key(r.task) == task_key(task)):
            label = f"{r.method} (reference)"
            # Marked points: a reference may be a single published figure.
            (handles[label],) = axis.plot(r.x, r.y, "--o", ms=4, color=colors[r.method], label=label)
        axis.set(title=task, xlabel=labels[0], ylabel=labels[1])
        axis.grid(alpha=0.3)
    for axis in axes[len(tasks) :]:
        axis.set_visible(False)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(len(handles), 4))
    return fig


def plot(
    indir: str | Path,
    outdir: str | Path,
    xaxis: str = "step",
    yaxis: str = "eval/return",
    bins: float = 3e4,
    reference: str | Path | None = None,
    tasks: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    cols: int = 4,
    size: tuple[float, float] = (4, 3),
) -> list[Path]:
    """Plots ``yaxis`` against ``xaxis`` for every run under ``indir``, as PNG, PDF and JSON numbers.

    Args:
        indir: Searched for runs with :func:`find_runs`.
        outdir: Receives ``<yaxis>.png``, ``.pdf`` and ``.json``, with ``/`` in the name made ``_``.
        xaxis: ``step``, ``env_step`` (environment steps: ``step`` times the run's action repeat) or
            any key of the records, e.g. ``train/updates`` or ``time``.
        yaxis: A key of the records, e.g. ``eval/return``; ``score`` reads ``scores.jsonl``.
        bins: The bin width along ``xaxis`` (:func:`bin_curve`); ``<= 0`` plots raw points.
        reference: A file of reference curves or a shipped reference's name (:func:`load_reference`),
            drawn on matching tasks (:func:`task_key`).
        tasks, methods: fnmatch patterns (case-sensitive); only runs matching one of each are plotted.
        cols, size: Subplots per row; width and height of one subplot in inches.

    Returns:
        The written paths: PNG, PDF and JSON.

    Raises:
        DreamworldError: No run under ``indir`` or none after filtering, or no points for the keys.

    Example:
        >>> plot("runs", "plots", yaxis="eval/return", tasks=["dmc/*"])  # doctest: +SKIP
    """
    references = load_reference(reference) if reference is not None else []  # a bad name fails first
    found = find_runs(indir)
    if not found:
        raise DreamworldError(f"no run under {indir} (no {METRICS_FILE} found); point --indir at a logdir")
    runs = [
        run
        for run in found
        if (tasks is None or any(fnmatchcase(run.task, p) for p in tasks))
        and (methods is None or any(fnmatchcase(run.method, p) for p in methods))
    ]
    if not runs:
        raise DreamworldError(
            f"no run under {indir} matches --tasks {tasks} --methods {methods}; "
            f"tasks found: {', '.join(sorted({r.task for r in found}))}; "
            f"methods found: {', '.join(sorted({r.method for r in found}))}"
        )
    found_curves = collect_curves(runs, xaxis, yaxis, bins)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    stem = str(outdir / yaxis.replace("/", "_"))
    paths = [Path(stem + ".png"), Path(stem + ".pdf"), Path(stem + ".json")]
    fig = figure(found_curves, references, (xaxis, yaxis), cols, size)
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    numbers = {"xaxis": xaxis, "yaxis": yaxis, "bins": bins, "curves": [asdict(c) for c in found_curves]}
    paths[2].write_text(json.dumps(numbers, indent=1, default=np.ndarray.tolist) + "\n", encoding="utf-8")
    return paths
