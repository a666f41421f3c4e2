"""Command-line front end of the Blender datasets: ``rdiff data chairs | planes | meshes DIR | clevr1-blender``."""

from __future__ import annotations

import argparse
import shlex
import sys

from rdiff.data.blender.config import DARK_RED, GREY, CameraRanges, Placement, RenderSettings, Style
from rdiff.data.blender.dataset import PAPER_SCENES, PAPER_TEST_FRACTION, GenerateOptions, generate

#: ``rdiff data`` sub-commands of this module, with their help line.
COMMANDS = {
    "chairs": "Infinigen chairs on a dark-red floor (the paper's ShapeNet-chairs setting), Blender",
    "planes": "FlightGear aircraft (flightgear-data-ai) on a dark-red floor, Blender",
    "meshes": "a folder of OBJ / GLB / PLY meshes (e.g. a ShapeNet category), Blender",
    "clevr1-blender": "CLEVR1 rendered in CLEVR's own Blender scene (the faithful CLEVR1)",
}


def _colour(text: str) -> tuple[float, float, float]:
    """``#rrggbb`` or ``r,g,b`` (0-255) display colour -> linear RGB in [0, 1]."""
    from rdiff.data.blender.render import srgb_to_linear

    t = text.strip().lstrip("#")
    try:
        if "," in t:
            values = [float(v) / 255.0 for v in t.split(",")]
        else:
            values = [int(t[i:i + 2], 16) / 255.0 for i in (0, 2, 4)] if len(t) == 6 else []
    except ValueError:
        values = []
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"colour must be #rrggbb or r,g,b (0-255), got {text!r}")
    return tuple(float(v) for v in srgb_to_linear(values))


def add_arguments(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """Options of one sub-command (``command`` is a key of :data:`COMMANDS`)."""
    clevr = command == "clevr1-blender"
    if command == "meshes":
        parser.add_argument("folder", help="folder with meshes (searched recursively)")
    parser.add_argument("--out", required=True, help="output folder (gets train/ and test/)")
    default_scenes = None if command == "meshes" else (1000 if clevr else PAPER_SCENES)
    parser.add_argument("--scenes", type=int, default=default_scenes,
                        help="number of scenes, train + test" + (" (default: one per mesh)" if command == "meshes"
                                                                  else f" (default {default_scenes})"))
    parser.add_argument("--views", type=int, default=8, help="views per train scene")
    parser.add_argument("--test-views", type=int, default=8, help="views per test scene (at least --views)")
    parser.add_argument("--size", type=int, default=32 if clevr else 64, help="image width = height")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.1 if clevr else PAPER_TEST_FRACTION,
                        help="fraction of scenes (and objects) held out")
    parser.add_argument("--workers", type=int, default=1, help="render processes, each with its own Blender")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per render process")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    parser.add_argument("--no-denoise", action="store_true", help="do not denoise (grainier images)")
    parser.add_argument("--no-shadows", action="store_true",
                        help="skip the shadow labels of the masks (halves the render time)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    if not clevr:
        cams = CameraRanges()
        parser.add_argument("--elevation", type=float, nargs=2, default=cams.elevation_deg, metavar=("MIN", "MAX"),
                            help="camera elevation range, degrees")
        parser.add_argument("--radius", type=float, nargs=2, default=cams.radius, metavar=("MIN", "MAX"),
                            help="camera distance range")
        parser.add_argument("--fov", type=float, nargs=2, default=cams.fov_deg, metavar=("MIN", "MAX"),
                            help="horizontal field of view range, degrees")
        parser.add_argument("--floor", type=_colour, default=None,
                            help="floor colour, #rrggbb (default: dark red, grey for meshes)")
        parser.add_argument("--object-radius", type=float, default=Placement().radius,
                            help="objects are scaled to this bounding-box half-diagonal")
    if command == "meshes":
        parser.add_argument("--up-axis", choices=("Y", "Z"), default="Y", help="up axis of OBJ / PLY / STL files")
        parser.add_argument("--repeats", type=int, default=1, help="scenes per mesh when --scenes is not given")
    if command == "planes":
        from rdiff.data.blender.aircraft import FLIGHTGEAR_AI_AIRCRAFT

        parser.add_argument("--root", default=FLIGHTGEAR_AI_AIRCRAFT, help="FlightGear AI/Aircraft folder")
    return parser


def _source(args: argparse.Namespace):
    command = args.dataset
    if command == "clevr1-blender":
        from rdiff.data.blender.clevr import ClevrSource

        return ClevrSource()
    base = GREY if command == "meshes" else DARK_RED
    style = Style(floor_rgb=args.floor, world_rgb=base.world_rgb, world_strength=base.world_strength,
                  lights=base.lights) if args.floor is not None else base
    placement = Placement(radius=args.object_radius)
    if command == "chairs":
        from rdiff.data.blender.chairs import ChairSource

        return ChairSource(style=style, placement=placement)
    if command == "planes":
        from rdiff.data.blender.planes import PlaneSource

        return PlaneSource(root=args.root, style=style, placement=placement)
    from rdiff.data.blender.meshes import MeshFolderSource

    return MeshFolderSource(folder=args.folder, style=style, placement=placement, up_axis=args.up_axis,
                            repeats=args.repeats)


def options(args: argparse.Namespace) -> GenerateOptions:
    """:class:`GenerateOptions` from parsed arguments."""
    if args.dataset == "clevr1-blender":
        from rdiff.data.blender.clevr import CLEVR1_CAMERAS

        cameras = CLEVR1_CAMERAS
    else:
        cameras = CameraRanges(elevation_deg=tuple(args.elevation), radius=tuple(args.radius), fov_deg=tuple(args.fov))
    render = RenderSettings(size=args.size, samples=args.samples, denoise=not args.no_denoise, threads=args.threads)
    return GenerateOptions(scenes=args.scenes, views=args.views, test_views=args.test_views, seed=args.seed,
                           test_fraction=args.test_fraction, workers=args.workers, progress=not args.no_progress,
                           shadows=not args.no_shadows, render=render, cameras=cameras)


def run(args: argparse.Namespace) -> dict:
    """Render the dataset the arguments describe; prints a one-line summary."""
    summary = generate(_source(args), args.out, options(args), command="rdiff " + shlex.join(sys.argv[1:]))
    n_test = sum(s["split"] == "test" for s in summary["scenes"])
    skipped = f", skipped {summary['skipped_count']} ({summary['skipped_reasons']})" if summary["skipped_count"] else ""
    print(f"wrote {summary['rendered'] - n_test} train and {n_test} test scenes to {args.out}{skipped}")
    return summary
