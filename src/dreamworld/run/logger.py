"""One logger for every algorithm: JSON lines, TensorBoard, video files and a progress display.

Everything lands in the run directory::

    <logdir>/metrics.jsonl              one line per write(): {"step": 1000, "train/loss": 0.5, ...}
    <logdir>/scores.jsonl               one line per episode: {"step", "score", "length", extras...}
    <logdir>/events.out.tfevents.*      TensorBoard: scalars, images, videos as animated GIFs
    <logdir>/videos/<name>_<step>.mp4   every video, also as a file

Every file is appended to (a resumed run keeps its earlier lines) without buffering, so a
killed run loses nothing it wrote. A run that resumes from a checkpoint first drops what was written
after it (:meth:`Logger.marks`, :func:`rewind_logs`, and ``purge_step``, which makes TensorBoard discard
the later events of earlier files). JSON has no NaN or infinity: such values are written
as the strings ``"nan"``, ``"inf"`` and ``"-inf"``, which ``float()`` reads back (as
:func:`read_jsonl` does); TensorBoard keeps them as floats.

TensorBoard records are written synchronously from the calling thread (the record format is
TensorBoard's own). ``SummaryWriter`` writes from a background thread instead, where a full disk
prints a thread traceback and surfaces only on a later call; here it is a :class:`StorageError`
at the call that failed.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import socket
import sys
import time
import warnings
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any, TypedDict, TypeVar

import imageio.v3 as iio
import numpy as np
from rich.console import Console
from rich.errors import LiveError
from rich.progress import BarColumn, Progress, TextColumn
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter

from dreamworld.errors import StorageError

METRICS_FILE = "metrics.jsonl"
SCORES_FILE = "scores.jsonl"
VIDEO_DIR = "videos"

PLAIN_INTERVAL_S = 30.0
"""Without a terminal (CI, pipes, files) the progress is a plain line at most this often."""

_SPEED_WINDOW_S = 60.0
_SMOOTHING_S = 180.0
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class Logger:
    """Writes metrics, episode scores, images and videos of one run, and shows its progress.

    Scalars and images are buffered and written together by :meth:`write`, at the step it is given;
    a scalar logged twice before a write keeps its last value, so average per-update metrics before
    handing them over. Episode scores and videos are written at once, at their own step.

    Args:
        logdir: Run directory; created if missing.
        total_steps: Steps the run will take, for the progress bar and its ETA; None if unknown.
        tensorboard: Write TensorBoard event files into ``logdir``.
        progress: Show progress: a live bar on a terminal, else a plain line at most every
            :data:`PLAIN_INTERVAL_S` seconds.
        video_fps: Frame rate of videos.
        description: Label of the progress display; defaults to the name of ``logdir``.
        purge_step: For a resumed run: TensorBoard drops the events of earlier event files from this
            step on (they were written after the checkpoint the run resumes from).

    Raises:
        StorageError: The run directory or a log file cannot be created.

    Example:
        >>> with Logger(tmp / "run", total_steps=1000, progress=False) as logger:  # doctest: +SKIP
        ...     logger.add({"loss": 0.5, "kl": 1.2}, prefix="train")
        ...     logger.score(step=200, score=21.0, length=200)
        ...     logger.write(step=200)
    """

    def __init__(
        self,
        logdir: str | Path,
        *,
        total_steps: int | None = None,
        tensorboard: bool = True,
        progress: bool = True,
        video_fps: int = 20,
        description: str = "",
        purge_step: int | None = None,
    ) -> None:
        if video_fps <= 0:
            raise ValueError(f"video_fps must be positive, got {video_fps}")
        self.logdir = Path(logdir)
        self.video_fps = video_fps
        self._step = 0
        self._scalars: dict[str, float] = {}
        self._images: dict[str, np.ndarray] = {}
        self._closed = False
        with _storage_errors("create the log directory", self.logdir):
            self.logdir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:  # closes the files already open if a later one fails
            self._metrics = _closed_by(stack, _JsonLines(self.logdir / METRICS_FILE))
            self._scores = _closed_by(stack, _JsonLines(self.logdir / SCORES_FILE))
            self._events = _closed_by(stack, _EventFile(self.logdir)) if tensorboard else None
            if self._events is not None and purge_step is not None:
                self._events.purge(purge_step)
            self._resources = stack.pop_all()
        label = description or self.logdir.name
        self._progress = _make_progress(label, total_steps) if progress else None

    @property
    def step(self) -> int:
        """The step of the latest :meth:`write` or :meth:`score`; videos default to it."""
        return self._step

    def marks(self) -> dict[str, int]:
        """The lengths of ``metrics.jsonl`` and ``scores.jsonl`` now, for :func:`rewind_logs`."""
        return {METRICS_FILE: self._metrics.size(), SCORES_FILE: self._scores.size()}

    def scalar(self, name: str, value: float) -> None:
        """Buffers one scalar until the next :meth:`write`.

        Args:
            name: Namespaced tag such as ``"train/loss"``.
            value: Anything ``float()`` accepts (a number, a numpy scalar, a one-element tensor);
                NaN and infinities are kept.

        Example:
            >>> logger.scalar("fps/env", 812.0)  # doctest: +SKIP
        """
        if not name:
            raise ValueError("a scalar needs a non-empty name")
        try:
            self._scalars[name] = float(value)
        except (TypeError, ValueError) as error:
            raise TypeError(f"scalar '{name}' is not a number: {error}") from None

    def add(self, metrics: Mapping[str, float], prefix: str = "") -> None:
        """Buffers several scalars, their names prefixed with ``prefix``.

        Args:
            metrics: Name to value.
            prefix: Namespace such as ``"train"``; a ``/`` is added when it does not end in one.

        Example:
            >>> logger.add({"loss": 0.3}, prefix="wm")  # buffers "wm/loss"  # doctest: +SKIP
        """
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        for name, value in metrics.items():
            self.scalar(prefix + name, value)

    def image(self, name: str, image: np.ndarray) -> None:
        """Buffers an image for TensorBoard until the next :meth:`write`.

        Args:
            name: Tag such as ``"wm/reconstruction"``.
            image: ``(H, W, C)`` with ``C`` in {1, 3}, uint8 or float in ``[0, 1]``.

        Example:
            >>> logger.image("wm/reconstruction", np.zeros((64, 64, 3), np.uint8))  # doctest: +SKIP
        """
        self._images[name] = _to_uint8(image, 3, f"image '{name}'")

    def video(self, name: str, frames: np.ndarray, *, step: int | None = None) -> Path:
        """Writes a video now: an animated GIF to TensorBoard and an MP4 file.

        Unlike scalars the video is not buffered, so that its file exists when this returns. If
        ffmpeg fails the file is a GIF instead, with a warning.

        Args:
            name: Tag such as ``"eval/policy"``; the file is named after it, with ``/`` as ``_``.
            frames: ``(T, H, W, C)`` with ``C`` in {1, 3}, uint8 or float in ``[0, 1]``. Any size
                works; odd sizes are padded by one pixel for the encoder.
            step: Step to record it at; defaults to :attr:`step`.

        Returns:
            The video file, ``<logdir>/videos/<name>_<step>.mp4`` (a suffix is added rather than
            overwriting an existing file).

        Raises:
            StorageError: The file or the event record could not be written.

        Example:
            >>> frames = np.zeros((50, 64, 64, 3), np.uint8)
            >>> path = logger.video("eval/policy", frames, step=1000)  # doctest: +SKIP
        """
        self._check_open()
        frames = _to_uint8(frames, 4, f"video '{name}'")
        step = self._step if step is None else step
        gif = _encode_gif(frames, self.video_fps)
        if self._events is not None:
            self._events.write(_image_summary(name, frames[0].shape, gif), step)
        directory = self.logdir / VIDEO_DIR
        with _storage_errors("create", directory):
            directory.mkdir(exist_ok=True)
        path = _free_path(directory, f"{name.replace('/', '_')}_{step}", ".mp4")
        return _write_video_file(path, frames, self.video_fps, gif)

    def score(self, step: int, score: float, length: int, **extra: float) -> None:
        """Records a finished episode in ``scores.jsonl`` and TensorBoard, at its own step.

        TensorBoard gets ``episode/score``, ``episode/length`` and ``episode/<key>`` per extra,
        once per episode, so none is lost when several episodes end between two writes.

        Args:
            step: Environment step at which the episode ended.
            score: Undiscounted return.
            length: Number of steps.
            **extra: Further per-episode numbers, such as ``success=1.0``.

        Example:
            >>> logger.score(5000, score=812.5, length=1000, success=1.0)  # doctest: +SKIP
        """
        self._check_open()
        record = {"step": step, "score": float(score), "length": int(length)}
        record.update({key: float(value) for key, value in extra.items()})
        self._scores.write(record)
        if self._events is not None:
            values = {f"episode/{key}": value for key, value in record.items() if key != "step"}
            self._events.write(_scalar_summary(values), step)
        self._step = step
        if self._progress is not None:
            self._progress.show_score(record["score"])

    def progress(self, step: int) -> None:
        """Moves the progress display to ``step`` without writing anything (the prefill, say)."""
        self._step = step
        if self._progress is not None:
            self._progress.advance(step)

    def note(self, text: str) -> None:
        """Prints one line (an evaluation's result) above the progress display, or as a plain line."""
        if self._progress is not None:
            self._progress.note(text)
        else:
            print(text, flush=True)

    def write(self, step: int) -> None:
        """Writes the buffered scalars and images at ``step`` and updates the progress display.

        A ``metrics.jsonl`` line is written only when scalars were buffered.

        Args:
            step: Environment step the values belong to.

        Raises:
            StorageError: A file could not be written; what was written before stays intact.

        Example:
            >>> logger.scalar("train/loss", 0.25)  # doctest: +SKIP
            >>> logger.write(1000)  # doctest: +SKIP
        """
        self._check_open()
        scalars, self._scalars = self._scalars, {}
        images, self._images = self._images, {}
        self._step = step
        if scalars:
            self._metrics.write({"step": step, **scalars})
        if self._events is not None:
            if scalars:
                self._events.write(_scalar_summary(scalars), step)
            for name, image in images.items():
                self._events.write(_image_summary(name, image.shape, _encode_png(image)), step)
        if self._progress is not None:
            self._progress.advance(step)

    def close(self) -> None:
        """Closes the files and stops the progress display; calling it again is a no-op.

        Values buffered since the last :meth:`write` have no step and are dropped, with a warning
        (without one when the ``with`` block is left by an exception).
        """
        if self._closed:
            return
        self._closed = True
        if self._scalars or self._images:
            names = ", ".join([*self._scalars, *self._images])
            warnings.warn(f"Logger closed before writing {names}; call write(step) first", stacklevel=2)
        try:
            if self._progress is not None:
                self._progress.close()
        finally:
            self._resources.close()

    def __enter__(self) -> Logger:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None:  # the run failed: unwritten values are expected, not a mistake
            self._scalars.clear()
            self._images.clear()
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the logger of {self.logdir} is closed")


def rewind_logs(logdir: str | Path, marks: Mapping[str, int], step: int) -> None:
    """Drops what a run wrote after a checkpoint: the JSON-lines files are cut to the lengths
    :meth:`Logger.marks` recorded then, and videos of later steps are deleted.

    Args:
        logdir: The run directory (its logger must not be open).
        marks: File name to length in bytes.
        step: The checkpoint's step; videos recorded after it go.
    """
    logdir = Path(logdir)
    for name, size in marks.items():
        path = logdir / name
        if path.exists() and path.stat().st_size > size:
            with _storage_errors("truncate", path), open(path, "r+b") as file:
                file.truncate(size)
    pattern = re.compile(r"_(\d+)(?:-\d+)?$")
    for video in (logdir / VIDEO_DIR).glob("*") if (logdir / VIDEO_DIR).is_dir() else []:
        found = pattern.search(video.stem)
        if found and int(found.group(1)) > step:
            video.unlink(missing_ok=True)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Reads ``metrics.jsonl`` or ``scores.jsonl``, with ``"nan"``/``"inf"``/``"-inf"`` as floats.

    A line that does not parse (cut short by a kill or a full disk) is skipped.

    Args:
        path: The file.

    Returns:
        One dict per line, in order.

    Example:
        >>> losses = [row["train/loss"] for row in read_jsonl(run / METRICS_FILE)]  # doctest: +SKIP
    """
    rows = []
    with open(path, encoding="utf-8") as file:
        for line in file:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append({key: _NON_FINITE.get(value, value) for key, value in row.items()})
    return rows


@contextmanager
def _storage_errors(action: str, path: Path) -> Iterator[None]:
    """Turns an OSError into a one-line StorageError naming what failed and where."""
    try:
        yield
    except OSError as error:
        raise StorageError(f"could not {action} {path}: {error.strerror or error}") from None


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


class _AppendOnly:
    """An unbuffered file that is only appended to.

    Every record reaches the operating system at once, so a killed run loses nothing, and a write
    that failed (full disk) leaves no buffered bytes behind for ``close()`` to fail on again.
    """

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        with _storage_errors("open", path):
            self._file = open(path, mode, buffering=0)  # noqa: SIM115 (closed by close())

    def append(self, data: bytes) -> None:
        with _storage_errors("write", self.path):
            view = memoryview(data)
            while view:
                view = view[self._file.write(view) :]

    def size(self) -> int:
        """Bytes in the file (everything appended has reached the operating system)."""
        return os.fstat(self._file.fileno()).st_size

    def close(self) -> None:
        self._file.close()


_File = TypeVar("_File", bound=_AppendOnly)


def _closed_by(stack: ExitStack, file: _File) -> _File:
    stack.callback(file.close)
    return file


class _JsonLines(_AppendOnly):
    """A JSON-lines file; a resumed run appends to it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "ab")
        # A run killed mid-line left a partial last line; end it so that the next record parses.
        self._ends_mid_line = path.stat().st_size > 0 and not _ends_with_newline(path)

    def write(self, record: Mapping[str, Any]) -> None:
        values = {key: _json_value(value) for key, value in record.items()}
        line = json.dumps(values, allow_nan=False) + "\n"
        if self._ends_mid_line:
            line = "\n" + line
        self._ends_mid_line = True  # until the append is known to be complete
        self.append(line.encode("utf-8"))
        self._ends_mid_line = False


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


class _EventFile(_AppendOnly):
    """A TensorBoard event file: TFRecords (length, CRC, data, CRC) of ``Event`` protos."""

    def __init__(self, logdir: Path) -> None:
        # "tfevents" in the name is what TensorBoard looks for; the rest keeps names unique.
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
        super().__init__(logdir / f"{name}.{os.getpid()}.{secrets.token_hex(3)}", "xb")
        # TensorBoard's own record framing, fed through append() so a failed write raises here.
        self._records = RecordWriter(SimpleNamespace(write=self.append))
        try:
            self._append_event(Event(wall_time=time.time(), file_version="brain.Event:2"))
        except StorageError:
            self.close()
            raise

    def write(self, summary: Summary, step: int) -> None:
        self._append_event(Event(wall_time=time.time(), step=step, summary=summary))

    def purge(self, step: int) -> None:
        """A session start at ``step``: TensorBoard discards the events of this run from ``step`` on
        that it read before this record (its rule for restarted jobs)."""
        status = SessionLog(status=SessionLog.START)
        self._append_event(Event(wall_time=time.time(), step=step, session_log=status))

    def _append_event(self, event: Event) -> None:
        self._records.write(event.SerializeToString())


def _scalar_summary(values: Mapping[str, float]) -> Summary:
    return Summary(value=[Summary.Value(tag=tag, simple_value=v) for tag, v in values.items()])


def _image_summary(tag: str, shape: tuple[int, ...], encoded: bytes) -> Summary:
    """An image record; TensorBoard's image dashboard animates it when ``encoded`` is a GIF."""
    height, width, channels = shape
    image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=encoded)
    return Summary(value=[Summary.Value(tag=tag, image=image)])


def _to_uint8(array: Any, ndim: int, what: str) -> np.ndarray:
    """Checks an ``(..., H, W, C)`` image array and converts float ``[0, 1]`` to uint8."""
    array = np.asarray(array)
    if array.ndim != ndim or array.shape[-1] not in (1, 3) or 0 in array.shape:
        layout = "(H, W, C)" if ndim == 3 else "(T, H, W, C)"
        raise ValueError(f"{what} must be {layout} with C in {{1, 3}}, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{what} must be uint8 or float in [0, 1], got {array.dtype}")
    return (np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _encode_png(image: np.ndarray) -> bytes:
    encoded: bytes = iio.imwrite("<bytes>", image[..., 0] if image.shape[-1] == 1 else image,
                                 extension=".png")  # fmt: skip
    return encoded


def _encode_gif(frames: np.ndarray, fps: int) -> bytes:
    """An animated GIF that loops forever; GIF timing has a resolution of 10 ms."""
    pixels = frames[..., 0] if frames.shape[-1] == 1 else frames
    encoded: bytes = iio.imwrite("<bytes>", pixels, extension=".gif", duration=round(1000 / fps), loop=0)
    return encoded


def _free_path(directory: Path, stem: str, suffix: str) -> Path:
    """``directory/stem+suffix``, or with ``-1``, ``-2``... appended if that file exists."""
    path, count = directory / f"{stem}{suffix}", 0
    while path.exists() or path.with_suffix(".gif").exists():
        count += 1
        path = directory / f"{stem}-{count}{suffix}"
    return path


_warned_no_ffmpeg = False


def _write_video_file(path: Path, frames: np.ndarray, fps: int, gif: bytes) -> Path:
    """Writes an H.264 MP4 at ``path``, or the GIF next to it if ffmpeg fails or is not installed."""
    global _warned_no_ffmpeg
    try:
        _write_mp4(path, frames, fps)
        return path
    except ImportError:
        # GPU machines with a preinstalled torch often lack imageio-ffmpeg (a 68 MB wheel): train on,
        # with GIFs, and say so once.
        if not _warned_no_ffmpeg:
            warnings.warn(
                "imageio-ffmpeg is not installed: videos are written as GIFs (pip install imageio-ffmpeg "
                "for MP4)",
                stacklevel=3,
            )
            _warned_no_ffmpeg = True
    except (OSError, RuntimeError) as error:
        path.unlink(missing_ok=True)
        warnings.warn(f"ffmpeg could not write {path} ({error}); writing a GIF", stacklevel=3)
    fallback = path.with_suffix(".gif")
    with _storage_errors("write", fallback):
        fallback.write_bytes(gif)
    return fallback


def _write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    import imageio_ffmpeg  # optional: ImportError makes the caller write a GIF

    # yuv420p stores colour at half resolution, so H.264 needs even sizes: pad by one edge pixel
    # rather than let imageio-ffmpeg rescale to multiples of 16 (blurry, and it warns).
    _, height, width, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (frames.shape[2], frames.shape[1]),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        quality=8,
        macro_block_size=2,
        ffmpeg_log_level="error",
    )
    writer.send(None)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()


class _Speed:
    """Steps per second, smoothed: an average over the last minute (it follows slowdowns) and an
    exponential average of those over a few minutes (the ETA does not jump with every burst)."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()
        self._smooth: float | None = None
        self._last = time.monotonic()

    def update(self, step: int) -> float | None:
        now = time.monotonic()
        self._samples.append((now, step))
        while len(self._samples) > 2 and now - self._samples[1][0] >= _SPEED_WINDOW_S:
            self._samples.popleft()
        start, first = self._samples[0]
        if now <= start or step <= first:
            return self._smooth
        recent = (step - first) / (now - start)
        weight = 1.0 - math.exp(-(now - self._last) / _SMOOTHING_S)
        self._smooth = recent if self._smooth is None else self._smooth + weight * (recent - self._smooth)
        self._last = now
        return self._smooth


class _Fields(TypedDict):
    steps: str
    speed: str
    eta: str


def _status(step: int, total: int | None, speed: float | None) -> _Fields:
    """The progress fields shown by both displays."""
    steps = f"{step:,}/{total:,}" if total else f"{step:,}"
    eta = "-"
    if total and speed:
        seconds = max(total - step, 0) / speed
        eta = f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    rate = f"{rate_text(speed)} steps/s" if speed else "- steps/s"
    return _Fields(steps=steps, speed=rate, eta=eta)


def rate_text(value: float) -> str:
    """A rate with two significant digits (0.53, 1.2, 12), whole numbers from 100 on (340, 1,200)."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.2g}"


def _make_progress(description: str, total: int | None) -> _LiveBar | _PlainLines:
    console = Console()
    if (console.is_terminal and not console.is_dumb_terminal) or console.is_jupyter:
        try:
            return _LiveBar(console, description, total)
        except LiveError:  # another live display (a second logger) is already on screen
            pass
    return _PlainLines(description, total)


class _LiveBar:
    """A rich progress bar, redrawn in place on a terminal."""

    def __init__(self, console: Console, description: str, total: int | None) -> None:
        self._total = total
        self._speed = _Speed()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[steps]}"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("{task.fields[score]}"),
            console=console,
            refresh_per_second=4,
        )
        self._task = self._progress.add_task(description, total=total, score="", **_status(0, total, None))
        self._progress.start()

    def advance(self, step: int) -> None:
        fields = _status(step, self._total, self._speed.update(step))
        self._progress.update(self._task, completed=step, **fields)

    def show_score(self, score: float) -> None:
        self._progress.update(self._task, score=f"last score {score:.4g}")

    def note(self, text: str) -> None:
        self._progress.console.print(text, soft_wrap=True)

    def close(self) -> None:
        self._progress.stop()


class _PlainLines:
    """Progress as plain lines on stdout, for logs: the first write, then at most one line every
    :data:`PLAIN_INTERVAL_S` seconds, and the last one when closed."""

    def __init__(self, description: str, total: int | None) -> None:
        self._description = description
        self._total = total
        self._speed = _Speed()
        self._score = ""
        self._last_print = -math.inf
        self._pending: str | None = None
        self._pending_step = -1
        self._printed_step = -1

    def advance(self, step: int) -> None:
        fields = _status(step, self._total, self._speed.update(step))
        parts = [f"{self._description}: step {fields['steps']}", fields["speed"]]
        if self._total:
            parts.append(f"ETA {fields['eta']}")
        if self._score:
            parts.append(self._score)
        self._pending, self._pending_step = " | ".join(parts), step
        if time.monotonic() - self._last_print >= PLAIN_INTERVAL_S:
            self._print()

    def show_score(self, score: float) -> None:
        self._score = f"last score {score:.4g}"

    def note(self, text: str) -> None:
        print(text, file=sys.stdout, flush=True)

    def close(self) -> None:
        self._print()

    def _print(self) -> None:
        # One line per step at most: the final metrics and the final evaluation share their step.
        if self._pending is not None and self._pending_step != self._printed_step:
            print(self._pending, file=sys.stdout, flush=True)
            self._printed_step = self._pending_step
            self._last_print = time.monotonic()
        self._pending = None


class NullLogger:
    """The logger of a rank other than 0 in a data-parallel run: it writes nothing (rank 0 logs)."""

    step = 0

    def marks(self) -> dict[str, int]:
        return {}

    def scalar(self, name: str, value: float) -> None: ...

    def add(self, metrics: Mapping[str, float], prefix: str = "") -> None: ...

    def image(self, name: str, image: np.ndarray) -> None: ...

    def video(self, name: str, frames: np.ndarray, *, step: int | None = None) -> None: ...

    def score(self, step: int, score: float, length: int, **extra: float) -> None: ...

    def progress(self, step: int) -> None: ...

    def note(self, text: str) -> None: ...

    def write(self, step: int) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> NullLogger:
        return self

    def __exit__(self, *exc_info: object) -> None: ...
