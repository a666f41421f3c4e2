"""Example inputs per shipped model: ``assets/<model>/`` holds the images plus the camera of each.

``assets/<model>/examples.json`` lists, for every example image of that model (e.g. ``clevr1-32``),
the camera (azimuth, elevation, radius in scene units, horizontal fov in degrees) so that picking an
example also sets the camera sliders. A model without such a folder (a Hub id, a user's folder, a
shipped model nobody made examples for) has no examples. Regenerate the CLEVR ones in
``assets/clevr1-32/`` with ``python -m demo.examples`` (deterministic).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rdiff.hub import DEFAULT_MODEL

ASSETS = Path(__file__).resolve().parent.parent / "assets"
EXAMPLES_FILE = "examples.json"
EXAMPLE_SIZE = 128  # pixels; the app downsizes to the model's resolution
CLEVR_MODEL = DEFAULT_MODEL  # the model the rendered CLEVR1 examples are for


@dataclass(frozen=True)
class Example:
    """One example image and the camera it was rendered from."""

    file: str  # relative to ``folder``
    title: str
    azimuth: float  # degrees
    elevation: float  # degrees
    radius: float
    fov: float  # horizontal, degrees
    folder: Path = field(default=ASSETS / CLEVR_MODEL, compare=False)  # not in examples.json

    def path(self) -> Path:
        return self.folder / self.file

    def camera_row(self) -> list[float]:
        return [self.azimuth, self.elevation, self.radius, self.fov]

    def to_json(self) -> dict:
        """The entry of ``examples.json`` (the folder is where the file lies, not part of it)."""
        entry = asdict(self)
        del entry["folder"]
        return entry


# (file stem, title, shape, colour, material, size, yaw, azimuth, elevation, radius, fov)
_SPECS = [
    ("red_rubber_sphere", "red rubber sphere", "sphere", "red", "rubber", "large", 0.0, 30.0, 30.0, 3.0, 45.0),
    ("blue_metal_cube", "blue metal cube", "cube", "blue", "metal", "large", 0.5, 120.0, 35.0, 3.0, 45.0),
    ("yellow_rubber_cylinder", "yellow rubber cylinder", "cylinder", "yellow", "rubber", "large", 0.0,
     220.0, 25.0, 3.1, 45.0),
    ("green_metal_sphere", "small green metal sphere", "sphere", "green", "metal", "small", 0.0,
     300.0, 45.0, 2.8, 42.0),
]


def examples_folder(model: str | None, assets: Path = ASSETS) -> Path | None:
    """``assets/<model>/`` when ``model`` is a bare name with an ``examples.json`` there, else None."""
    name = (model or "").strip()
    if not name or name != Path(name).name or name.startswith((".", "~")):
        return None  # a Hub id or a path: no shipped examples
    folder = Path(assets) / name
    return folder if (folder / EXAMPLES_FILE).is_file() else None


def read_examples(folder: Path) -> list[Example]:
    """The examples listed in ``folder/examples.json`` whose image exists (empty if there is no list)."""
    index = Path(folder) / EXAMPLES_FILE
    if not index.is_file():
        return []
    raw = json.loads(index.read_text(encoding="utf-8"))
    examples = [Example(**item, folder=Path(folder)) for item in raw.get("examples", [])]
    return [e for e in examples if e.path().is_file()]


def load_examples(model: str | None = CLEVR_MODEL, assets: Path = ASSETS) -> list[Example]:
    """The examples of the shipped model called ``model`` (``assets/<model>/examples.json``).

    Empty for a model without examples: None, a Hub id, a local folder, or a name with no assets.
    """
    folder = examples_folder(model, assets)
    return read_examples(folder) if folder is not None else []


def make_examples(root: Path = ASSETS / CLEVR_MODEL, size: int = EXAMPLE_SIZE) -> list[Example]:
    """Render the CLEVR1 example images into ``root`` and write its ``examples.json``."""
    from PIL import Image

    from rdiff.cameras import orbit_cameras
    from rdiff.data.clevr1 import Clevr1Scene, render_view

    root.mkdir(parents=True, exist_ok=True)
    examples = []
    for i, (stem, title, shape, colour, material, sz, yaw, az, el, r, fov) in enumerate(_SPECS):
        scene = Clevr1Scene.make(shape, colour, material, sz, yaw)
        c2w = orbit_cameras(az, el, r, math.radians(fov)).c2w[0]
        rgb = render_view(scene, c2w, math.radians(fov), size, rng_or_seed=i)
        Image.fromarray((rgb * 255).round().astype("uint8")).save(root / f"{stem}.png", optimize=True)
        examples.append(Example(f"{stem}.png", title, az, el, r, fov, folder=root))
    doc = {
        "about": "CLEVR1 renders (rdiff.data.clevr1.render_view); camera: azimuth/elevation/fov in degrees, "
        "radius in scene units, looking at the origin. Regenerate with `python -m demo.examples`.",
        "examples": [e.to_json() for e in examples],
    }
    (root / EXAMPLES_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return examples


def examples_from_dataset(data: Path, root: Path, count: int = 4, title: str = "test object") -> list[Example]:
    """Copy the first view of ``count`` scenes of a posed dataset split (e.g. held-out test chairs) into ``root``
    with their cameras (cameras must look at the origin, as every ``rdiff data`` dataset's do), and write
    ``root/examples.json``."""
    import shutil

    import torch

    from rdiff.cameras import position_to_spherical
    from rdiff.data import group_by_scene, load_transforms
    from rdiff.data.transforms_json import resolve_image

    groups = list(group_by_scene(load_transforms(data)).values())[:count]
    if not groups:
        raise ValueError(f"{data}: no scenes")
    root.mkdir(parents=True, exist_ok=True)
    examples = []
    for frames in groups:
        first = frames[0]
        az, el, r = (float(v) for v in position_to_spherical(torch.as_tensor(first.c2w[:3, 3])))
        name = f"{first.scene}.png"
        shutil.copy(resolve_image(Path(data), first.file_path), root / name)
        examples.append(Example(name, f"{title} {first.scene}", round(az % 360, 2), round(el, 2), round(r, 4),
                                round(math.degrees(first.fov_x), 3), folder=root))
    doc = {"about": f"First views of held-out scenes of {data} (not seen in training); camera as rendered.",
           "examples": [e.to_json() for e in examples]}
    (root / EXAMPLES_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return examples


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write example images for the app.")
    parser.add_argument("--from-dataset", type=Path, help="copy held-out views of this dataset split instead of "
                        "rendering the CLEVR1 examples")
    parser.add_argument("--out", type=Path, help="assets folder of the model (default assets/clevr1-32)")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--title", default="test object")
    args = parser.parse_args()
    if args.from_dataset:
        made = examples_from_dataset(args.from_dataset, args.out or ASSETS / "custom", args.count, args.title)
    else:
        made = make_examples(args.out or ASSETS / CLEVR_MODEL)
    for e in made:
        print(e.path())
