"""eval and report on tiny trained Dreamer runs (World Models runs: tests/test_worldmodels.py)."""

from __future__ import annotations

import json

import pytest

from dreamworld.cli import main
from tiny import TINY


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny DreamerV3 run on CartPole pixels with open-loop and evaluation videos."""
    logdir = tmp_path_factory.mktemp("tools") / "run"
    argv = ["train", "--env", "gym/CartPole-v1", "--logdir", str(logdir), *TINY, "--steps", "220"]
    argv += ["--env.obs", "image", "--env.size", "16", "--dreamer.report_every", "20"]
    assert main(argv) == 0
    return logdir


def test_eval_prints_mean_and_std_and_writes_a_video(run, capsys):
    assert main(["eval", "--logdir", str(run), "--episodes", "3", "--video", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "dreamer evaluation: return" in out and "over 3 episodes, most likely actions, length " in out
    result = json.loads((run / "eval" / "eval.json").read_text())
    assert len(result["returns"]) == 3 and result["mode"] == "mode"
    # CartPole pays 1 per step: every episode's return is its length in policy steps
    assert result["lengths"] == [round(value) for value in result["returns"]]
    assert list((run / "eval" / "videos").glob("eval_video_*.mp4"))
    assert main(["eval", "--logdir", str(run), "--episodes", "2", "--stochastic"]) == 0
    assert json.loads((run / "eval" / "eval.json").read_text())["mode"] == "sample"


def test_eval_follows_the_runs_own_evaluation_mode(run, tmp_path, capsys):
    """A run that evaluates with sampled actions (carracing_cpu) is evaluated the same way by default."""
    from dataclasses import replace

    from dreamworld.algos.dreamer.agent import Dreamer

    agent = Dreamer.load(run / "checkpoint.pt", device="cpu")
    config = agent.run_config
    agent.run_config = replace(config, dreamer=replace(config.dreamer, eval_mode="sample"))
    path = agent.save(tmp_path / "agent.pt")
    argv = ["eval", "--logdir", str(run), "--checkpoint", str(path), "--episodes", "1"]
    assert main(argv) == 0
    assert ", sampled actions" in capsys.readouterr().out
    assert json.loads((run / "eval" / "eval.json").read_text())["mode"] == "sample"
    assert main([*argv, "--deterministic"]) == 0
    assert json.loads((run / "eval" / "eval.json").read_text())["mode"] == "mode"
    with pytest.raises(SystemExit):
        main([*argv, "--deterministic", "--stochastic"])


def test_eval_of_a_saved_agent_file(run, tmp_path, capsys):
    from dreamworld.algos.dreamer.agent import Dreamer

    path = Dreamer.load(run / "checkpoint.pt", device="cpu").save(tmp_path / "agent.pt")
    assert main(["eval", "--logdir", str(run), "--checkpoint", str(path), "--episodes", "1"]) == 0
    assert str(path) in (run / "eval" / "eval.json").read_text()


def test_eval_reports_the_success_rate_of_a_robotics_task(tmp_path, capsys):
    """FetchReach's is_success reaches eval.json and the printed line; its episodes are 50 steps."""
    pytest.importorskip("gymnasium_robotics")
    logdir = tmp_path / "fetch"
    argv = ["train", "--env", "fetch/reach-dense", "--logdir", str(logdir), *TINY, "--steps", "60"]
    assert main([*argv, "--dreamer.eval_episodes", "0"]) == 0
    capsys.readouterr()
    assert main(["eval", "--logdir", str(logdir), "--episodes", "2"]) == 0
    assert ", length 50.0, success " in capsys.readouterr().out
    result = json.loads((logdir / "eval" / "eval.json").read_text())
    assert result["lengths"] == [50, 50] and result["stats"]["success"] in (0.0, 0.5, 1.0)


def test_eval_without_a_checkpoint_is_a_one_line_error(tmp_path, capsys):
    assert main(["eval", "--logdir", str(tmp_path)]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_report_page_shows_curves_losses_videos_and_config(run, capsys):
    assert main(["report", "--logdir", str(run)]) == 0
    report = run / "report"
    html = (report / "index.html").read_text()
    for name in ("scores.png", "wm_losses.png", "actor_losses.png", "critic_losses.png"):
        assert (report / name).stat().st_size > 1000 and name in html, name
    videos = [path.name for path in report.glob("*.mp4")]
    assert any(name.startswith("wm_open_loop") for name in videos), videos
    assert any(name.startswith("eval_video") for name in videos), videos
    for name in videos:
        assert name in html
    assert "train_ratio" in html and "Open-loop predictions" in (report / "report.md").read_text()


def test_report_of_an_empty_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", "--logdir", str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err


def test_dream_page_in_headless_chromium(run):
    from selenium.webdriver.common.keys import Keys

    from browser import check_dream_page, dream_page
    from dreamworld.tools.dream import open_session

    with dream_page(open_session(run)) as browser:
        check_dream_page(browser, Keys.ARROW_RIGHT)


def test_dream_session_follows_the_real_environment(run):
    from dreamworld.tools.dream import open_session

    session = open_session(run)
    first = session.reset()
    assert first["step"] == 0 and first["imagined"].startswith("data:image/png")
    reply = session.step(1, agent=False, temperature=None)
    assert reply["step"] == 1 and reply["action"] == 1 and reply["real_return"] == 1.0
    assert session.step(None, agent=True, temperature=None)["action"] in (0, 1)
    with pytest.raises(ValueError, match="outside"):
        session.step(7, agent=False, temperature=None)
