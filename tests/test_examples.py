"""App examples made from a posed dataset's held-out views: the image and a camera that reproduces its pose."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from demo.examples import examples_from_dataset, read_examples
from rdiff.cameras import orbit_cameras
from rdiff.data import load_transforms
from rdiff.data.clevr1 import generate_clevr1


def test_examples_from_dataset_keep_image_and_camera(tmp_path):
    data = tmp_path / "data"
    generate_clevr1(data, scenes=5, views=2, size=16, seed=1, test_fraction=0.4, progress=False)
    made = examples_from_dataset(data / "test", tmp_path / "assets" / "toy-16", count=4, title="toy")
    frames = load_transforms(data / "test")
    firsts = {f.scene: f for f in reversed(frames)}  # the first view of each scene
    assert len(made) == len(firsts) == 2  # fewer scenes than asked for: all of them
    assert read_examples(tmp_path / "assets" / "toy-16") == made
    for e in made:
        frame = firsts[e.path().stem]
        with Image.open(e.path()) as im:
            np.testing.assert_allclose(np.asarray(im.convert("RGB")) / 255, frame.image, atol=1 / 255)
        cam = orbit_cameras(e.azimuth, e.elevation, e.radius, math.radians(e.fov))
        np.testing.assert_allclose(cam.c2w[0].numpy(), frame.c2w, atol=2e-3)
        assert abs(math.radians(e.fov) - frame.fov_x) < 1e-4 and e.title.startswith("toy ")
