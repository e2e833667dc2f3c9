"""What a new user meets first: the README's commands and snippet, resuming as documented, plots,
the dream page for vector tasks, progress lines and fast command-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dreamworld.cli import main
from dreamworld.config import load_config
from dreamworld.run.checkpoint import load_checkpoint
from tiny import TINY


def one_line(err: str) -> str:
    err = err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_the_readme_resume_command_continues_the_run_from_its_config(tmp_path, capsys):
    run = str(tmp_path / "walker")
    first = ["train", "--algo", "dreamerv3", "--env", "dmc/walker-walk", "--preset", "dmc_proprio"]
    assert main([*first, "--logdir", run, *TINY, "--steps", "150"]) == 0
    saved = (tmp_path / "walker" / "config.yaml").read_bytes()
    # The README's second line: only --logdir and --steps.
    assert main(["train", "--logdir", run, "--steps", "250"]) == 0
    assert load_checkpoint(tmp_path / "walker" / "checkpoint.pt", kind="dreamer")["counters"]["steps"] >= 250
    config = load_config(files=[tmp_path / "walker" / "config.yaml"])
    assert config.env.name == "dmc/walker-walk" and config.env.repeat == 2 and config.dreamer.steps == 250
    assert config.dreamer.world_model.deter == 32  # TINY's, from the run's config.yaml
    capsys.readouterr()
    # What the checkpoint holds cannot change: one line naming the key, nothing on disk changes.
    saved = (tmp_path / "walker" / "config.yaml").read_bytes()
    for change, key in [
        (["--dreamer.world_model.deter", "48"], "dreamer.world_model.deter is 48 here but 32"),
        (["--env", "gym/Pendulum-v1"], "env.name is gym/Pendulum-v1 here but dmc/walker-walk"),
        (["--algo", "dreamerv1"], "here but"),
    ]:
        assert main(["train", "--logdir", run, "--steps", "300", *change]) == 2
        assert key in one_line(capsys.readouterr().err)
        assert (tmp_path / "walker" / "config.yaml").read_bytes() == saved
    # Settings that may change do, on top of the run's own.
    assert main(["train", "--logdir", run, "--steps", "300", "--dreamer.actor.opt.lr", "1e-4"]) == 0
    config = load_config(files=[tmp_path / "walker" / "config.yaml"])
    assert config.dreamer.actor.opt.lr == 1e-4 and config.env.name == "dmc/walker-walk"


def test_collect_continues_its_directory_and_refuses_another_task(tmp_path, capsys):
    logdir = str(tmp_path)
    argv = ["collect", "--env", "gym/Pendulum-v1", "--episodes", "1", "--logdir", logdir]
    assert main([*argv, "--env.time_limit", "20", "--log.progress", "false"]) == 0
    assert main(["collect", "--logdir", logdir, "--episodes", "2"]) == 0
    config = load_config(files=[tmp_path / "config.yaml"])
    assert config.env.name == "gym/Pendulum-v1" and config.collect.episodes == 2
    assert config.env.time_limit == 20
    capsys.readouterr()
    assert main(["collect", "--logdir", logdir, "--episodes", "3", "--env.obs", "image"]) == 2
    assert "env.obs" in one_line(capsys.readouterr().err)
    assert len(list((tmp_path / "episodes").glob("*.npz"))) == 2


def _readme_snippet() -> str:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    start = readme.index("```python\nfrom dreamworld.algos.dreamer.agent import Dreamer")
    return readme[start + len("```python\n") : readme.index("```", start + 10)]


def test_the_readme_python_snippet_runs_as_a_script(tmp_path):
    """Verbatim but for the number of steps (no update yet: the prefill is 1,024 steps)."""
    snippet = _readme_snippet()
    assert "agent.learn(steps=6_000)" in snippet
    (tmp_path / "snippet.py").write_text(snippet.replace("steps=6_000", "steps=200"))
    done = subprocess.run(
        [sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "score" in done.stdout and "Warning" not in done.stderr, done.stderr[-3000:]
    assert (tmp_path / "cartpole.pt").exists() and (tmp_path / "runs" / "cp" / "checkpoint.pt").exists()


def test_a_script_without_a_main_guard_gets_one_line_saying_what_to_add(tmp_path):
    snippet = _readme_snippet().replace("steps=6_000", "steps=100")
    snippet = snippet.replace('logdir="runs/cp"', 'logdir="runs/cp", overrides={"env.envs": 2}')
    (tmp_path / "script.py").write_text(snippet)
    done = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode != 0
    assert 'if __name__ == "__main__":' in done.stderr and "bootstrapping" not in done.stderr
    guarded = "def main():\n" + "".join(f"    {line}\n" for line in snippet.splitlines())
    (tmp_path / "script.py").write_text(guarded + '\n\nif __name__ == "__main__":\n    main()\n')
    done = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize(
    ("env", "key", "drawn"),
    [("gym/CartPole-v1", "ArrowRight", True), ("gym/Pendulum-v1", "ArrowLeft", True),
     ("dmc/cartpole-swingup", "ArrowRight", True), ("dmc/walker-walk", "ArrowUp", False)],
)  # fmt: skip
def test_the_dream_page_of_a_task_learned_from_vectors(tmp_path, env, key, drawn):
    from selenium.webdriver.common.keys import Keys

    from browser import check_vector_dream_page, dream_page
    from dreamworld.tools.dream import open_session

    argv = ["train", "--env", env, "--logdir", str(tmp_path), *TINY, "--steps", "120"]
    assert main([*argv, "--env.time_limit", "40", "--dreamer.eval_episodes", "1"]) == 0
    with dream_page(open_session(tmp_path)) as browser:
        check_vector_dream_page(browser, getattr(Keys, key.upper().replace("ARROW", "ARROW_")), drawn)


def test_a_dream_port_in_use_is_a_one_line_error(tmp_path, capsys):
    import socket

    argv = ["train", "--env", "gym/CartPole-v1", "--logdir", str(tmp_path), *TINY, "--steps", "110"]
    assert main([*argv, "--dreamer.eval_episodes", "0"]) == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        capsys.readouterr()
        assert main(["dream", "--logdir", str(tmp_path), "--port", str(port)]) == 2
    assert f"port {port}" in one_line(capsys.readouterr().err)


def test_a_run_says_what_it_is_about_to_do_and_that_it_resumes(tmp_path, capsys):
    argv = ["train", "--env", "gym/CartPole-v1", "--logdir", str(tmp_path), *TINY]
    assert main([*argv, "--steps", "120", "--dreamer.eval_episodes", "0"]) == 0
    out = capsys.readouterr().out
    assert f"training gym/CartPole-v1 for 120 steps (a new run) in {tmp_path} on cpu" in out
    assert main([*argv, "--steps", "150", "--dreamer.eval_episodes", "0"]) == 0
    assert "(resuming from step 120)" in capsys.readouterr().out


def test_progress_lines_evaluations_and_one_final_video(tmp_path, capsys):
    argv = ["train", "--env", "gym/CartPole-v1", "--logdir", str(tmp_path), *TINY, "--steps", "200"]
    argv += ["--dreamer.eval_every", "100", "--dreamer.eval_episodes", "1", "--log.progress", "true"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    evaluations = [line for line in lines if "evaluation return" in line and line.startswith("step ")]
    assert [line.split(":")[0] for line in evaluations] == ["step 101", "step 200"]  # 101: after the prefill
    progress = [line for line in lines if "step 200/200" in line]
    assert len(progress) == 1  # the final metrics and evaluation share their step: one line
    assert any("step 0/200" in line or "step 100/200" in line for line in lines)  # during prefill
    videos = sorted(path.name for path in (tmp_path / "videos").iterdir())
    assert [name for name in videos if name.startswith("eval_video_200")] == ["eval_video_200.mp4"]


def test_rates_have_two_significant_digits():
    from dreamworld.run.logger import rate_text

    assert [rate_text(v) for v in (0.534, 1.23, 7.0, 12.4, 345.6, 1234.0)] == [
        "0.53", "1.2", "7", "12", "346", "1,234",
    ]  # fmt: skip


def test_report_videos_are_shown_large_with_sharp_pixels(tmp_path):
    from dreamworld.tools.page import Page

    page = Page("run")
    page.video(Path(__file__), "clip.gif", "an episode")
    html = page.write(tmp_path).read_text()
    assert "height:256px" in html and "image-rendering:pixelated" in html and "class='clip'" in html


def test_config_keys_are_aligned_and_take_no_stray_flags(capsys):
    assert main(["config", "--keys"]) == 0
    lines = capsys.readouterr().out.splitlines()
    columns = {line.index(line.split()[1], len(line.split()[0])) for line in lines if len(line.split()) > 2}
    assert len(columns) == 1, columns
    assert main(["config", "--keys", "--foo"]) == 2
    assert "--foo" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "--stepz", "100"], "did you mean --steps?"),
        (["train", "--env", "gym/CartPol-v1", "--steps", "10"], "CartPole-v1"),
        (["train", "--env", "dmc/walker-walc"], "walker-walk"),
        (["worldmodels", "collect", "--logdir", "exp", "--preset", "cpuu"], "did you mean cpu?"),
        (["collect", "--episodez", "3"], "did you mean --episodes?"),
    ],
)
def test_command_line_mistakes_fail_fast_with_a_suggestion(tmp_path, argv, words):
    """Before torch loads: a second on a busy machine instead of ten."""
    code = (
        "import sys; from dreamworld.cli import main; code = main(sys.argv[1:]); "
        "print(code, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert words in one_line(done.stderr)


def test_the_dream_page_drives_carracing_with_one_throttle_axis(tmp_path):
    """``env.throttle`` leaves two actions: up and down are the throttle's two halves."""
    from selenium.webdriver.common.keys import Keys

    from browser import check_dream_page, dream_page
    from dreamworld.tools.dream import open_session

    argv = ["train", "--env", "carracing", "--logdir", str(tmp_path), *TINY, "--steps", "120"]
    assert main([*argv, "--env.throttle", "true", "--env.repeat", "4", "--dreamer.eval_episodes", "1"]) == 0
    with dream_page(open_session(tmp_path)) as browser:
        check_dream_page(browser, Keys.ARROW_UP)
