"""CarRacing-v3 with its road drawn 3-4x faster, pixel for pixel the same frames.

Gymnasium's renderer walks every grass patch and road tile in Python each frame (about 800
polygons, of which some 50 are on screen), rotating each vertex with a ``pygame.math.Vector2``; that
walk is three quarters of a step's time. Here the vertices of all polygons are transformed at once
in numpy, with the cosine and sine that pygame itself computes for the rotation (its special cases for
multiples of 90 degrees included), and only the polygons pygame would not skip are drawn, with the same
coordinates, colours and order. ``tests/test_envs.py`` checks the frames against Gymnasium's own.

Imported by ``gymnasium.make`` through the entry point in :mod:`dreamworld.envs.carracing`, so
Box2D is loaded only when the environment is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pygame
from gymnasium.envs.box2d import car_racing
from pygame import gfxdraw


def _grass() -> np.ndarray:
    """The grass patches of ``CarRacing._render_road`` in world coordinates, ``(400, 4, 2)``."""
    dim = car_racing.GRASS_DIM
    patches = [
        [
            (dim * x + dim, dim * y + 0),
            (dim * x + 0, dim * y + 0),
            (dim * x + 0, dim * y + dim),
            (dim * x + dim, dim * y + dim),
        ]
        for x in range(-20, 20, 2)
        for y in range(-20, 20, 2)
    ]
    return np.array(patches, np.float64)


class CarRacing(car_racing.CarRacing):
    """``gymnasium.envs.box2d.car_racing.CarRacing`` with a vectorised road renderer.

    With ``lazy`` set, ``step`` and ``reset`` return a blank observation and :meth:`pixels` draws
    the current one when asked: under an action repeat only the frames the agent sees are drawn (the
    same pixels, as a frame depends only on the state after the physics step).
    """

    _GRASS = _grass()
    lazy = False
    _stepping = _stale = False

    def reset(self, *args: Any, **kwargs: Any) -> Any:
        self._road: tuple[np.ndarray, list[Any]] | None = None  # built at the first frame
        return super().reset(*args, **kwargs)

    def step(self, action: Any) -> Any:
        self._stepping = True
        try:
            return super().step(action)
        finally:
            self._stepping = False

    def _render(self, mode: str, *args: Any, **kwargs: Any) -> Any:
        if mode == "state_pixels" and self.lazy and self._stepping:
            # The frame shows the score as it is here, before the step's -0.1.
            self._stale, self._shown = True, self.reward
            return np.zeros(self.observation_space.shape, np.uint8)
        return super()._render(mode, *args, **kwargs)

    def pixels(self) -> np.ndarray:
        """The observation of the current state (drawn now if ``lazy`` left it undrawn)."""
        if self._stale:
            reward, self.reward = self.reward, self._shown
            try:
                self.state, self._stale = self._render("state_pixels"), False
            finally:
                self.reward = reward
        return self.state

    def _render_road(self, zoom: float, translation: Any, angle: float) -> None:
        bounds = car_racing.PLAYFIELD
        field = [(bounds, bounds), (bounds, -bounds), (-bounds, -bounds), (-bounds, bounds)]
        self._draw_colored_polygon(self.surf, field, self.bg_color, zoom, translation, angle, clip=False)
        if getattr(self, "_road", None) is None:
            polygons = np.array([[(p[0], p[1]) for p in poly] for poly, _ in self.road_poly], np.float64)
            # The colour arrays are the tiles' own: a visited tile changes colour in place.
            self._road = polygons.reshape(-1, 4, 2), [color for _, color in self.road_poly]
        assert self._road is not None
        road, road_colors = self._road
        grass_color = self.grass_color
        # Gymnasium passes the grass colour as it is and the road colours as lists of ints.
        self._draw_visible(self._GRASS, lambda _: grass_color, zoom, translation, angle)
        self._draw_visible(road, lambda index: [int(c) for c in road_colors[index]], zoom, translation, angle)

    def _draw_visible(
        self,
        polygons: np.ndarray,
        color_of: Callable[[int], Any],
        zoom: float,
        translation: Any,
        angle: float,
    ) -> None:
        """Draws the polygons that ``_draw_colored_polygon`` would draw, exactly as it would."""
        if not len(polygons):
            return
        # Vector2((1, 0)).rotate_rad gives pygame's own (cos, sin), exact 0/1 at right angles included.
        cos, sin = pygame.math.Vector2(1.0, 0.0).rotate_rad(angle)
        x, y = polygons[..., 0], polygons[..., 1]
        screen_x = (cos * x - sin * y) * zoom + translation[0]
        screen_y = (sin * x + cos * y) * zoom + translation[1]
        margin = car_racing.MAX_SHAPE_DIM
        inside = (-margin <= screen_x) & (screen_x <= car_racing.WINDOW_W + margin)
        inside &= (-margin <= screen_y) & (screen_y <= car_racing.WINDOW_H + margin)
        visible = np.flatnonzero(inside.any(axis=1))
        points = np.stack([screen_x, screen_y], axis=-1)[visible].tolist()
        surface = self.surf
        assert surface is not None
        for index, poly in zip(visible.tolist(), points, strict=True):
            color = color_of(index)
            gfxdraw.aapolygon(surface, poly, color)
            gfxdraw.filled_polygon(surface, poly, color)
