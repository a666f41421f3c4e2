"""Command line: ``rdiff {reconstruct,inpaint,generate,train,eval,data}`` (also ``python -m rdiff``).

The commands that use a model take ``--model`` (alias ``--checkpoint``): a shipped model's name
(``weights/<name>/``, e.g. ``clevr1-32``; the help lists them), a local checkpoint folder or a Hub id.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from tqdm.auto import tqdm

from rdiff.cameras import Cameras, orbit_cameras
from rdiff.model import CheckpointError
from rdiff.preprocess import InputError

if TYPE_CHECKING:
    from rdiff.diffusion import Sampler
    from rdiff.sampling import InpaintSettings


def _progress(desc: str):
    bar = tqdm(desc=desc, unit="step")

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done == total:
            bar.close()

    return update


def model_help(default: str | None = None) -> str:
    """Help text of a ``--model`` option: what it accepts, with the shipped models' names."""
    from rdiff.hub import shipped_models

    names = ", ".join(shipped_models()) or "none found"
    text = f"a shipped model ({names}), a local checkpoint folder or a Hugging Face Hub id (user/model)"
    return f"{text}; default: {default}" if default else text


def _add_model_option(p: argparse.ArgumentParser, required: bool = False) -> None:
    from rdiff.hub import DEFAULT_MODEL

    p.add_argument("--model", "--checkpoint", dest="checkpoint", metavar="MODEL", required=required,
                   default=None, help=model_help(None if required else DEFAULT_MODEL))


def _add_model_args(p: argparse.ArgumentParser) -> None:
    _add_model_option(p)
    p.add_argument("--out", default="outputs", help="output folder")
    p.add_argument("--steps", type=int, default=None, help="denoising steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=36, help="turntable frames")
    p.add_argument("--mesh-format", default="glb", choices=["glb", "obj", "ply"])
    p.add_argument("--mesh-resolution", type=int, default=64)
    p.add_argument("--mesh-faces", type=int, default=None,
                   help="reduce the mesh to at most this many faces (needs: pip install fast-simplification)")
    _add_threads_arg(p)


def _add_sampler_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--sampler", choices=("ddpm", "ddim"), default=None, help=f"per-step sampler (default {default})")
    p.add_argument("--eta", type=float, default=None,
                   help="DDIM's eta in [0, 1]: 0 deterministic (default), 1 as much fresh noise as DDPM; "
                        "needs the ddim sampler")


def sampler_from_args(args, default: str) -> Sampler:
    """The sampler object the ``--sampler`` / ``--eta`` options ask for (``default``: the command's sampler)."""
    from rdiff.diffusion import DDIM, as_sampler

    name = args.sampler or default
    if args.eta is None:
        return as_sampler(name)
    if name != "ddim":
        raise ValueError(f"--eta is DDIM's noise level; it needs --sampler ddim (this command uses {name})")
    return DDIM(eta=args.eta)


def _add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the cores the current load leaves idle, at least 1)")


def _add_camera_args(p: argparse.ArgumentParser, estimate: bool = True) -> None:
    if estimate:
        p.add_argument("--estimate-camera", action="store_true",
                       help="estimate the input camera's elevation, distance and FOV from the image with the "
                            "model's camera estimator (options given explicitly still win)")
    p.add_argument("--azimuth", type=float, default=None, help="input camera azimuth in degrees")
    p.add_argument("--elevation", type=float, default=None, help="input camera elevation in degrees")
    p.add_argument("--radius", type=float, default=None, help="input camera distance from the origin")
    p.add_argument("--fov", type=float, default=None, help="input camera horizontal FOV in degrees")


def _camera(model, args, image=None, estimator=None):
    """The input camera: the options given, else the estimate (``--estimate-camera``), else the model's defaults."""
    c = model.config
    el, r, fov = c.default_elevation, c.default_radius, c.default_fov_x
    if getattr(args, "estimate_camera", False):
        if estimator is None:
            raise ValueError("this model has no camera estimator (camera_estimator.json beside its weights); "
                             "train one with `rdiff camera train` or give --elevation / --radius / --fov")
        est = estimator.estimate(image)
        el, r, fov = est.elevation_deg, est.radius, math.radians(est.fov_deg)
        print(f"estimated camera: {est.describe()}", file=sys.stderr)
    az = c.default_azimuth if args.azimuth is None else args.azimuth
    el = el if args.elevation is None else args.elevation
    r = r if args.radius is None else args.radius
    fov = fov if args.fov is None else math.radians(args.fov)
    return orbit_cameras(az, el, r, fov)


def _save_result(result, out: Path, stem: str, args) -> list[Path]:
    from rdiff.visualize import depth_image, to_uint8

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i, scene in enumerate(result.scenes):
        name = stem if len(result.scenes) == 1 else f"{stem}_{i:02d}"
        Image.fromarray(to_uint8(result.images[i])).save(out / f"{name}.png")  # the 3D scene's input view
        if result.composites is not None:  # inpainting: the known pixels + the fill, 2D only
            Image.fromarray(to_uint8(result.composites[i])).save(out / f"{name}_composite.png")
            written.append(out / f"{name}_composite.png")
        Image.fromarray(depth_image(scene)).save(out / f"{name}_depth.png")
        scene.set_acceleration("baked")  # a turntable's many frames pay for the bake (benchmarks/bench_accel.py)
        scene.save_video(out / f"{name}_orbit.mp4", n=args.frames)
        scene.set_acceleration("exact")  # frees the baked table
        written += [out / f"{name}.png", out / f"{name}_depth.png", out / f"{name}_orbit.mp4"]
        try:
            written.append(scene.export_mesh(out / f"{name}.{args.mesh_format}", args.mesh_resolution,
                                             target_faces=args.mesh_faces))
        except (ValueError, ImportError) as e:
            print(f"warning: no mesh for {name}: {e}", file=sys.stderr)
    return written


def _load(args):
    """The ``--model`` as :class:`rdiff.hub.LoadedModel` (the model and its camera estimator, if any)."""
    from rdiff.hub import load_model

    loaded = load_model(args.checkpoint)
    if loaded.notice:
        print(loaded.notice, file=sys.stderr)
    return loaded


def cmd_reconstruct(args) -> list[Path]:
    from rdiff.preprocess import prepare_image
    from rdiff.sampling import reconstruct

    sampler = sampler_from_args(args, "ddim")  # bad options fail before any work
    loaded = _load(args)
    model = loaded.model
    image = prepare_image(args.image, model.config.image_size)
    cams = _camera(model, args, image, loaded.camera_estimator)
    result = reconstruct(model, image, cams, t_r=args.tr, steps=args.steps or 10, sampler=sampler,
                         seed=args.seed, progress=_progress("reconstruct"))
    return _save_result(result, Path(args.out), Path(args.image).stem, args)


def inpaint_settings(args) -> InpaintSettings:
    """InpaintSettings from the command line: every option left unset keeps the library default."""
    from dataclasses import replace

    from rdiff.sampling import InpaintSettings

    base = InpaintSettings()
    fill_start = base.fill_start
    if args.fill_start is not None:
        fill_start = None if args.fill_start <= 0 else args.fill_start
    return replace(
        base,
        steps=args.steps or base.steps,
        sampler=base.sampler if args.sampler is None and args.eta is None else sampler_from_args(args, "ddim"),
        jump_length=args.jump_length or base.jump_length,
        jump_n_sample=args.resample or base.jump_n_sample,
        harmonize_t_r=None if args.no_harmonize else base.harmonize_t_r,
        fill_start=fill_start,
    )


def _add_inpaint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resample", type=int, default=None,
                   help="RePaint jump_n_sample: each region of the schedule is denoised this many times (default 1)")
    p.add_argument("--jump-length", type=int, default=None, help="RePaint jump length in sampling steps (default 1)")
    p.add_argument("--fill-start", type=float, default=None,
                   help="start from the image with a 2D (biharmonic) fill noised to this fraction of the schedule "
                        "(default 0.1, t = 100 of 1000); 0: from pure noise (plain RePaint)")
    p.add_argument("--no-harmonize", action="store_true",
                   help="keep the last sampling step's triplane (no reconstruction of the composite)")


def cmd_inpaint(args) -> list[Path]:
    from rdiff.preprocess import open_image, prepare_image, prepare_mask
    from rdiff.sampling import inpaint

    settings = inpaint_settings(args)
    loaded = _load(args)
    model = loaded.model
    m = model.config.image_size
    src = open_image(args.image)
    image = prepare_image(src, m)
    mask = prepare_mask(open_image(args.mask), m, image_size=src.size)
    cams = _camera(model, args, image, loaded.camera_estimator)
    result = inpaint(model, image, mask[None], cams, settings, seed=args.seed, progress=_progress("inpaint"))
    return _save_result(result, Path(args.out), Path(args.image).stem + "_inpainted", args)


def cmd_generate(args) -> list[Path]:
    from rdiff.sampling import generate

    sampler = sampler_from_args(args, "ddim")
    if args.n < 1:
        raise ValueError("--n must be at least 1")
    model = _load(args).model
    cams = Cameras.cat([_camera(model, args)] * args.n)
    result = generate(model, args.n, cams, steps=args.steps or 50, sampler=sampler,
                      seed=args.seed, progress=_progress("generate"))
    return _save_result(result, Path(args.out), f"generated_s{args.seed}", args)


def cmd_camera_train(args) -> None:
    from rdiff.config import RenderDiffusionConfig
    from rdiff.training.camera import CameraTrainSettings, train_camera_estimator

    if args.epochs < 1:
        raise ValueError("--epochs must be at least 1")
    size = args.size
    config = Path(args.out) / "config.json"
    if config.is_file():
        model_size = RenderDiffusionConfig.from_dict(json.loads(config.read_text())).image_size
        if size is not None and size != model_size:
            raise ValueError(f"--size {size} does not match the model in {args.out} ({model_size}x{model_size}): "
                             "its estimator would be ignored")
        size = model_size
    elif size is None:
        raise ValueError(f"{args.out} has no config.json to take the image size from: give --size")
    settings = CameraTrainSettings(epochs=args.epochs, seed=args.seed)
    estimator = train_camera_estimator(args.data, args.test, size, settings)
    estimator.config.command = (f"python -m rdiff camera train --data {args.data} --test {args.test} "
                                f"--out {args.out} --epochs {args.epochs} --seed {args.seed}")
    estimator.save(args.out)
    err = estimator.config.test_error
    print(f"camera estimator ({size}x{size}) -> {args.out}; mean absolute test error "
          f"({int(err['test_views'])} views), with the predict-the-training-mean baseline:")
    for q, unit in (("elevation_deg", "°"), ("radius", ""), ("fov_deg", "°")):
        print(f"  {q:14s} {err[q]:.3f}{unit}  (baseline {err[q + '_mean_baseline']:.3f}{unit})")


def cmd_camera_estimate(args) -> None:
    from rdiff.preprocess import prepare_image

    loaded = _load(args)
    if loaded.camera_estimator is None:
        raise ValueError(f"model {loaded.label} has no camera estimator: train one with `rdiff camera train`")
    image = prepare_image(args.image, loaded.model.config.image_size)
    print(loaded.camera_estimator.estimate(image).describe())


def cmd_train(args) -> None:
    from rdiff.training import load_train_config, train

    overrides = {"data": args.data, "out_dir": args.out_dir, "max_steps": args.max_steps,
                 "max_minutes": args.max_minutes, "threads": args.threads, "batch_size": args.batch_size}
    overrides.update(parse_assignments(args.set or []))
    cfg = load_train_config(args.config, overrides)
    print(f"training -> {train(cfg)}")


def parse_assignments(items: Sequence[str]) -> dict:
    """``["key=value", ...]`` (values in TOML syntax, bare words as strings) -> dict of overrides (``model.key``
    for the model's settings)."""
    import tomllib

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip()
    return out


def cmd_eval(args) -> None:
    from rdiff.evaluation import evaluate, save_result
    from rdiff.hub import load_model

    sampler = sampler_from_args(args, "ddim")
    model = load_model(args.checkpoint, fallback=None).model
    if args.task == "inpaint":
        from rdiff.evaluation.inpainting import evaluate_inpainting

        settings = inpaint_settings(args)
        result = evaluate_inpainting(model, args.data, settings, max_scenes=args.max_scenes or 30, seed=args.seed)
        print(f"{result.scenes} scenes, square hole of a third of the width over the object")
    else:
        t_rs = [int(t) for t in args.tr.split(",") if t.strip()]
        result = evaluate(model, args.data, t_rs, steps=args.steps or 10, max_scenes=args.max_scenes, seed=args.seed,
                          sampler=sampler)
        print(f"{result.scenes} scenes, {result.views} novel views")
    print(result.table())
    if args.json:
        print(f"wrote {save_result(result, args.json)}")


def cmd_data(args) -> None:
    if args.dataset == "clevr1":
        from rdiff.data import clevr1

        clevr1.run(args)
        return
    from rdiff.data.blender import BlenderUnavailableError
    from rdiff.data.blender import cli as blender_cli

    try:
        blender_cli.run(args)
    except BlenderUnavailableError as e:
        raise ValueError(str(e)) from e


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rdiff",
                                     description="RenderDiffusion: 3D reconstruction, inpainting, generation")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("reconstruct", help="3D reconstruction from one image")
    p.add_argument("image")
    p.add_argument("--tr", type=int, default=0, help="noise the input to this timestep first (0 = fidelity)")
    _add_model_args(p)
    _add_sampler_args(p, "ddim")
    _add_camera_args(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("inpaint", help="3D-aware inpainting (mask: white/opaque = fill in)")
    p.add_argument("image")
    p.add_argument("mask")
    _add_inpaint_args(p)
    _add_sampler_args(p, "ddim")
    _add_model_args(p)
    _add_camera_args(p)
    p.set_defaults(func=cmd_inpaint)

    p = sub.add_parser("generate", help="unconditional 3D generation")
    p.add_argument("--n", type=int, default=1)
    _add_model_args(p)
    _add_sampler_args(p, "ddim")
    _add_camera_args(p, estimate=False)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("train", help="train a model (use torchrun for several processes)")
    p.add_argument("--config", required=True, help="TOML training config (see configs/)")
    p.add_argument("--data", default=None)
    p.add_argument("--out-dir", default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a training setting, e.g. --set novel_view_weight=0.5, or a model setting, e.g. "
                        "--set model.lift_features=16 (repeatable)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="novel-view (or inpainting) metrics against trivial baselines")
    p.add_argument("--task", choices=("reconstruct", "inpaint"), default="reconstruct",
                   help="reconstruct: novel views from one input view; inpaint: a square hole over the object")
    _add_model_option(p, required=True)
    p.add_argument("--data", required=True, help="folder with transforms.json (scenes with several views)")
    p.add_argument("--tr", default="0", help="comma-separated reconstruction timesteps, e.g. 0,40")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default 10; inpaint: its default)")
    _add_inpaint_args(p)
    _add_sampler_args(p, "ddim")
    p.add_argument("--max-scenes", type=int, default=None, help="at most this many scenes (inpaint default 30)")
    _add_threads_arg(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the metrics here as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("camera", help="the input-camera estimator (elevation, distance, FOV from an image)")
    csub = p.add_subparsers(dest="action", required=True)
    c = csub.add_parser("train", help="train one on a dataset's posed views and save it beside a model's weights")
    c.add_argument("--data", required=True, help="training views (folder with transforms.json)")
    c.add_argument("--test", required=True, help="held-out views: the reported error is measured on them")
    c.add_argument("--out", required=True, help="the model folder (weights/<name>) the estimator ships with")
    c.add_argument("--size", type=int, default=None, help="image size (default: from --out's config.json)")
    c.add_argument("--epochs", type=int, default=10)
    c.add_argument("--seed", type=int, default=0)
    _add_threads_arg(c)
    c.set_defaults(func=cmd_camera_train)
    c = csub.add_parser("estimate", help="estimate the camera of one image")
    c.add_argument("image")
    _add_model_option(c)
    _add_threads_arg(c)
    c.set_defaults(func=cmd_camera_estimate)

    p = sub.add_parser("data", help="datasets")
    dsub = p.add_subparsers(dest="dataset", required=True)
    from rdiff.data import clevr1

    c = dsub.add_parser("clevr1", help="generate the CLEVR1 dataset (numpy renderer, no extra dependency)")
    clevr1.add_arguments(c)
    c.set_defaults(func=cmd_data)
    from rdiff.data.blender import cli as blender_cli

    for name, help_text in blender_cli.COMMANDS.items():
        c = dsub.add_parser(name, help=help_text)
        blender_cli.add_arguments(c, name)
        c.set_defaults(func=cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("reconstruct", "inpaint", "generate", "eval", "camera"):
        from rdiff.threads import configure_threads

        configure_threads(args.threads)
    try:
        written = args.func(args)
    except (InputError, CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if isinstance(written, list):
        for path in written:
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
