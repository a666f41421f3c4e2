"""Package a trained run as the shipped checkpoint: copy the EMA model, evaluate it, draw its orbit and sample
sheets, write its model card.

    python scripts/make_release.py --run runs/clevr1 --data data/clevr1/test --out weights/clevr1-32 \
        --training training.md

``--out`` may be a scratch folder (compare before replacing ``weights/<name>``): the card names the model by
``--name`` (default: the folder's name) and its commands use ``weights/<name>``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np
import torch
from PIL import Image
from sample_sheet import SHEET_BATCH, batch_seeds, sample_sheet  # scripts/sample_sheet.py (on sys.path)

from rdiff import RenderDiffusion
from rdiff.cameras import Cameras
from rdiff.config import ENCODER_EXTENSIONS
from rdiff.evaluation import evaluate, save_result
from rdiff.sampling import reconstruct

CARD = """---
library_name: rdiff
license: {license}
tags: [renderdiffusion, 3d-reconstruction, diffusion, triplane, {tag}]
summary: {summary}
---

# rdiff {title} (RenderDiffusion)

A RenderDiffusion model (pixel-space DDPM whose denoiser renders an inferred triplane) trained on
{description} Data (exactly; train and test scenes never share an object):

    {data_command}

Load it with `RenderDiffusion.from_pretrained("{home}")` (or `--model {name}` in the CLI and the app).

## Model
{model_table}

## Training
{training}

## Evaluation (held-out test split)
Each test scene is reconstructed from its first view; every other view is a novel view, scored over the
whole frame, over the foreground (object + its shadow, from the dataset's masks) and over the object alone,
next to two predictions that know nothing about 3D: the input view copied unchanged (copy-input) and the
per-pixel mean of all evaluated views (mean-image). {eval_steps} DDIM steps, seed 0; deterministic. Command:

    {eval_command}

{metrics_table}

Object-only PSNR by azimuth difference between the input and the novel view:

{azimuth_table}

{verdict}
{all_scenes}{status}
`orbit_examples.png` shows test inputs (left column) and orbits of their reconstructions at t_r = 0;
`samples_64.png` (made with `{sample_command}`) shows {samples}
unconditional samples ({sample_steps} DDIM steps, the default camera; batches of {sample_batch}, their noise drawn from
seeds {sample_seeds}).
{camera}{licence}
## Limitations
{limitations}
"""

# What the card says per dataset (scenes.json "dataset"), and the targets for it. ``summary`` goes into the
# card's front matter ({size}: the model's image size): the app shows it as what the model knows
# (rdiff.hub.model_summary).
DATASETS = {
    "clevr1": dict(
        title="CLEVR1 32x32", tag="clevr", license="mit",
        summary="one CLEVR object (cube, sphere or cylinder; 8 colours, rubber or metal) on a grey ground disc, "
                "{size}x{size} pixels, cameras 15-60° above the floor at distance ~3",
        description="CLEVR1: one CLEVR object (cube/sphere/cylinder, 8 colours, rubber/metal, two sizes, random "
                    "yaw) on a grey ground disc, from our numpy generator.",
        targets="object-only PSNR >= 2 dB above copy-input, beats it on >= 80% of novel views, whole frame "
                ">= 24.48 dB",
        limitations="- Trained on synthetic single-object scenes only; real photos are out of distribution "
                    "(use t_r > 0).\n- 32x32 resolution: meshes are coarse (marching cubes on a 64^3 density "
                    "grid).\n- The input camera must match the image (elevation 15-60 degrees, distance ~3, FOV ~45 "
                    "degrees in training); the camera estimator (section above) fills it in from the image."),
    "clevr1-blender": dict(
        title="CLEVR1 32x32", tag="clevr", license="mit",
        summary="one CLEVR object (cube, sphere or cylinder; 8 colours, rubber or metal) in CLEVR's Blender scene, "
                "{size}x{size} pixels, cameras 15-60° above the floor at distance 2.7-3.3",
        description="CLEVR1: one CLEVR object (cube/sphere/cylinder, 8 colours, rubber/metal, two sizes, random "
                    "yaw) rendered with Blender Cycles in CLEVR's own scene (its shapes, materials and jittered "
                    "lamps; BSD licence, copied into the dataset), on a floor reaching the horizon (`docs/data.md`).",
        targets="object-only PSNR >= 2 dB above copy-input, beats it on >= 80% of novel views, whole frame "
                ">= 24.48 dB",
        limitations="- Trained on synthetic single-object scenes only; real photos are out of distribution "
                    "(use t_r > 0).\n- 32x32 resolution: meshes are coarse (marching cubes on a 64^3 density "
                    "grid).\n- The input camera must match the image (elevation 15-60 degrees, distance 2.7-3.3, "
                    "FOV 40-50 degrees in training); the camera estimator (section above) fills it in from the "
                    "image.\n- Faint lines where the scene box's edges cut the floor: the floor beyond the box is "
                    "the per-ray background's."),
    "chairs": dict(
        title="chairs 64x64", tag="chairs", license="mit",
        summary="procedural chairs (Infinigen) on a dark-red floor, Blender renders at {size}x{size} pixels, "
                "cameras 10-60° above the floor at distance 2.7-3.3",
        description="procedural chairs (Infinigen's `ChairFactory`, BSD-3-Clause; a distinct chair per scene) "
                    "standing on a dark-red floor with soft shadows, rendered with Blender Cycles at 64x64: the "
                    "setting of the paper's ShapeNet chairs, which cannot be redistributed (`docs/data.md`).",
        targets="whole-frame novel-view PSNR >= 25 dB at t_r = 0 and object-only PSNR >= 2 dB above copy-input",
        limitations="- Procedural chairs only; real photos and other furniture are out of distribution (use "
                    "t_r > 0).\n- 64x64 images and 64x64 triplanes (the paper: 256x256): thin legs and slats "
                    "are blurred.\n- The input camera must match the image (elevation 10-60 degrees, distance "
                    "2.7-3.3, FOV 40-50 degrees in training); the camera estimator (section above) fills it in."),
    "planes": dict(
        title="planes 64x64", tag="airplanes", license="gpl-2.0",
        summary="FlightGear aircraft on a dark-red floor, Blender renders at {size}x{size} pixels, "
                "cameras 10-60° above the floor at distance 2.7-3.3",
        description="the aircraft of Debian's `flightgear-data-ai` (GPL-2+; liveries, scale and colour jitter) "
                    "on a dark-red floor, rendered with Blender Cycles at 64x64. The weights are trained on GPL "
                    "material: see `docs/data.md` for what that means.",
        targets="whole-frame novel-view PSNR >= 25 dB at t_r = 0 and object-only PSNR >= 2 dB above copy-input",
        licence="GPL-2.0-or-later (`LICENSE.md`): trained on renders of FlightGear's GPL-licensed aircraft, "
                "distributed separately\nfrom rdiff's MIT-licensed code (`docs/data.md`, \"Planes\").",
        limitations="- FlightGear's AI aircraft only; real photos are out of distribution (use t_r > 0).\n"
                    "- 64x64 images and 64x64 triplanes: thin wings and tails are blurred.\n- The input "
                    "camera must match the image (elevation 10-60 degrees, distance 2.7-3.3, FOV 40-50 degrees)."),
}


def metrics_markdown(result) -> str:
    """The model rows (per t_r) and the baseline rows of an EvalResult as a markdown table."""
    cols = [("psnr", "frame PSNR"), ("ssim", "frame SSIM"), ("fg_psnr", "fg PSNR"), ("obj_psnr", "object PSNR"),
            ("obj_ssim", "object SSIM"), ("beats_copy_obj", "beats copy-input (object)")]
    lines = ["| prediction | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]

    def cell(m, k):
        v = m.get(k)
        if v is None:
            return "-"
        return f"{100 * v:.1f}%" if k.startswith("beats") else (f"{v:.3f}" if "ssim" in k else f"{v:.2f}")

    for t, m in result.metrics.items():
        lines.append(f"| model, t_r = {t} | " + " | ".join(cell(m, k) for k, _ in cols) + " |")
    for name, m in result.baselines.items():
        lines.append(f"| {name.replace('_', '-')} | " + " | ".join(cell(m, k) for k, _ in cols) + " |")
    return "\n".join(lines) + f"\n\n({result.scenes} scenes, {result.views} novel views)"


def azimuth_markdown(result) -> str:
    bins = list(next(iter(result.by_azimuth.values())))
    lines = ["| prediction | " + " | ".join(f"{b} deg" for b in bins) + " |", "|---" * (len(bins) + 1) + "|"]
    for name, per_bin in result.by_azimuth.items():
        cells = [f"{per_bin[b].get('obj_psnr', float('nan')):.2f}" for b in bins]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| views | " + " | ".join(str(int(per_bin[b]["views"])) for b in bins) + " |")
    return "\n".join(lines)


def orbit_sheet(model: RenderDiffusion, data: Path, out: Path, scenes: int = 6, frames: int = 8) -> None:
    from rdiff.data import group_by_scene, load_transforms

    groups = list(group_by_scene(load_transforms(data, size=model.config.image_size)).values())[:scenes]
    rows = []
    for g in groups:
        src = g[0]
        img = torch.from_numpy(src.image).permute(2, 0, 1)[None] * 2 - 1
        cam = Cameras(torch.from_numpy(src.c2w)[None], torch.tensor([src.fov_x]))
        scene = reconstruct(model, img, cam, t_r=0).scenes[0]
        views = [v.rgb for v in scene.orbit(frames)]
        rows.append(np.concatenate([(src.image * 255).astype(np.uint8), *views], axis=1))
    sheet = np.concatenate(rows, axis=0)
    scale = max(1, 96 // model.config.image_size)
    Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.NEAREST).save(out)


def all_scenes_markdown(result, path: str) -> str:
    """The card's paragraph on an evaluation of every test scene at t_r = 0 (saved as ``path``)."""
    m0, copy, mean = result.metrics["0"], result.baselines["copy_input"], result.baselines["mean_image"]
    bins = result.by_azimuth["t_r=0"]
    per_bin = " / ".join(f"{v['obj_psnr']:.2f}" for v in bins.values())
    return (f"\nOn all {result.scenes} test scenes ({result.views} novel views, t_r = 0: `--tr 0` without "
            f"`--max-scenes`; `{path}`):\nwhole frame **{m0['psnr']:.2f} dB**, object-only {m0['obj_psnr']:.2f} dB "
            f"against {copy['obj_psnr']:.2f} for copy-input ({m0['obj_psnr'] - copy['obj_psnr']:+.2f} dB) and "
            f"{mean['obj_psnr']:.2f} for the mean\nimage, beating copy-input on "
            f"{100 * m0['beats_copy_obj']:.1f}% of views ({per_bin} dB from {next(iter(bins))} to "
            f"{list(bins)[-1]} degrees).\n")


def camera_markdown(out: Path, name: str) -> str:
    """The card's camera-estimator section (empty without ``camera_estimator.json`` in ``out``)."""
    path = out / "camera_estimator.json"
    if not path.exists():
        return ""
    cfg = json.loads(path.read_text())
    err = cfg["test_error"]
    quantities = (("elevation_deg", "elevation", "°"), ("radius", "distance", ""), ("fov_deg", "horizontal FOV", "°"))
    rows = "\n".join(
        f"| {label} | {err[q]:.2f}{u} | {err[q + '_mean_baseline']:.2f}{u} | {cfg[q][0]:.3g}-{cfg[q][1]:.3g}{u} |"
        for q, label, u in quantities)
    return f"""
## Camera estimator
`camera_estimator.safetensors` (+ `.json`) is a small CNN that estimates the input camera's elevation, distance
and FOV from an image (azimuth is free: the model works in a view-aligned frame). The app fills its camera
sliders from it when an image is uploaded and warns when a camera lies outside the trained ranges; the CLI
uses it with `--estimate-camera` (`rdiff camera estimate IMAGE --model {name}`). Trained on the training
views ({int(err['train_views'])}), mean absolute error on the {int(err['test_views'])} test views:

| quantity | estimator | always the training mean | trained range |
|---|---|---|---|
{rows}

Distance and FOV trade off (a nearer camera with a narrower FOV frames an object alike), so they are
estimated less well than elevation. Command: `{cfg.get('command') or 'python -m rdiff camera train'}`
"""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", default="runs/clevr1")
    p.add_argument("--data", default="data/clevr1/test")
    p.add_argument("--out", default="weights/clevr1-32")
    p.add_argument("--max-scenes", type=int, default=None)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--training", required=True, help="markdown file: the training section of the card")
    p.add_argument("--status", help="markdown file: where this checkpoint stands, after the targets line")
    p.add_argument("--name", help="the model's name in weights/ and --model (default: the --out folder's name)")
    p.add_argument("--all-scenes", action="store_true",
                   help="also evaluate every test scene at t_r = 0 (metrics_all_test_scenes.json)")
    p.add_argument("--samples", type=int, default=64, help="samples on samples_64.png (0: keep the sheet there)")
    p.add_argument("--sample-steps", type=int, default=50)
    p.add_argument("--sample-scale", type=int, default=2)
    args = p.parse_args()
    run, out = Path(args.run), Path(args.out)
    name = args.name or out.name
    home = f"weights/{name}"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "model" / "config.json", out / "config.json")
    shutil.copy(run / "model" / "model.safetensors", out / "model.safetensors")
    model = RenderDiffusion.from_pretrained(str(out))
    result = evaluate(model, args.data, (0, 40), steps=args.steps, max_scenes=args.max_scenes)
    save_result(result, out / "metrics.json")
    orbit_sheet(model, Path(args.data), out / "orbit_examples.png")
    all_scenes = ""
    if args.all_scenes:  # the evaluation above already covers every scene when --max-scenes is not given
        every = result if args.max_scenes is None else evaluate(model, args.data, (0,), steps=args.steps)
        save_result(every, out / "metrics_all_test_scenes.json")
        all_scenes = all_scenes_markdown(every, "metrics_all_test_scenes.json")
    samples = args.samples or 64  # with --samples 0 the card describes the sheet kept in --out
    sample_flags = f" --n {samples} --steps {args.sample_steps} --scale {args.sample_scale}"
    if args.samples:
        sample_sheet(model, samples, args.sample_steps, scale=args.sample_scale).save(out / "samples_64.png")

    meta_path = Path(args.data).parent / "scenes.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    dataset = meta.get("dataset", "clevr1")
    info = DATASETS.get(dataset) or DATASETS.get(dataset.split("-")[0], DATASETS["clevr1"])
    cfg = model.config.to_dict()
    keys = ["image_size", "triplane_size", "triplane_channels", "triplane_frame", "base_channels", "channel_mults",
            "decoder_hidden", "decoder_layers", "coarse_samples", "fine_samples", "background", "schedule", "timesteps"]
    keys += [k for k in ENCODER_EXTENSIONS if cfg[k] and (k != "lift_depths" or cfg["lift_features"])]
    model_table = "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {cfg[k]} |" for k in keys)
    model_table += f"\n| parameters | {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M |"
    m0, copy = result.metrics["0"], result.baselines["copy_input"]
    gain = m0["obj_psnr"] - copy["obj_psnr"]
    verdict = (f"Targets (issue: {info['targets']}): object {gain:+.2f} dB over copy-input, beats it on "
               f"{100 * m0['beats_copy_obj']:.1f}% of views, whole frame {m0['psnr']:.2f} dB.")
    limit = f" --max-scenes {args.max_scenes}" if args.max_scenes else ""
    command = meta.get("command") or f"python -m rdiff data {dataset}"
    if "--out" not in command:
        command = command.replace(f"data {dataset}", f"data {dataset} --out {Path(args.data).parent}", 1)
    if not command.startswith("python -m "):
        command = "python -m " + command
    status = f"\n{Path(args.status).read_text().strip()}\n" if args.status else ""
    licence = f"\n## Licence\n{info['licence']}\n" if info.get("licence") else ""
    card = CARD.format(
        data_command=command, home=home, name=name, model_table=model_table,
        training=Path(args.training).read_text().strip(), eval_steps=args.steps,
        eval_command=f"python -m rdiff eval --checkpoint {home} --data {args.data} --tr 0,40{limit}",
        metrics_table=metrics_markdown(result), azimuth_table=azimuth_markdown(result), verdict=verdict,
        all_scenes=all_scenes, status=status, samples=samples, sample_steps=args.sample_steps,
        sample_batch=SHEET_BATCH, sample_seeds=", ".join(map(str, batch_seeds(samples))),
        sample_command=f"python scripts/sample_sheet.py {home} {home}/samples_64.png{sample_flags}",
        camera=camera_markdown(out, name), licence=licence,
        # one line of YAML (a JSON string), shown by the app
        summary=json.dumps(info["summary"].format(size=model.config.image_size), ensure_ascii=False),
        **{k: info[k] for k in ("title", "tag", "license", "description", "limitations")},
    )
    (out / "README.md").write_text(card)
    print(result.table())


if __name__ == "__main__":
    main()
