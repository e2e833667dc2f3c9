"""Headless MuJoCo rendering that works without a display and is fast on a CPU.

MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when it is first imported, so
:func:`configure_mujoco_gl` must run before ``mujoco`` or ``dm_control`` are imported.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from typing import Any


def configure_mujoco_gl() -> str:
    """Chooses MuJoCo's OpenGL backend unless the user already did, and returns it.

    EGL renders without a display (with Mesa's llvmpipe when there is no GPU); OSMesa is the
    software fallback when EGL is missing. The value is written to ``os.environ`` so that worker
    processes inherit it.

    Returns:
        The value of ``MUJOCO_GL`` now in effect.
    """
    if "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "egl" if _loadable("libEGL.so.1") else "osmesa"
    return os.environ["MUJOCO_GL"]


def configure_sdl() -> None:
    """Gives SDL (pygame's renderer for Box2D and classic control) a runtime directory.

    Without ``XDG_RUNTIME_DIR`` SDL prints an error line on every render context it opens, although
    offscreen rendering works. A private folder under the temporary directory is used when the
    variable is unset; ``SDL_VIDEODRIVER`` is left alone (highway-env renders zeros with ``dummy``).
    """
    if "XDG_RUNTIME_DIR" not in os.environ:
        folder = os.path.join(tempfile.gettempdir(), f"dreamworld-runtime-{os.getuid()}")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = folder


def fast_rendering(model: Any, size: int) -> None:
    """Sets up a MuJoCo model for fast software rendering of ``size x size`` frames.

    Must run before the model's first render, which creates the rendering context from these
    settings. Shadows and multisampling dominate software rendering (walker at 64x64: ~40 -> ~170
    frames/s through ``physics.render``) and are invisible at agent resolutions. The offscreen
    framebuffer (640x480 by default) is shrunk to the frame size, which rendered 5-40% faster in
    our measurements (docs/benchmarks.md).

    Args:
        model: A ``mujoco.MjModel`` (or dm_control's wrapper of one).
        size: Side of the frames that will be rendered.
    """
    model.vis.quality.shadowsize = 0
    model.vis.quality.offsamples = 0
    model.vis.global_.offwidth = size
    model.vis.global_.offheight = size


def _loadable(library: str) -> bool:
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True
