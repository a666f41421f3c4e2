"""How faithful and how heavy the app's live 3D view is: each shipped model's example scenes baked as the app bakes
them (demo.live_viewer), then the baked volume's renders (rdiff.baked_volume.render_baked, the reference of the
browser's marcher) against the exact volume renders over a full orbit, at the size the live view draws.

    python benchmarks/bench_live_viewer.py                          # every shipped model with examples
    python benchmarks/bench_live_viewer.py --models chairs-64 --views 24

Reports per model: PSNR over the orbit (mean and worst view), the share of pixels within 1/255 and 4/255,
the payload sent to the browser (KB) and the bake time. Writes results/bench_live_viewer.json. The browser's own
frame time and latency are in bench_browser.py (live_frame_ms, live_slider_ms, live_drag_fps).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
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
from demo.live_viewer import LIVE_MIN_ALPHA, LIVE_RESOLUTION, live_size  # noqa: E402
from rdiff.baked_volume import bake_volume, render_baked  # noqa: E402
from rdiff.cameras import orbit_cameras  # noqa: E402
from rdiff.hub import load_model, shipped_models  # noqa: E402
from rdiff.preprocess import prepare_image  # noqa: E402
from rdiff.sampling import reconstruct  # noqa: E402


def measure(name: str, views: int, resolution: int, min_alpha: float) -> dict:
    model = load_model(name).model
    size = live_size(model.config.image_size)
    scores, kb, bake_s = Scores((1, 4)), [], []
    for ex in load_examples(name):
        image = prepare_image(ex.path(), model.config.image_size)
        cams = orbit_cameras(ex.azimuth, ex.elevation, ex.radius, math.radians(ex.fov))
        scene = reconstruct(model, image[None], cams, t_r=0).scenes[0]
        start = time.perf_counter()
        volume = bake_volume(scene, resolution, min_alpha)
        bake_s.append(time.perf_counter() - start)
        kb.append(len(json.dumps(volume.payload(size), separators=(",", ":"))) / 1024)
        az0, el0, _ = scene.input_view
        for az, el in orbit_views(az0, el0, views):
            exact = scene.view(az, el, size=size).rgb.astype(np.float64) / 255
            baked = np.round(render_baked(volume, az, el, size) * 255) / 255  # as the canvas stores it
            scores.add(baked, exact)
    return {"size": size, "examples": len(kb), **scores.summary(), "payload_kb": statistics.mean(kb),
            "payload_kb_max": max(kb), "bake_s": statistics.median(bake_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=None, help="shipped model names (default: all)")
    parser.add_argument("--views", type=int, default=12, help="orbit views per example")
    parser.add_argument("--resolution", type=int, default=LIVE_RESOLUTION)
    parser.add_argument("--min-alpha", type=float, default=LIVE_MIN_ALPHA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_live_viewer.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models or [n for n in shipped_models() if load_examples(n)]
    results = {}
    for name in names:
        r = measure(name, args.views, args.resolution, args.min_alpha)
        results[name] = r
        print(f"{name}: {r['views']} views at {r['size']}x{r['size']}: PSNR {r['psnr_mean']:.1f} dB (worst "
              f"{r['psnr_min']:.1f}), {100 * r['within_1_255']:.1f}% of pixels within 1/255, "
              f"{100 * r['within_4_255']:.1f}% within 4/255; payload {r['payload_kb']:.0f} KB "
              f"(max {r['payload_kb_max']:.0f}); bake {1000 * r['bake_s']:.0f} ms", flush=True)
    write_report({"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                  "loadavg": os.getloadavg(), "threads": args.threads, "resolution": args.resolution,
                  "min_alpha": args.min_alpha, "fov_note": f"views every {360 / args.views:.0f} deg, "
                  "alternately 15 deg above the input view", "models": results}, args.out)


if __name__ == "__main__":
    main()
