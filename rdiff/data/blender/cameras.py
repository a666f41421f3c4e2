"""Camera sampling on the upper hemisphere (the convention of :mod:`rdiff.cameras`: world +Z up, OpenGL axes)."""

from __future__ import annotations

import math

import numpy as np

from rdiff.cameras import orbit_cameras
from rdiff.data.blender.config import CameraRanges


def sample_views(rng: np.random.Generator, n: int, ranges: CameraRanges) -> list[tuple[np.ndarray, float]]:
    """``n`` cameras looking at the origin: ``[(c2w (4, 4) float32, fov_x radians), ...]``.

    Per view: radius, elevation, azimuth (uniform in [0, 360)) and fov, drawn in that order from ``rng``.
    """
    views = []
    for _ in range(int(n)):
        radius = float(rng.uniform(*ranges.radius))
        elevation = float(rng.uniform(*ranges.elevation_deg))
        azimuth = float(rng.uniform(0.0, 360.0))
        fov_x = math.radians(float(rng.uniform(*ranges.fov_deg)))
        c2w = orbit_cameras(azimuth, elevation, radius, fov_x).c2w[0].numpy().astype(np.float32)
        views.append((c2w, fov_x))
    return views


def project(c2w: np.ndarray, fov_x: float, size: int, point) -> tuple[float, float]:
    """Pixel coordinates ``(u right, v down)`` of a world point in a ``size x size`` image of this camera."""
    w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64))
    p = w2c[:3, :3] @ np.asarray(point, dtype=np.float64) + w2c[:3, 3]
    f = 0.5 * size / math.tan(0.5 * fov_x)
    return float(f * p[0] / -p[2] + 0.5 * size), float(-f * p[1] / -p[2] + 0.5 * size)
