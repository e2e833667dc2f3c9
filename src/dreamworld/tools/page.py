"""Report pages: one document written both as HTML and as Markdown, with images beside it.

Reports of World Models experiments and of Dreamer runs share this builder, so they look alike.

Example:
    >>> page = Page("Run report")  # doctest: +SKIP
    >>> page.section("Losses")  # doctest: +SKIP
    >>> page.figure(figure, "losses.png", "VAE loss per epoch")  # doctest: +SKIP
    >>> page.write(run_dir / "report")  # doctest: +SKIP
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PAGE_NAME = "index.html"
MARKDOWN_NAME = "report.md"


@dataclass
class Page:
    """A report under construction; :meth:`write` puts it in a directory with its images."""

    title: str
    _blocks: list[tuple[str, Any]] = field(default_factory=list)
    _files: dict[str, Any] = field(default_factory=dict)

    def section(self, title: str) -> None:
        """Starts a section."""
        self._blocks.append(("section", title))

    def text(self, text: str) -> None:
        """A paragraph of plain text."""
        self._blocks.append(("text", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table; cells are shown with ``str``."""
        self._blocks.append(("table", (list(header), [list(row) for row in rows])))

    def figure(self, figure: Any, name: str, caption: str) -> None:
        """A matplotlib figure, saved as ``name`` (PNG) when the page is written."""
        self._files[name] = figure
        self._blocks.append(("image", (name, caption)))

    def image(self, image: np.ndarray, name: str, caption: str) -> None:
        """An ``(H, W, 3)`` uint8 image, saved as ``name`` (PNG)."""
        self._files[name] = np.asarray(image)
        self._blocks.append(("image", (name, caption)))

    def animation(self, frames: np.ndarray, name: str, caption: str, fps: int = 20) -> None:
        """``(T, H, W, 3)`` uint8 frames, saved as an animated GIF ``name``."""
        self._files[name] = (np.asarray(frames), fps)
        self._blocks.append(("image", (name, caption)))

    def video(self, source: str | Path, name: str, caption: str) -> None:
        """A video file (MP4 or GIF), copied next to the page as ``name``."""
        self._files[name] = Path(source)
        self._blocks.append(("video", (name, caption)))

    def code(self, text: str) -> None:
        """Preformatted text, such as a configuration file."""
        self._blocks.append(("code", text))

    def write(self, directory: str | Path) -> Path:
        """Writes ``index.html``, ``report.md`` and the images into ``directory``; returns the HTML."""
        import imageio.v3 as iio
        import matplotlib.pyplot as plt

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in self._files.items():
            if isinstance(content, Path):
                shutil.copyfile(content, directory / name)
            elif isinstance(content, np.ndarray):
                iio.imwrite(directory / name, content)
            elif isinstance(content, tuple):
                frames, fps = content
                iio.imwrite(directory / name, frames, duration=1000 / fps, loop=0)
            else:
                content.savefig(directory / name, dpi=100, bbox_inches="tight")
                plt.close(content)
        (directory / MARKDOWN_NAME).write_text(self._markdown())
        path = directory / PAGE_NAME
        path.write_text(self._html())
        return path

    def _markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for kind, value in self._blocks:
            if kind == "section":
                lines += [f"## {value}", ""]
            elif kind == "text":
                lines += [value, ""]
            elif kind == "code":
                lines += ["```", value.rstrip("\n"), "```", ""]
            elif kind == "video":
                name, caption = value
                lines += [f"[{caption}]({name})", ""]
            elif kind == "table":
                header, rows = value
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
                lines.append("")
            else:
                name, caption = value
                lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
        return "\n".join(lines)

    def _html(self) -> str:
        escape = html.escape
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{escape(self.title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
            "img{max-width:100%;image-rendering:pixelated}figure{margin:1em 0}"
            # Videos are often 64 pixels high: shown 4x, with sharp pixels.
            "video,img.clip{height:256px;width:auto;max-width:100%;image-rendering:pixelated}"
            "</style></head><body>",
            f"<h1>{escape(self.title)}</h1>",
        ]
        for kind, value in self._blocks:
            if kind == "section":
                parts.append(f"<h2>{escape(value)}</h2>")
            elif kind == "text":
                parts.append(f"<p>{escape(value)}</p>")
            elif kind == "code":
                parts.append(f"<pre>{escape(value)}</pre>")
            elif kind == "video":
                name, caption = value
                tag = "img class='clip'" if name.endswith(".gif") else "video controls loop muted"
                media = f"<{tag} src='{escape(name)}'>" + ("" if tag == "img" else "</video>")
                parts.append(f"<figure>{media}<figcaption>{escape(caption)}</figcaption></figure>")
            elif kind == "table":
                header, rows = value
                parts.append("<table><tr>" + "".join(f"<th>{escape(str(h))}</th>" for h in header) + "</tr>")
                for row in rows:
                    parts.append("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>")
                parts.append("</table>")
            else:
                name, caption = value
                parts.append(
                    f"<figure><img src='{escape(name)}' alt='{escape(caption)}'>"
                    f"<figcaption>{escape(caption)}</figcaption></figure>"
                )
        parts.append("</body></html>")
        return "\n".join(parts)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (empty when the file does not exist)."""
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def curve_figure(records: list[dict[str, Any]], keys: Sequence[str], xlabel: str, title: str) -> Any:
    """A matplotlib figure with one line per key found in the records, against their ``step``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for key in keys:
        points = [(record["step"], record[key]) for record in records if key in record]
        if points:
            x, y = zip(*points, strict=True)
            axis.plot(x, y, marker="o" if len(points) < 30 else None, label=key)
    axis.set_xlabel(xlabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    if axis.lines:
        axis.legend()
    return figure
