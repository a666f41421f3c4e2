"""How close the app's Gaussian splats are to the volume renders: each shipped model's example scenes baked as the
app bakes them (``demo.results``: ``bake_splats`` on a ``SPLAT_RESOLUTION``^3 grid, written to and read back from
the vanilla 3DGS ``.ply`` a splat viewer opens), rasterised (``rdiff.splats.render_splats``: front-to-back alpha
compositing, as 3DGS viewers draw them) over the model's own background, against the exact volume renders over
a full orbit.

    python benchmarks/bench_splats.py                          # every shipped model with examples (~2 min)
    python benchmarks/bench_splats.py --models chairs-64 --views 24

Reports per model: PSNR over the orbit (mean and worst view), the share of pixels within 4/255 and 16/255, the
splat count and file size, and the bake time. Writes results/bench_splats.json. For the live view's fidelity
(a baked volume ray-marched in the browser) see bench_live_viewer.py.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_render import write_report  # noqa: E402
from fidelity import Scores, orbit_views  # noqa: E402

from demo.examples import load_examples  # noqa: E402
from demo.results import FALLBACK_SPLATS, SPLAT_RESOLUTION  # noqa: E402
from rdiff.cameras import orbit_cameras, to_triplane_frame  # noqa: E402
from rdiff.hub import load_model, shipped_models  # noqa: E402
from rdiff.preprocess import prepare_image  # noqa: E402
from rdiff.sampling import reconstruct  # noqa: E402
from rdiff.scene import Scene  # noqa: E402
from rdiff.splats import bake_splats, read_splat_ply, render_splats, write_splat_ply  # noqa: E402


def background(scene: Scene, camera, size: int) -> torch.Tensor:
    """The model's background behind the scene box for each pixel of ``camera``: ``(size * size, 3)``."""
    o, d = to_triplane_frame(camera, scene.triplane_rotation[None]).pixel_rays(size, size)
    with torch.inference_mode():
        return scene.model.renderer.background(o.reshape(-1, 3), d.reshape(-1, 3)).double()


def measure(name: str, views: int, size: int | None) -> dict:
    model = load_model(name).model
    size = size or model.config.image_size
    scores, counts, mb, bake_s = Scores((4, 16)), [], [], []
    for ex in load_examples(name):
        image = prepare_image(ex.path(), model.config.image_size)
        cams = orbit_cameras(ex.azimuth, ex.elevation, ex.radius, math.radians(ex.fov))
        scene = reconstruct(model, image[None], cams, t_r=0).scenes[0]
        start = time.perf_counter()
        try:
            splats = bake_splats(scene, SPLAT_RESOLUTION)
        except ValueError:  # as the app: a nearly transparent scene keeps its most opaque cells
            splats = bake_splats(scene, SPLAT_RESOLUTION, min_opacity=0.0, max_splats=FALLBACK_SPLATS)
        bake_s.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            path = write_splat_ply(splats, Path(tmp) / "scene.ply")
            mb.append(path.stat().st_size / 2**20)
            splats = read_splat_ply(path)  # what a viewer gets
        counts.append(len(splats))
        az0, el0, radius = scene.input_view
        fov = float(scene.camera.fov_x[0])
        for az, el in orbit_views(az0, el0, views):
            cam = orbit_cameras(az, el, radius, fov)
            exact = scene.render(cam, size)[0].rgb.astype(np.float64) / 255
            drawn = render_splats(splats, cam, size, background(scene, cam, size)).astype(np.float64)
            drawn = np.round(drawn * 255) / 255  # 8 bits, as the volume render
            scores.add(drawn, exact)
    return {"size": size, "examples": len(counts), **scores.summary(), "splats": statistics.median(counts),
            "ply_mb": statistics.mean(mb), "bake_s": statistics.median(bake_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=None, help="shipped model names (default: all)")
    parser.add_argument("--views", type=int, default=8, help="orbit views per example")
    parser.add_argument("--size", type=int, default=None, help="render size (default: the model's image size)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_splats.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models or [n for n in shipped_models() if load_examples(n)]
    results = {}
    for name in names:
        r = measure(name, args.views, args.size)
        results[name] = r
        print(f"{name}: {r['views']} views at {r['size']}x{r['size']}: PSNR {r['psnr_mean']:.1f} dB (worst "
              f"{r['psnr_min']:.1f}), {100 * r['within_4_255']:.1f}% of pixels within 4/255, "
              f"{100 * r['within_16_255']:.1f}% within 16/255; {r['splats']:.0f} splats, {r['ply_mb']:.1f} MB; "
              f"bake {1000 * r['bake_s']:.0f} ms", flush=True)
    write_report({"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                  "loadavg": os.getloadavg(), "threads": args.threads, "splat_resolution": SPLAT_RESOLUTION,
                  "views_note": f"views every {360 / args.views:.0f} deg, alternately 15 deg above the input view",
                  "models": results}, args.out)


if __name__ == "__main__":
    main()
