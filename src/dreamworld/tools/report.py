"""``dreamworld report``: one page per run, in ``<run>/report/`` (``index.html`` and ``report.md``).

For a Dreamer run: learning curves (evaluation return, episode scores), the losses of the world model,
actor and critic, gradient norms, the newest open-loop prediction videos (5 real frames, then 45
imagined; truth, model, error), evaluation videos and the resolved configuration. A World Models
experiment gets its own page (:mod:`dreamworld.algos.world_models.report`), built the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

from dreamworld.errors import DreamworldError
from dreamworld.run.logger import METRICS_FILE, SCORES_FILE, VIDEO_DIR
from dreamworld.tools.page import Page, curve_figure, read_metrics

REPORT_DIR = "report"
_NAMESPACES = (("wm/", "World model losses"), ("actor/", "Actor"), ("critic/", "Critic"))


def write_report(logdir: str | Path, device: str = "cpu") -> Path:
    """Builds the page of the run in ``logdir``; returns its HTML file.

    Raises:
        DreamworldError: ``logdir`` holds no run (no metrics and no experiment stages).
    """
    logdir = Path(logdir)
    if (logdir / "vae").is_dir():
        from dreamworld.algos.world_models.report import write_report as worldmodels_report
        from dreamworld.config import load_config

        config = load_config(["worldmodels"], [logdir / "config.yaml"], {"logdir": str(logdir)})
        return worldmodels_report(config, device)
    records = read_metrics(logdir / METRICS_FILE)
    if not records:
        raise DreamworldError(f"{logdir} holds no {METRICS_FILE}; is it a run directory?")
    page = Page(f"Run report: {logdir.name}")
    _curves(page, logdir, records)
    _losses(page, records)
    _videos(page, logdir)
    config_file = logdir / "config.yaml"
    if config_file.exists():
        page.section("Configuration")
        page.code(config_file.read_text())
    return page.write(logdir / REPORT_DIR)


def _curves(page: Page, logdir: Path, records: list[dict]) -> None:
    page.section("Returns")
    scores = [
        {"step": record["step"], "episode/score": record["score"]}
        for record in read_metrics(logdir / SCORES_FILE)
        if "score" in record
    ]
    if scores:
        page.figure(
            curve_figure(scores, ["episode/score"], "environment step", "Training episodes"),
            "scores.png",
            "return of every training episode",
        )
    evaluations = [record for record in records if "eval/return" in record]
    if evaluations:
        last = evaluations[-1]
        page.figure(
            curve_figure(evaluations, ["eval/return"], "environment step", "Evaluation"),
            "eval_return.png",
            "evaluation return",
        )
        page.text(f"Last evaluation: return {last['eval/return']:.1f} at step {last['step']}.")
    elif not scores:
        page.text("No episode has finished yet.")


def _losses(page: Page, records: list[dict]) -> None:
    keys = sorted(set().union(*records))
    for prefix, title in _NAMESPACES:
        losses = [key for key in keys if key.startswith(prefix) and "loss" in key]
        if losses:
            page.section(title)
            name = f"{prefix.rstrip('/')}_losses.png"
            page.figure(
                curve_figure(records, losses, "environment step", title),
                name,
                f"{title.lower()} over training",
            )
    norms = [key for key in keys if "grad_norm" in key]
    if norms:
        page.section("Gradient norms")
        page.figure(
            curve_figure(records, norms, "environment step", "Gradient norms"),
            "grad_norms.png",
            "global gradient norms",
        )


def _videos(page: Page, logdir: Path) -> None:
    directory = logdir / VIDEO_DIR
    for prefix, title, count in (
        ("wm_open_loop", "Open-loop predictions", 2),
        ("eval_video", "Evaluation episodes", 2),
    ):
        found = sorted([*directory.glob(f"{prefix}_*.mp4"), *directory.glob(f"{prefix}_*.gif")], key=_step_of)
        if not found:
            continue
        page.section(title)
        if prefix == "wm_open_loop":
            page.text(
                "Left to right: real frames, the model (5 frames of context, then 45 imagined from the "
                "actions alone) and the error; one replayed sequence per row."
            )
        for path in found[-count:]:
            page.video(path, path.name, f"{title.lower()} at step {_step_of(path)}")


def _step_of(path: Path) -> int:
    match = re.search(r"_(\d+)(?:-\d+)?$", path.stem)
    return int(match.group(1)) if match else -1
