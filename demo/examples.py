"""Example inputs shipped in ``assets/``: CLEVR1 renders plus the camera each was rendered from.

``assets/examples.json`` lists, for every example image, the camera (azimuth, elevation, radius in
scene units, horizontal fov in degrees) so that picking an example also sets the camera sliders.
Regenerate the assets with ``python -m demo.examples`` (deterministic).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"
EXAMPLES_FILE = "examples.json"
EXAMPLE_SIZE = 128  # pixels; the app downsizes to the model's resolution


@dataclass(frozen=True)
class Example:
    """One example image and the camera it was rendered from."""

    file: str  # relative to the assets folder
    title: str
    azimuth: float  # degrees
    elevation: float  # degrees
    radius: float
    fov: float  # horizontal, degrees

    def path(self, root: Path = ASSETS) -> Path:
        return root / self.file

    def camera_row(self) -> list[float]:
        return [self.azimuth, self.elevation, self.radius, self.fov]


# (file stem, title, shape, colour, material, size, yaw, azimuth, elevation, radius, fov)
_SPECS = [
    ("red_rubber_sphere", "red rubber sphere", "sphere", "red", "rubber", "large", 0.0, 30.0, 30.0, 3.0, 45.0),
    ("blue_metal_cube", "blue metal cube", "cube", "blue", "metal", "large", 0.5, 120.0, 35.0, 3.0, 45.0),
    ("yellow_rubber_cylinder", "yellow rubber cylinder", "cylinder", "yellow", "rubber", "large", 0.0,
     220.0, 25.0, 3.1, 45.0),
    ("green_metal_sphere", "small green metal sphere", "sphere", "green", "metal", "small", 0.0,
     300.0, 45.0, 2.8, 42.0),
]


def load_examples(root: Path = ASSETS) -> list[Example]:
    """The examples listed in ``root/examples.json`` whose image exists (empty if there is no list)."""
    index = root / EXAMPLES_FILE
    if not index.is_file():
        return []
    raw = json.loads(index.read_text(encoding="utf-8"))
    examples = [Example(**item) for item in raw.get("examples", [])]
    return [e for e in examples if e.path(root).is_file()]


def make_examples(root: Path = ASSETS, size: int = EXAMPLE_SIZE) -> list[Example]:
    """Render the example images with the CLEVR1 renderer and write ``examples.json``."""
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
        examples.append(Example(f"{stem}.png", title, az, el, r, fov))
    doc = {
        "about": "CLEVR1 renders (rdiff.data.clevr1.render_view); camera: azimuth/elevation/fov in degrees, "
        "radius in scene units, looking at the origin. Regenerate with `python -m demo.examples`.",
        "examples": [asdict(e) for e in examples],
    }
    (root / EXAMPLES_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return examples


if __name__ == "__main__":
    for e in make_examples():
        print(e.path())
