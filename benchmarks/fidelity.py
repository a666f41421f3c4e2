"""Shared by the fidelity benchmarks (bench_live_viewer.py, bench_splats.py): the orbit they render and how an
approximate render is scored against the exact one."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def orbit_views(azimuth: float, elevation: float, views: int) -> Iterator[tuple[float, float]]:
    """``views`` viewpoints evenly around a full orbit from the input view, alternately 15 degrees higher."""
    for i in range(views):
        yield azimuth + 360.0 * i / views, elevation + (15.0 if i % 2 else 0.0)


def compare(drawn: np.ndarray, exact: np.ndarray, levels: tuple[int, ...]) -> tuple[float, dict[int, float]]:
    """PSNR (dB) of ``drawn`` against ``exact`` (float images in [0, 1]) and, for each ``k`` in ``levels``, the
    share of pixels whose largest channel difference is at most ``k``/255."""
    err = np.abs(drawn - exact).max(-1)
    psnr = float(10 * np.log10(1.0 / max(float(np.mean((drawn - exact) ** 2)), 1e-12)))
    return psnr, {k: float((err <= k / 255 + 1e-9).mean()) for k in levels}
