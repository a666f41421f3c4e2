"""Rendering / denoising / training speed of rdiff on CPU, against a plain reference renderer.

Run from the repository root:

    python benchmarks/bench_render.py            # 1 and 2 threads, writes benchmarks/results/bench_render.json
    python benchmarks/bench_render.py --threads 1 --repeats 3

Every timing is the median of several runs. The optimised and the plain renderer are timed alternately in
the same loop, so both see the same background load (this matters on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from plain_renderer import plain_render, plain_render_model, world_to_triplane  # noqa: E402

from rdiff import RenderDiffusion, RenderDiffusionConfig  # noqa: E402
from rdiff.cameras import Cameras, orbit_cameras, turntable  # noqa: E402
from rdiff.data.clevr1 import Clevr1Scene, render_view, sample_camera, sample_scene  # noqa: E402
from rdiff.scene import Scene  # noqa: E402
from rdiff.training.config_file import load_train_config  # noqa: E402
from rdiff.training.loop import diffusion_loss, random_training_timesteps  # noqa: E402

FOV = 0.7854


def _median_ms(xs: list[float]) -> float:
    return round(1000 * statistics.median(xs), 2)


def alternate(fns: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each callable ``repeats`` times, interleaved; returns seconds per call."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t)
    return out


def median_ms(fn, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    return _median_ms(alternate({"fn": fn}, repeats)["fn"])


def write_report(report: dict, path: str | Path) -> None:
    """Write a benchmark report as JSON (creating the folder) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


def release_config(**overrides) -> RenderDiffusionConfig:
    cfg = load_train_config(ROOT / "configs" / "clevr1.toml").model.to_dict()
    cfg.update(overrides)
    return RenderDiffusionConfig(**cfg)


def cached_triplane(model: RenderDiffusion, size: int) -> tuple[torch.Tensor, torch.Tensor, Cameras, dict]:
    """Encode a real CLEVR1 image with the (random) encoder; scale features so opacity is mixed."""
    cam = orbit_cameras(30.0, 35.0, 3.0, FOV)
    scene = Clevr1Scene.make("cube", "red", "rubber", "large", 0.4)
    image = render_view(scene, cam.c2w[0], FOV, size, 0, supersample=2, shadow_samples=4)
    x = torch.from_numpy(image).permute(2, 0, 1)[None] * 2 - 1
    with torch.inference_mode():
        planes = model.encode(x, torch.zeros(1, dtype=torch.long), cam)[0]
        rotation = model.triplane_rotations(cam)[0]
        best = None
        for scale in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0):
            scaled = (planes * scale)[None]
            opacity = model.render_world(scaled, rotation[None], cam, size, size,
                                         field=model.inference_field(scaled)).opacity
            frac = float((opacity > 0.5).float().mean())
            if best is None or abs(frac - 0.5) < abs(best[1] - 0.5):
                best = (scale, frac, float(opacity.mean()), float((opacity > 0.9).float().mean()))
    scale, frac, mean, dense = best
    stats = {"feature_scale": scale, "opacity_mean": round(mean, 3), "frac_opacity_gt_0.5": round(frac, 3),
             "frac_opacity_gt_0.9": round(dense, 3), "source": "random-weight encoder output of a CLEVR1 image"}
    return (planes * scale).contiguous(), rotation, cam, stats


def to8(x: torch.Tensor) -> np.ndarray:
    return (x.detach().clamp(0, 1) * 255).round().to(torch.int32).numpy()


def bench_frame(model: RenderDiffusion, planes, rotation, cam, size: int, repeats: int) -> dict:
    scene = Scene(model, planes, cam, rotation, acceleration="exact")

    def scene_render():
        return scene.render(cam, size)  # the Scene keeps its prepared lookup table between renders

    def model_render():
        with torch.inference_mode():  # prepares the lookup table on every call
            return model.render_world(planes[None], rotation[None], cam, size, size,
                                      field=model.inference_field(planes[None]))

    def plain():
        return plain_render_model(model, planes[None], rotation, cam.c2w, cam.fov_x, size)

    times = alternate({"scene": scene_render, "model": model_render, "plain": plain}, repeats)
    view = scene_render()[0]
    rgb_p, depth_p, opac_p = plain()
    with torch.inference_mode():
        fast = model_render()
    p8 = to8(rgb_p[0].permute(1, 2, 0))
    return {
        "size": size,
        "samples": f"{model.config.coarse_samples}+{model.config.fine_samples}",
        "triplane": f"{model.config.triplane_size}x{model.config.triplane_size}x{model.config.triplane_channels}",
        "ms_scene_render": _median_ms(times["scene"]),
        "ms_model_render": _median_ms(times["model"]),
        "ms_plain": _median_ms(times["plain"]),
        "ms_scene_render_min": round(1000 * min(times["scene"]), 2),
        "ms_plain_min": round(1000 * min(times["plain"]), 2),
        "speedup_scene_vs_plain": round(statistics.median(times["plain"]) / statistics.median(times["scene"]), 2),
        "speedup_model_vs_plain": round(statistics.median(times["plain"]) / statistics.median(times["model"]), 2),
        "max_abs_diff_8bit": int(np.abs(view.rgb.astype(np.int32) - p8).max()),
        "max_abs_diff_8bit_model_render": int(np.abs(to8(fast.rgb[0].permute(1, 2, 0)) - p8).max()),
        "max_abs_diff_rgb_float": float((fast.rgb - rgb_p.detach()).abs().max()),
        "max_abs_diff_opacity": float((fast.opacity - opac_p.detach()).abs().max()),
        "max_abs_diff_depth": float((fast.depth - depth_p.detach()).abs().max()),
        "repeats": repeats,
    }


def bench_orbit(model: RenderDiffusion, planes, rotation, cam, size: int, repeats: int) -> dict:
    scene = Scene(model, planes, cam, rotation, acceleration="exact")
    cams = turntable(36, 35.0, 3.0, FOV, 30.0)

    def plain():
        for i in range(0, 36, 12):
            c = cams[i : i + 12]
            plain_render(model.field.decoder, planes[None].expand(len(c), -1, -1, -1, -1),
                         world_to_triplane(c.c2w, rotation), c.fov_x, size, size, model.config.coarse_samples,
                         model.config.fine_samples, model.config.scene_bound,
                         model.renderer.background)

    times = alternate({"scene": lambda: scene.orbit(36, size=size), "plain": plain}, repeats, warmup=0)
    return {"frames": 36, "size": size, "s_scene_orbit": round(statistics.median(times["scene"]), 3),
            "s_plain": round(statistics.median(times["plain"]), 3),
            "speedup": round(statistics.median(times["plain"]) / statistics.median(times["scene"]), 2),
            "repeats": repeats}


def bench_denoise(model: RenderDiffusion, planes_cam: Cameras, repeats: int) -> dict:
    m = model.config.image_size
    x = torch.randn(1, 3, m, m, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])

    def step():
        with torch.inference_mode():
            return model(x, t, planes_cam, inference=True)

    def encoder_only():
        with torch.inference_mode():
            return model.encode(x, t, planes_cam)

    times = alternate({"step": step, "encoder": encoder_only}, repeats * 2)
    return {"ms_denoise_step": _median_ms(times["step"]), "ms_encoder_only": _median_ms(times["encoder"]),
            "batch": 1, "size": m}


def bench_training(cfg: RenderDiffusionConfig, train, steps: int) -> dict:
    batch, rays, lr = train.batch_size, train.rays_per_image, train.lr
    torch.manual_seed(0)
    model = RenderDiffusion(cfg)
    rng = np.random.default_rng(0)
    images, c2ws, fovs = [], [], []
    for i in range(batch):
        c2w, fov = sample_camera(rng)
        images.append(render_view(sample_scene(rng), c2w, fov, cfg.image_size, i, supersample=1, shadow_samples=2))
        c2ws.append(c2w)
        fovs.append(fov)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2) * 2 - 1
    cams = Cameras(torch.from_numpy(np.stack(c2ws)), torch.tensor(fovs, dtype=torch.float32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()

    def step():  # as in rdiff.training.loop.train
        t = random_training_timesteps(batch, cfg.timesteps, train.low_t_fraction, train.low_t_max)
        loss = diffusion_loss(model, x, cams, rays, t)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    times = alternate({"step": step}, steps)
    sec = statistics.median(times["step"])
    return {"batch_size": batch, "rays_per_image": rays, "s_per_step": round(sec, 3),
            "images_per_s": round(batch / sec, 2), "steps_timed": steps}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    ap.add_argument("--train-steps", type=int, default=4)
    ap.add_argument("--note", default="", help="free text stored with the results (e.g. what else was running)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_render.json"))
    args = ap.parse_args(argv)

    train_cfg = load_train_config(ROOT / "configs" / "clevr1.toml")
    cfg32 = release_config()
    cfg64 = release_config(image_size=64, triplane_size=256, coarse_samples=48, fine_samples=48)
    torch.set_num_threads(max(args.threads))
    torch.manual_seed(0)
    model32 = RenderDiffusion(cfg32).eval()
    torch.manual_seed(0)
    model64 = RenderDiffusion(cfg64).eval()
    planes32, rotation32, cam32, stats32 = cached_triplane(model32, 32)
    planes64, rotation64, cam64, stats64 = cached_triplane(model64, 64)

    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
                    "note": args.note},
        "scenes": {"32": stats32, "64": stats64},
        "runs": {},
    }
    rows = []
    for th in args.threads:
        torch.set_num_threads(th)
        r: dict = {}
        r["frame32"] = bench_frame(model32, planes32, rotation32, cam32, 32, args.repeats)
        r["frame64"] = bench_frame(model64, planes64, rotation64, cam64, 64, args.repeats)
        r["orbit36_32"] = bench_orbit(model32, planes32, rotation32, cam32, 32, max(1, args.repeats // 2))
        r["denoise_step_32"] = bench_denoise(model32, cam32, args.repeats)
        r["training_32"] = bench_training(cfg32, train_cfg, args.train_steps)
        r["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
        report["runs"][f"threads={th}"] = r
        f32, f64, orb = r["frame32"], r["frame64"], r["orbit36_32"]
        rows += [
            (th, "frame 32x32 (24+24, 32^2 triplane)", f32["ms_scene_render"], f32["ms_plain"],
             f32["speedup_scene_vs_plain"], f32["max_abs_diff_8bit"]),
            (th, "frame 64x64 (48+48, 256^2 triplane)", f64["ms_scene_render"], f64["ms_plain"],
             f64["speedup_scene_vs_plain"], f64["max_abs_diff_8bit"]),
            (th, "  same, model.render (table per call)", f64["ms_model_render"], f64["ms_plain"],
             f64["speedup_model_vs_plain"], f64["max_abs_diff_8bit_model_render"]),
            (th, "orbit 36 frames 32x32 [ms total]", 1000 * orb["s_scene_orbit"], 1000 * orb["s_plain"],
             orb["speedup"], None),
            (th, "denoising step 32x32 (release model)", r["denoise_step_32"]["ms_denoise_step"], None, None, None),
            (th, f"training step, batch {train_cfg.batch_size} [ms]", 1000 * r["training_32"]["s_per_step"], None,
             None, None),
        ]
        print(f"threads={th}: training {r['training_32']['images_per_s']} images/s", flush=True)

    f64_1 = report["runs"].get("threads=1", next(iter(report["runs"].values())))["frame64"]
    report["targets"] = {
        "speedup_64_ge_3x": f64_1["speedup_scene_vs_plain"] >= 3.0,
        "max_diff_64_le_1_of_255": f64_1["max_abs_diff_8bit"] <= 1,
        "frame64_lt_60ms_any_threads": any(r["frame64"]["ms_scene_render"] < 60 for r in report["runs"].values()),
    }
    print()
    print(f"{'thr':>3}  {'benchmark':<40} {'rdiff ms':>10} {'plain ms':>10} {'speed-up':>9} {'max|d| 8bit':>11}")
    for th, name, a, b, s, d in rows:
        fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
        print(f"{th:>3}  {name:<40} {fmt(a, '10.1f'):>10} {fmt(b, '10.1f'):>10} {fmt(s, '8.2f'):>9} {fmt(d, 'd'):>11}")
    print("\ntargets:", json.dumps(report["targets"]))
    print("scenes:", json.dumps(report["scenes"]))
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
