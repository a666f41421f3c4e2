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


class Scores:
    """Accumulates :func:`compare` over many views; :meth:`summary` gives the report's keys."""

    def __init__(self, levels: tuple[int, ...]) -> None:
        self.levels = levels
        self.psnrs: list[float] = []
        self.within: dict[int, list[float]] = {k: [] for k in levels}

    def add(self, drawn: np.ndarray, exact: np.ndarray) -> None:
        psnr, within = compare(drawn, exact, self.levels)
        self.psnrs.append(psnr)
        for k, v in within.items():
            self.within[k].append(v)

    def summary(self) -> dict[str, float | int]:
        """views, psnr_mean, psnr_min and within_<k>_255 (mean share of pixels) for each level."""
        return {"views": len(self.psnrs), "psnr_mean": float(np.mean(self.psnrs)), "psnr_min": min(self.psnrs),
                **{f"within_{k}_255": float(np.mean(v)) for k, v in self.within.items()}}
