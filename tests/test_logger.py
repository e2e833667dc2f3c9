"""The logger: what TensorBoard reads back, JSON lines, videos, progress output, full disks."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

import dreamworld
from dreamworld.errors import StorageError
from dreamworld.run import logger as logger_module
from dreamworld.run.logger import METRICS_FILE, SCORES_FILE, Logger, read_jsonl

SRC = str(Path(dreamworld.__file__).resolve().parents[1])


def moving_square(frames: int, height: int, width: int) -> np.ndarray:
    """A white square crossing a dark background, so that no two frames are alike."""
    video = np.full((frames, height, width, 3), 30, np.uint8)
    for t in range(frames):
        video[t, 2:8, 2 + 3 * t : 8 + 3 * t] = 255
    return video


def tensorboard_of(logdir: Path) -> event_accumulator.EventAccumulator:
    guidance = {kind: 0 for kind in event_accumulator.DEFAULT_SIZE_GUIDANCE}
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance=guidance)
    accumulator.Reload()
    return accumulator


def mp4_frames(path: Path) -> tuple[tuple[int, int], int]:
    """(width, height) and frame count of a video, decoded by ffmpeg."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return meta["size"], sum(1 for _ in reader)


def test_scalars_images_and_videos_reach_tensorboard_and_files(tmp_path):
    image = (np.arange(20 * 30 * 3) % 251).astype(np.uint8).reshape(20, 30, 3)
    gray = np.linspace(0, 1, 12 * 10).reshape(12, 10, 1)
    video = moving_square(frames=6, height=24, width=40)
    with Logger(tmp_path, progress=False, video_fps=10) as logger:
        for step in (1, 2, 3):
            logger.add({"loss": step / 2, "kl": math.nan if step == 2 else 1.0}, prefix="train")
            logger.write(step)
        logger.image("wm/recon", image)
        logger.image("wm/gray", gray)
        logger.score(3, 21.5, 200, success=1.0)
        path = logger.video("eval/policy", video, step=3)
        logger.write(3)

    tb = tensorboard_of(tmp_path)
    assert [(e.step, e.value) for e in tb.Scalars("train/loss")] == [(1, 0.5), (2, 1.0), (3, 1.5)]
    assert math.isnan(tb.Scalars("train/kl")[1].value)
    assert [(e.step, e.value) for e in tb.Scalars("episode/score")] == [(3, 21.5)]
    assert tb.Scalars("episode/success")[0].value == 1.0

    (recon,) = tb.Images("wm/recon")
    assert (recon.step, recon.width, recon.height) == (3, 30, 20)
    np.testing.assert_array_equal(iio.imread(recon.encoded_image_string), image)  # PNG: lossless
    gray_back = iio.imread(tb.Images("wm/gray")[0].encoded_image_string)
    np.testing.assert_array_equal(gray_back, np.round(gray[..., 0] * 255).astype(np.uint8))

    (clip,) = tb.Images("eval/policy")
    assert clip.step == 3 and clip.encoded_image_string.startswith(b"GIF89a")
    gif = iio.imread(clip.encoded_image_string, extension=".gif", index=None)
    assert gif.shape[:3] == (6, 24, 40)
    assert iio.immeta(clip.encoded_image_string, extension=".gif")["loop"] == 0  # loops forever

    assert path == tmp_path / "videos" / "eval_policy_3.mp4"
    assert mp4_frames(path) == ((40, 24), 6)

    text = (tmp_path / METRICS_FILE).read_text()
    assert "NaN" not in text  # strict JSON
    rows = [json.loads(line) for line in text.splitlines()]
    assert rows[0] == {"step": 1, "train/loss": 0.5, "train/kl": 1.0}
    assert rows[1]["train/kl"] == "nan" and len(rows) == 3
    scores = [json.loads(line) for line in (tmp_path / SCORES_FILE).read_text().splitlines()]
    assert scores == [{"step": 3, "score": 21.5, "length": 200, "success": 1.0}]


def test_odd_sized_video_is_padded_by_one_pixel(tmp_path):
    with Logger(tmp_path, progress=False, tensorboard=False) as logger:
        path = logger.video("episode/video", moving_square(frames=5, height=21, width=35)[..., :1])
        again = logger.video("episode/video", moving_square(frames=5, height=21, width=35))
    assert mp4_frames(path) == ((36, 22), 5)
    assert again == path.with_name("episode_video_0-1.mp4") and again.exists()


def test_video_falls_back_to_gif_when_ffmpeg_fails(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no ffmpeg here")

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", broken)
    with Logger(tmp_path, progress=False) as logger, pytest.warns(UserWarning, match="ffmpeg"):
        path = logger.video("eval/policy", moving_square(4, 16, 20), step=7)
    assert path == tmp_path / "videos" / "eval_policy_7.gif"
    assert iio.imread(path, index=None).shape[:3] == (4, 16, 20)
    assert not path.with_suffix(".mp4").exists()


def test_a_resumed_run_appends_and_repairs_a_line_cut_by_a_kill(tmp_path):
    with Logger(tmp_path, progress=False) as logger:
        logger.scalar("train/loss", math.inf)
        logger.write(10)
    with open(tmp_path / METRICS_FILE, "a") as file:
        file.write('{"step": 20, "train/lo')  # a kill in the middle of a line
    with Logger(tmp_path, progress=False) as logger:
        logger.scalar("train/loss", -math.inf)
        logger.write(30)
    rows = read_jsonl(tmp_path / METRICS_FILE)
    assert rows == [{"step": 10, "train/loss": math.inf}, {"step": 30, "train/loss": -math.inf}]
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2


def test_plain_progress_lines_carry_step_speed_eta_and_score(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(logger_module, "PLAIN_INTERVAL_S", 0.0)
    with Logger(tmp_path, total_steps=1000, description="train cartpole") as logger:
        logger.write(0)
        logger.score(400, 12.5, 400)
        logger.write(500)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "train cartpole: step 0/1,000 | - steps/s | ETA -"
    assert lines[1].startswith("train cartpole: step 500/1,000 | ") and "steps/s | ETA " in lines[1]
    assert lines[1].endswith("last score 12.5") and len(lines) == 2


PROGRESS_SCRIPT = """
import sys
from dreamworld.run.logger import Logger
with Logger(sys.argv[1], total_steps=10_000) as logger:
    for step in range(0, 10_001, 100):
        logger.scalar("train/loss", 1.0 / (step + 1))
        logger.write(step)
"""


def test_progress_in_a_pipe_is_a_few_plain_lines(tmp_path):
    env = {key: value for key, value in os.environ.items() if "FORCE" not in key and "TTY" not in key}
    env["PYTHONPATH"] = os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", PROGRESS_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, "one line at the first write, one when closed, none in between"
    assert lines[0].startswith(f"{tmp_path.name}: step 0/10,000")
    assert lines[1].startswith(f"{tmp_path.name}: step 10,000/10,000 | ")
    assert "\x1b" not in done.stdout and "\r" not in done.stdout


def test_unwritable_logdir_is_a_one_line_storage_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="could not create the log directory") as error:
        Logger(tmp_path / "file" / "run", progress=False)
    assert "Not a directory" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_is_a_storage_error_and_keeps_what_was_written(tmp_path):
    # Writing to /dev/full fails with ENOSPC, exactly like a full disk.
    (tmp_path / METRICS_FILE).symlink_to("/dev/full")
    with Logger(tmp_path, progress=False) as logger:
        logger.score(5, 1.0, 5)
        logger.scalar("train/loss", 0.1)
        with pytest.raises(StorageError) as error:
            logger.write(5)
    assert str(error.value) == (f"could not write {tmp_path / METRICS_FILE}: No space left on device")
    assert read_jsonl(tmp_path / SCORES_FILE) == [{"step": 5, "score": 1.0, "length": 5}]


def test_bad_input_and_use_after_close(tmp_path):
    logger = Logger(tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"got shape \(4, 4\)"):
        logger.image("wm/recon", np.zeros((4, 4)))
    with pytest.raises(ValueError, match="uint8 or float"):
        logger.video("eval/policy", np.zeros((2, 4, 4, 3), np.int64))
    with pytest.raises(TypeError, match="scalar 'train/loss' is not a number"):
        logger.scalar("train/loss", "high")  # type: ignore[arg-type]
    logger.scalar("train/loss", 1.0)
    with pytest.warns(UserWarning, match="before writing train/loss"):
        logger.close()
    logger.close()
    with pytest.raises(RuntimeError, match="closed"):
        logger.write(1)
