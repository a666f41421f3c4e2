"""Time the Blender renders: scene build and per-image render, with and without the shadow reference.

Usage: ``python -m rdiff.data.blender.bench {chairs,planes,clevr1-blender,meshes} [--scenes 4] [--views 8]
[--size 64] [--threads 1] [--folder DIR]``; prints one JSON line (seconds).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rdiff.data.blender.cameras import sample_views
from rdiff.data.blender.config import CameraRanges, RenderSettings
from rdiff.data.blender.render import render_views
from rdiff.data.splits import scene_rng


def _source(name: str, folder: str | None):
    if name == "chairs":
        from rdiff.data.blender.chairs import ChairSource

        return ChairSource(), CameraRanges()
    if name == "planes":
        from rdiff.data.blender.planes import PlaneSource

        return PlaneSource(), CameraRanges()
    if name == "clevr1-blender":
        from rdiff.data.blender.clevr import CLEVR1_CAMERAS, ClevrSource

        return ClevrSource(), CLEVR1_CAMERAS
    from rdiff.data.blender.meshes import MeshFolderSource

    if folder is None:
        raise ValueError("meshes: give --folder")
    return MeshFolderSource(folder=folder), CameraRanges()


def bench(name: str, scenes: int = 4, views: int = 8, settings: RenderSettings | None = None,
          folder: str | None = None) -> dict:
    """Mean times over the first ``scenes`` train scenes (seed 0)."""
    settings = settings or RenderSettings()
    source, cameras = _source(name, folder)
    t = time.perf_counter()
    source.prepare()
    prepare = time.perf_counter() - t
    jobs = [j for j in source.jobs(0, 10 * scenes + 10, 0.1) if j.split == "train"][:scenes]
    build, full, plain = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs:
            rng = scene_rng(0, job.split, job.index)
            t = time.perf_counter()
            built = source.build(job, rng, settings, Path(tmp) / job.name)
            build.append(time.perf_counter() - t)
            cams = sample_views(rng, views, cameras)
            for shadows, out in ((True, full), (False, plain)):
                t = time.perf_counter()
                render_views(built.handles, cams, built.objects, settings, job.name, shadows=shadows)
                out.append((time.perf_counter() - t) / views)
    return {"source": name, "size": settings.size, "samples": settings.samples, "denoise": settings.denoise,
            "threads": settings.threads, "scenes": len(jobs), "views": views, "prepare_s": round(prepare, 3),
            "build_s_per_scene": round(float(np.mean(build)), 3),
            "per_image_s_with_shadow_labels": round(float(np.mean(full)), 3),
            "per_image_s_without": round(float(np.mean(plain)), 3)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rdiff.data.blender.bench", description=__doc__.splitlines()[0])
    p.add_argument("source", choices=("chairs", "planes", "clevr1-blender", "meshes"))
    p.add_argument("--scenes", type=int, default=4)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-denoise", action="store_true")
    p.add_argument("--folder", default=None, help="mesh folder (meshes only)")
    a = p.parse_args(argv)
    settings = RenderSettings(size=a.size, samples=a.samples, threads=a.threads, denoise=not a.no_denoise)
    print(json.dumps(bench(a.source, a.scenes, a.views, settings, a.folder)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
