"""Exact vs accelerated 64x64 frames of trained scenes (``Scene.render``: baked fields, skipping).

Run from the repository root:

    python benchmarks/bench_accel.py                               # the shipped models, threads 2 and 1 (minutes)
    python benchmarks/bench_accel.py --threads 2 --repeats 3 --scenes 2           # quicker
    python benchmarks/bench_accel.py --models runs/chairs64/model:assets/chairs-64  # a training run's checkpoint

Scenes are reconstructions (``rdiff.sampling.reconstruct``, ``t_r = 0``, one step) of the example images of each
model's ``assets/<model>/`` folder, from their cameras; each is rendered from its input view and three more
around it, three ways: on the exact path (``acceleration="exact"``), through the baked field
(``acceleration="baked"``, the bake and its probes timed as the first render) and always skipping
(``rdiff.acceleration`` with ``max_fraction=None``). For every frame it reports the median wall time and process
CPU time of each (timed alternately, so all see the same background load; CPU time is the steadier measure on a
busy machine) and each fast path's pixel error against the exact path. Model folders are copied to a temporary
folder first (a training run rewrites its checkpoint). Writes ``benchmarks/results/bench_accel.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rdiff.acceleration import SceneAccelerator  # noqa: E402
from rdiff.cameras import orbit_cameras  # noqa: E402
from rdiff.model import RenderDiffusion  # noqa: E402
from rdiff.preprocess import prepare_image  # noqa: E402
from rdiff.sampling import reconstruct  # noqa: E402
from rdiff.scene import Scene  # noqa: E402

SIZE = 64
TARGET_MS = 40.0  # the target for a 64x64 frame with 2 threads
SHIPPED = ("clevr1-32", "chairs-64", "planes-64")


def load_model(path: Path) -> RenderDiffusion:
    """Load a checkpoint folder from a private copy (the original may be rewritten while we read it)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "model"
        shutil.copytree(path, copy)
        return RenderDiffusion.from_pretrained(copy).eval()


def scenes_of(model: RenderDiffusion, examples: Path, limit: int) -> list[tuple[str, Scene]]:
    listing = json.loads((examples / "examples.json").read_text())["examples"][:limit]
    out = []
    for ex in listing:
        image = prepare_image(examples / ex["file"], model.config.image_size)
        cam = orbit_cameras(ex["azimuth"], ex["elevation"], ex["radius"], math.radians(ex["fov"]))
        scene = reconstruct(model, image[None], cam, t_r=0, steps=1).scenes[0]
        out.append((Path(ex["file"]).stem, scene))
    return out


def views_of(scene: Scene) -> list[tuple[float, float]]:
    az, el, _ = scene.input_view
    return [(az, el), (az + 90.0, el), (az + 180.0, max(el - 15.0, 5.0)), (az + 270.0, min(el + 20.0, 70.0))]


def time_pair(fns: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and process-CPU milliseconds of each callable, timed alternately after one warm-up."""
    for fn in fns.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c, w = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    return {k: {"ms": round(1000 * statistics.median(wall[k]), 2), "ms_min": round(1000 * min(wall[k]), 2),
                "cpu_ms": round(1000 * statistics.median(cpu[k]), 2)} for k in fns}


def errors(fast, exact) -> dict:
    d8 = np.abs(fast.rgb.astype(np.int32) - exact.rgb.astype(np.int32)).max(-1)
    seen = exact.opacity > 0.5
    return {
        "max_diff_8bit": int(d8.max()),
        "frac_pixels_within_1_of_255": float((d8 <= 1).mean()),
        "max_abs_diff_opacity": float(np.abs(fast.opacity - exact.opacity).max()),
        "max_abs_diff_depth_opacity_gt_0.5": float(np.abs(fast.depth - exact.depth)[seen].max()) if seen.any()
        else 0.0,
    }


def float_error(scene: Scene, cam, render) -> float:
    """Largest float rgb difference between a scene's fast path (``render(o, d)``, or its baked field where
    ``None``) and the exact path, before 8-bit rounding."""
    from rdiff.cameras import to_triplane_frame

    with torch.inference_mode():
        o, d = to_triplane_frame(cam, scene.triplane_rotation[None]).pixel_rays(SIZE, SIZE)
        o, d = o.reshape(1, -1, 3), d.reshape(1, -1, 3)
        exact = scene.model.renderer.render_inference(scene._field, o, d)
        if render is None:
            field = scene.baked_field()
            fast = exact if field is None else scene.model.renderer.render_inference(field, o, d)
        else:
            fast = render(o, d)
    return float((fast.rgb - exact.rgb).abs().max())


def bench_scene(name: str, scene: Scene, threads: int, repeats: int) -> dict:
    """Three renderings of each view, timed alternately: the exact path, always skipping (``rdiff.acceleration``)
    and through the baked field (``rdiff.baked_field``, as ``Scene(acceleration="baked")`` renders)."""
    model = scene.model
    exact = Scene(model, scene.planes, scene.camera, scene.triplane_rotation, acceleration="exact")
    baked = Scene(model, scene.planes, scene.camera, scene.triplane_rotation, acceleration="baked")
    forced = Scene(model, scene.planes, scene.camera, scene.triplane_rotation, acceleration="exact")
    t = time.perf_counter()
    exact.render(scene.camera, SIZE)  # prepares the lookup table
    first_exact = time.perf_counter() - t
    t = time.perf_counter()
    baked.render(scene.camera, SIZE)  # and the bake and its probes
    first_baked = time.perf_counter() - t
    field = baked.baked_field()
    forced.render(scene.camera, 8)
    t = time.perf_counter()
    with torch.inference_mode():  # as Scene.render, which made the field's buffers
        probed = SceneAccelerator(model.renderer, forced._field)  # the skip path's own decision, for the record
        forced._accelerator = SceneAccelerator(model.renderer, forced._field, grid=probed.grid, max_fraction=None)
    grid_s = time.perf_counter() - t
    forced.acceleration = "skip"
    fov, r = float(scene.camera.fov_x[0]), scene.input_view[2]
    rows = []
    for az, el in views_of(scene):
        cam = orbit_cameras(az, el, r, fov)
        fns = {"exact": lambda c=cam: exact.render(c, SIZE), "baked": lambda c=cam: baked.render(c, SIZE),
               "accel": lambda c=cam: forced.render(c, SIZE)}
        times = time_pair(fns, repeats)
        stats = forced._accelerator.last_stats
        if field is not None:
            field.points_seen = field.points_exact = 0
        out_baked = baked.render(cam, SIZE)[0]
        row = {"azimuth": round(az, 2), "elevation": round(el, 2), **times,
               "speedup_accel": round(times["exact"]["ms"] / times["accel"]["ms"], 3),
               "speedup_baked": round(times["exact"]["ms"] / times["baked"]["ms"], 3),
               "speedup_baked_cpu": round(times["exact"]["cpu_ms"] / times["baked"]["cpu_ms"], 3),
               "field_evaluations_exact": stats.points_exact, "field_evaluations_accel": stats.points_evaluated,
               "evaluated_fraction": round(stats.fraction, 4), "field_calls": stats.field_calls,
               "baked_points_exact_fraction": round(field.points_exact / max(field.points_seen, 1), 4)
               if field is not None else 1.0,
               "accel": {**times["accel"], **errors(forced.render(cam, SIZE)[0], exact.render(cam, SIZE)[0]),
                         "max_abs_diff_rgb_float": float_error(forced, cam, forced._accelerator.render)},
               "baked": {**times["baked"], **errors(out_baked, exact.render(cam, SIZE)[0]),
                         "max_abs_diff_rgb_float": float_error(baked, cam, None)}}
        rows.append(row)
        ex, bk, ac = row["exact"], row["baked"], row["accel"]
        print(f"  threads={threads} {name} az={az:6.1f} el={el:5.1f}: exact {ex['ms']:6.1f} ms "
              f"(cpu {ex['cpu_ms']:5.1f}), baked {bk['ms']:6.1f} (cpu {bk['cpu_ms']:5.1f}, 8-bit diff "
              f"{bk['max_diff_8bit']}), skipping {ac['ms']:6.1f} (cpu {ac['cpu_ms']:5.1f}, evaluations "
              f"{row['evaluated_fraction']:.3f}, 8-bit diff {ac['max_diff_8bit']})", flush=True)
    return {"scene": name, "first_render_s_exact": round(first_exact, 3),
            "first_render_s_baked": round(first_baked, 3), "skip_grid_build_s": round(grid_s, 3),
            "baked": field is not None, "baked_knots": field.knots if field is not None else None,
            "baked_tolerance": field.tolerance if field is not None else None,
            "baked_exact_cells": round(field.exact_fraction, 4) if field is not None else None,
            "skip_enabled_by_its_probe": probed.enabled, "skip_probe_fraction": round(probed.probe_fraction, 4),
            "views": rows}


def summary(runs: list[dict]) -> dict:
    views = [v for r in runs for v in r["views"]]
    out = {
        "frames": len(views),
        **{f"median_ms_{k}": round(statistics.median(v[k]["ms"] for v in views), 2)
           for k in ("exact", "baked", "accel")},
        **{f"median_cpu_ms_{k}": round(statistics.median(v[k]["cpu_ms"] for v in views), 2)
           for k in ("exact", "baked", "accel")},
        "scenes_baked": sum(r["baked"] for r in runs),
        "median_first_render_s_baked": round(statistics.median(r["first_render_s_baked"] for r in runs), 3),
        "baked_points_exact_fraction": round(statistics.mean(v["baked_points_exact_fraction"] for v in views), 4),
        "scenes_skipping_by_its_probe": sum(r["skip_enabled_by_its_probe"] for r in runs),
        "evaluated_fraction": round(sum(v["field_evaluations_accel"] for v in views)
                                    / sum(v["field_evaluations_exact"] for v in views), 4),
    }
    for k in ("baked", "accel"):
        out[k] = {
            "max_diff_8bit": max(v[k]["max_diff_8bit"] for v in views),
            "min_frac_pixels_within_1_of_255": min(v[k]["frac_pixels_within_1_of_255"] for v in views),
            "max_abs_diff_rgb_float": max(v[k]["max_abs_diff_rgb_float"] for v in views),
            "max_abs_diff_opacity": max(v[k]["max_abs_diff_opacity"] for v in views),
            "max_abs_diff_depth_opacity_gt_0.5": max(v[k]["max_abs_diff_depth_opacity_gt_0.5"] for v in views),
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--repeats", type=int, default=7, help="timed frames per path and view (median reported)")
    ap.add_argument("--scenes", type=int, default=4, help="example images per model")
    ap.add_argument("--models", nargs="+", default=[str(ROOT / "weights" / m) for m in SHIPPED],
                    help="model folders, each optionally followed by :EXAMPLES (default: assets/<folder name>)")
    ap.add_argument("--note", default="", help="free text stored with the results (e.g. what else was running)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_accel.json"))
    args = ap.parse_args(argv)

    models = []
    for spec in args.models:
        folder, _, examples = spec.partition(":")
        examples = examples or str(ROOT / "assets" / Path(folder).name)
        models.append((Path(folder).name if Path(folder).parent == ROOT / "weights" else folder,
                       load_model(Path(folder)), Path(examples)))
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
                    "note": args.note},
        "size": SIZE, "target_ms_2_threads": TARGET_MS, "models": {},
    }
    for name, model, examples in models:
        torch.set_num_threads(1)
        scenes = scenes_of(model, examples, args.scenes)
        cfg = model.config
        triplane = f"{cfg.triplane_size}^2 x {cfg.triplane_channels}"
        entry = {"config": {"image_size": cfg.image_size, "triplane": triplane,
                            "samples": f"{cfg.coarse_samples}+{cfg.fine_samples}", "background": cfg.background},
                 "runs": {}}
        for th in args.threads:
            torch.set_num_threads(th)
            runs = [bench_scene(n, s, th, args.repeats) for n, s in scenes]
            entry["runs"][f"threads={th}"] = {"summary": summary(runs), "scenes": runs,
                                              "load_average_after": [round(v, 2) for v in os.getloadavg()]}
            print(f"{name} threads={th}: {json.dumps(entry['runs'][f'threads={th}']['summary'])}", flush=True)
        report["models"][name] = entry
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
