"""The plotting tool: run discovery, binning, aggregation over seeds, references and output files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dreamworld.errors import DreamworldError
from dreamworld.tools.plot import (
    aggregate,
    bin_curve,
    collect_curves,
    figure,
    find_runs,
    load_reference,
    plot,
)


def write_jsonl(path: Path, records: list[dict[str, Any]], extra: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + extra)


def write_dreamer_runs(indir: Path) -> None:
    """``dreamer`` on ``walker`` with two seeds (seed 1 lacks the last bin); ``ppo`` on two tasks."""
    seed0 = [(0, 1.0), (5, 3.0), (12, 10.0), (25, 7.0)]
    seed1 = [(2, 4.0), (18, 6.0), (19, 8.0)]
    write_jsonl(
        indir / "walker/dreamer/0/metrics.jsonl",
        [{"step": s, "eval/return": y} for s, y in seed0] + [{"step": 7, "wm/loss_image": 0.5}],
        extra='{"step": 30, "eval/ret\n',  # cut short by a kill
    )
    write_jsonl(indir / "walker/dreamer/1/metrics.jsonl", [{"step": s, "eval/return": y} for s, y in seed1])
    write_jsonl(indir / "walker/ppo/0/metrics.jsonl", [{"step": 3, "eval/return": 2.0}])
    write_jsonl(indir / "hopper/ppo/0/metrics.jsonl", [{"step": 14, "eval/return": 5.0}])


def by_key(curves: list[Any]) -> dict[tuple[str, str], Any]:
    return {(c["task"], c["method"]) if isinstance(c, dict) else (c.task, c.method): c for c in curves}


def naive_bin(x: np.ndarray, y: np.ndarray, bins: float) -> tuple[list[float], list[float]]:
    centers, means = [], []
    for k in range(int(x.min() // bins), int(x.max() // bins) + 1):
        inside = [v for u, v in zip(x, y, strict=True) if k * bins <= u < (k + 1) * bins]
        at = [u for u in x if k * bins <= u < (k + 1) * bins]
        if inside:
            centers.append(sum(at) / len(at))
            means.append(sum(inside) / len(inside))
    return centers, means


def test_bin_curve_matches_naive_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1000, 200).round()
    y = rng.normal(size=200)
    for bins in (1, 7.5, 100, 3e4):
        centers, means = bin_curve(x, y, bins)
        expected_centers, expected_means = naive_bin(x, y, bins)
        np.testing.assert_allclose(centers, expected_centers, rtol=1e-12)
        np.testing.assert_allclose(means, expected_means, rtol=1e-12)


def test_bin_curve_without_bins_keeps_raw_points() -> None:
    centers, means = bin_curve(np.array([3.0, 1.0, 3.0, 2.0]), np.array([1.0, 5.0, 3.0, 4.0]), 0)
    assert centers.tolist() == [1.0, 2.0, 3.0]
    assert means.tolist() == [5.0, 4.0, 2.0]


def test_aggregate_matches_naive_reference() -> None:
    rng = np.random.default_rng(1)
    seeds = [
        (str(i), *bin_curve(rng.integers(0, 50, 20).astype(float), rng.normal(size=20), 10)) for i in range(3)
    ]
    curve = aggregate("t", "m", seeds)
    for i, x in enumerate(curve.x):
        values = [y[x_ == x][0] for _, x_, y in seeds if x in x_]
        assert curve.count[i] == len(values)
        assert curve.mean[i] == pytest.approx(np.mean(values), rel=1e-12)
        assert (curve.low[i], curve.high[i]) == (min(values), max(values))


def test_dreamer_layout_bins_and_band(tmp_path: Path) -> None:
    write_dreamer_runs(tmp_path / "runs")
    runs = find_runs(tmp_path / "runs")
    assert [(r.task, r.method, r.seed) for r in runs] == [
        ("hopper", "ppo", "0"),
        ("walker", "dreamer", "0"),
        ("walker", "dreamer", "1"),
        ("walker", "ppo", "0"),
    ]
    with pytest.warns(UserWarning, match="skipped 1 malformed line"):
        curves = by_key(collect_curves(runs, "step", "eval/return", 10))
    dreamer = curves["walker", "dreamer"]
    # Seed 0: bins [0, 10) -> (1 + 3) / 2, [10, 20) -> 10, [20, 30) -> 7. Seed 1: (4), (6 + 8) / 2 = 7.
    # Each point sits at the mean step of the bin's data: (0 + 5) / 2 and 2, then 12 and 18.5, then 25.
    assert dreamer.x.tolist() == [2.25, 15.25, 25.0]
    assert dreamer.mean.tolist() == [3.0, 8.5, 7.0]
    assert dreamer.low.tolist() == [2.0, 7.0, 7.0]
    assert dreamer.high.tolist() == [4.0, 10.0, 7.0]
    assert dreamer.count.tolist() == [2, 2, 1]
    assert dreamer.seeds == ("0", "1")
    assert curves["hopper", "ppo"].x.tolist() == [14.0]


def test_config_layout_reads_task_and_seed(tmp_path: Path) -> None:
    indir = tmp_path / "runs"
    for run, task, seed in [("cartpole", "gym/CartPole-v1", 3), ("dreamerv3/a", "dmc/walker-walk", 7)]:
        write_jsonl(indir / run / "metrics.jsonl", [{"step": 1, "eval/return": 1.0}])
        (indir / run / "config.yaml").write_text(f"env:\n  name: {task}\nseed: {seed}\n")
    # World Models stages log below the directory that holds config.yaml.
    write_jsonl(indir / "wm/vae/metrics.jsonl", [{"step": 1, "vae/loss": 1.0}])
    (indir / "wm/config.yaml").write_text("env:\n  name: carracing\nseed: 0\n")
    found = {(r.task, r.method, r.seed) for r in find_runs(indir)}
    assert found == {
        ("gym/CartPole-v1", "cartpole", "3"),
        ("dmc/walker-walk", "dreamerv3", "7"),
        ("carracing", "wm", "0"),
    }


def test_plot_writes_png_pdf_and_numbers(tmp_path: Path) -> None:
    write_dreamer_runs(tmp_path / "runs")
    with pytest.warns(UserWarning, match="malformed"):
        paths = plot(tmp_path / "runs", tmp_path / "plots", yaxis="eval/return", bins=10, cols=1, size=(3, 2))
    png, pdf, numbers = paths
    assert [p.name for p in paths] == ["eval_return.png", "eval_return.pdf", "eval_return.json"]
    assert png.read_bytes().startswith(b"\x89PNG") and pdf.read_bytes().startswith(b"%PDF")
    data = json.loads(numbers.read_text())
    assert (data["xaxis"], data["yaxis"], data["bins"]) == ("step", "eval/return", 10)
    dreamer = by_key(data["curves"])["walker", "dreamer"]
    assert (dreamer["x"], dreamer["mean"]) == ([2.25, 15.25, 25.0], [3.0, 8.5, 7.0])
    assert (dreamer["low"], dreamer["high"], dreamer["seeds"]) == (
        [2.0, 7.0, 7.0],
        [4.0, 10.0, 7.0],
        ["0", "1"],
    )


def test_plot_without_bins_keeps_raw_points(tmp_path: Path) -> None:
    write_dreamer_runs(tmp_path / "runs")
    with pytest.warns(UserWarning, match="malformed"):
        paths = plot(tmp_path / "runs", tmp_path / "plots", bins=0, methods=["dreamer"])
    dreamer = json.loads(paths[2].read_text())["curves"][0]
    assert dreamer["x"] == [0.0, 2.0, 5.0, 12.0, 18.0, 19.0, 25.0]
    assert dreamer["mean"] == [1.0, 4.0, 3.0, 10.0, 6.0, 8.0, 7.0]
    assert dreamer["count"] == [1] * 7


def test_plot_filters_tasks_and_methods(tmp_path: Path) -> None:
    write_dreamer_runs(tmp_path / "runs")
    paths = plot(tmp_path / "runs", tmp_path / "a", tasks=["hop*"])
    assert [(c["task"], c["method"]) for c in json.loads(paths[2].read_text())["curves"]] == [
        ("hopper", "ppo")
    ]
    paths = plot(tmp_path / "runs", tmp_path / "b", tasks=["walker"], methods=["p?o", "sac"])
    assert [(c["task"], c["method"]) for c in json.loads(paths[2].read_text())["curves"]] == [
        ("walker", "ppo")
    ]
    with pytest.raises(DreamworldError, match="tasks found: hopper, walker; methods found: dreamer, ppo"):
        plot(tmp_path / "runs", tmp_path / "c", tasks=["cheetah"])


def test_other_x_axis_and_scores_file(tmp_path: Path) -> None:
    run = tmp_path / "runs/walker/dreamer/0"
    write_jsonl(run / "metrics.jsonl", [{"step": 100, "train/updates": 4, "wm/loss_image": 2.0}])
    write_jsonl(run / "scores.jsonl", [{"step": 10, "score": 1.0, "length": 5}, {"step": 30, "score": "nan"}])
    (curve,) = collect_curves(find_runs(tmp_path / "runs"), "train/updates", "wm/loss_image", 0)
    assert (curve.x.tolist(), curve.mean.tolist()) == ([4.0], [2.0])
    for key in ("score", "episode/score"):
        (curve,) = collect_curves(find_runs(tmp_path / "runs"), "step", key, 0)
        assert (curve.x.tolist(), curve.mean.tolist()) == ([10.0], [1.0])


def test_missing_runs_or_keys_name_what_exists(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DreamworldError, match="no run under"):
        plot(tmp_path / "empty", tmp_path / "plots")
    write_dreamer_runs(tmp_path / "runs")
    with pytest.warns(UserWarning), pytest.raises(DreamworldError) as error:
        plot(tmp_path / "runs", tmp_path / "plots", yaxis="test/return")
    assert "--yaxis 'test/return'" in str(error.value)
    assert "keys found: eval/return, step, wm/loss_image" in str(error.value)
    with pytest.warns(UserWarning), pytest.raises(DreamworldError, match="--xaxis 'time'"):
        plot(tmp_path / "runs", tmp_path / "plots", xaxis="time")


def test_reference_curves_from_json_and_csv(tmp_path: Path) -> None:
    records = tmp_path / "records.json"
    records.write_text(
        json.dumps(
            [
                {"task": "walker", "method": "paper", "x": [20, 10], "y": [2.0, 1.0]},
                {"task": "walker", "method": "paper", "x": 15, "y": 1.5},
            ]
        )
    )
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"walker": {"paper": [[10, 1.0], [15, 1.5], [20, 2.0]]}}))
    table = tmp_path / "table.csv"
    table.write_text(
        "task,method,x,y\nwalker,paper,20,2.0\nwalker,paper,10,1\nwalker,paper,15,1.5\nhopper,b,1e3,4\n"
    )
    for path in (records, nested, table):
        reference = load_reference(path)[-1]
        assert (reference.task, reference.method) == ("walker", "paper")
        assert (reference.x.tolist(), reference.y.tolist()) == ([10.0, 15.0, 20.0], [1.0, 1.5, 2.0])
    assert load_reference(table)[0].x.tolist() == [1000.0]
    (tmp_path / "bad.csv").write_text("task,x\nwalker,1\n")
    with pytest.raises(DreamworldError, match="header task,method,x,y"):
        load_reference(tmp_path / "bad.csv")


def test_references_are_drawn_dashed_on_their_task(tmp_path: Path) -> None:
    write_dreamer_runs(tmp_path / "runs")
    (tmp_path / "ref.csv").write_text("task,method,x,y\nwalker,paper,0,1\nwalker,paper,30,9\ncheetah,c,0,1\n")
    with pytest.warns(UserWarning):
        curves = collect_curves(find_runs(tmp_path / "runs"), "step", "eval/return", 10)
    fig = figure(curves, load_reference(tmp_path / "ref.csv"), ("step", "eval/return"), cols=2)
    hopper, walker = fig.axes[:2]
    assert [line.get_linestyle() for line in walker.lines] == ["-", "-", "--"]
    assert [line.get_linestyle() for line in hopper.lines] == ["-"]
    assert walker.lines[2].get_xydata().tolist() == [[0.0, 1.0], [30.0, 9.0]]
    assert sorted(text.get_text() for text in fig.legends[0].texts) == ["dreamer", "paper (reference)", "ppo"]
    with pytest.warns(UserWarning):
        assert plot(tmp_path / "runs", tmp_path / "plots", reference=tmp_path / "ref.csv")[0].stat().st_size


def test_seed_suffix_is_not_part_of_the_method_and_the_cli_plots(tmp_path: Path, capsys: Any) -> None:
    from dreamworld.cli import main

    indir = tmp_path / "runs"
    for seed in (0, 1):
        run = indir / f"cartpole-dreamerv3-seed{seed}"
        write_jsonl(run / "metrics.jsonl", [{"step": 100, "eval/return": 10.0 + seed}])
        (run / "config.yaml").write_text(f"env:\n  name: gym/CartPole-v1\nseed: {seed}\n")
    assert {r.method for r in find_runs(indir)} == {"cartpole-dreamerv3"}
    outdir = tmp_path / "plots"
    assert main(["plot", "--indir", str(indir), "--outdir", str(outdir), "--bins", "1000"]) == 0
    assert "eval_return.png" in capsys.readouterr().out
    numbers = json.loads((outdir / "eval_return.json").read_text())
    assert numbers["curves"][0]["mean"] == [10.5] and numbers["curves"][0]["low"] == [10.0]


def test_evaluations_of_a_run_are_not_runs_and_points_sit_at_their_steps(tmp_path: Path) -> None:
    """``dreamworld eval`` writes ``<run>/eval/metrics.jsonl`` (one point at step 0): not a seed."""
    run = tmp_path / "runs" / "cartpole-dreamerv3"
    write_jsonl(
        run / "metrics.jsonl", [{"step": s, "eval/return": float(s) / 100} for s in (2000, 4000, 6000)]
    )
    (run / "config.yaml").write_text("env:\n  name: gym/CartPole-v1\nseed: 0\n")
    write_jsonl(run / "eval" / "metrics.jsonl", [{"step": 0, "eval/return": 453.8}])
    (run / "eval" / "eval.json").write_text("{}")
    runs = find_runs(tmp_path / "runs")
    assert [r.path for r in runs] == [run]
    (curve,) = collect_curves(runs, "step", "eval/return", 1000)
    assert curve.x.tolist() == [2000.0, 4000.0, 6000.0] and curve.mean.tolist() == [20.0, 40.0, 60.0]


def test_environment_steps_and_shipped_references_line_up_with_dmc_runs(tmp_path: Path) -> None:
    """``env_step`` multiplies the policy steps by each run's action repeat (the suite's default when
    ``env.repeat`` is null); the shipped DreamerV3 scores match runs whose directory spells the task
    ``dmc_ball_in_cup-catch``; an unknown reference name lists the shipped ones."""
    for repeat, method in ((4, "four"), (None, "default")):
        run = tmp_path / "runs/dmc_ball_in_cup-catch" / method / "0"
        write_jsonl(run / "metrics.jsonl", [{"step": 12500, "eval/return": 700.0}])
        config = f"env:\n  name: dmc/ball_in_cup-catch\n  repeat: {repeat or 'null'}\n"
        (run / "config.yaml").write_text(config)
    curves = by_key(collect_curves(find_runs(tmp_path / "runs"), "env_step", "eval/return", 0))
    assert curves["dmc_ball_in_cup-catch", "four"].x.tolist() == [50000.0]
    assert curves["dmc_ball_in_cup-catch", "default"].x.tolist() == [25000.0]
    shipped = load_reference("dreamerv3_dmc_proprio")
    assert {r.task: r.y.tolist() for r in shipped}["dmc/ball_in_cup-catch"] == [743.0]
    fig = figure(list(curves.values()), shipped, ("env_step", "eval/return"))
    (axis,) = [a for a in fig.axes if a.get_visible()]
    assert [line.get_xydata().tolist() for line in axis.lines][-1] == [[100000.0, 743.0]]
    assert "DreamerV3 (official scores) (reference)" in [t.get_text() for t in fig.legends[0].texts]
    with pytest.raises(DreamworldError, match="shipped references: dreamerv3_dmc_proprio"):
        load_reference("dreamerv3_dmc")
