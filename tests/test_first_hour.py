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
