"""The baked volume of the live viewer: quantisation, payload, background and the reference marcher."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config

from rdiff import RenderDiffusion
from rdiff.baked_volume import BakedVolume, background_colour, background_spec, bake_volume, render_baked
from rdiff.cameras import orbit_cameras
from rdiff.preprocess import prepare_image
from rdiff.sampling import reconstruct

ROOT = Path(__file__).resolve().parent.parent


def _scene(model, size=16):
    image = torch.zeros(1, 3, size, size)
    return reconstruct(model, image, orbit_cameras(30.0, 30.0, 3.0, math.radians(45))).scenes[0]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_payload_round_trips_and_rejects_what_it_cannot_read(tiny_model):
    vol = bake_volume(_scene(tiny_model), resolution=12)
    payload = json.loads(json.dumps(vol.payload(size=24)))  # what the browser gets
    assert payload["size"] == 24 and payload["resolution"] == 12
    back = BakedVolume.from_payload(payload)
    assert np.array_equal(back.alpha, vol.alpha) and np.array_equal(back.rgb, vol.rgb)
    np.testing.assert_allclose(back.rotation, vol.rotation)
    assert (back.azimuth, back.elevation, back.radius) == pytest.approx((30.0, 30.0, 3.0), abs=1e-4)
    with pytest.raises(ValueError, match="version"):
        BakedVolume.from_payload({**payload, "version": 99})
    with pytest.raises(ValueError, match="resolution"):
        BakedVolume.from_payload({**payload, "resolution": 13})


def test_quantised_density_keeps_opacity_and_drops_faint_cells(tiny_model):
    scene = _scene(tiny_model)
    vol = bake_volume(scene, resolution=10, min_alpha=0.0)
    b, cell = vol.bound, vol.cell
    axis = torch.linspace(-b + cell / 2, b - cell / 2, 10)
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    density, _ = scene.field_at(pts)
    alpha = 1 - np.exp(-density.numpy().reshape(10, 10, 10) * cell)
    decoded = 1 - np.exp(-vol.density() * cell)
    assert np.abs(decoded - alpha).max() < 2.5 * math.sqrt(alpha.max()) / 255 + 1e-6  # sqrt code: fine near 0
    floor = float(np.quantile(alpha, 0.5))
    sparse = bake_volume(scene, resolution=10, min_alpha=floor)
    assert (sparse.alpha[alpha < floor] == 0).all() and (sparse.rgb[sparse.alpha == 0] == 0).all()
    assert (sparse.alpha[alpha >= floor * 1.01] > 0).all()


def test_ray_background_is_the_models_own():
    torch.manual_seed(0)
    model = RenderDiffusion(tiny_config(background="ray")).eval()
    with torch.no_grad():
        model.renderer.ray_background.mlp[-1].weight.normal_(0, 1.0)  # not the constant it starts as
    o = torch.randn(50, 3) * 2
    d = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    with torch.no_grad():
        expected = model.renderer.background(o, d).numpy()
    got = background_colour(background_spec(model.renderer), o.numpy(), d.numpy())
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert expected.std() > 0.01
    constant = background_spec(RenderDiffusion(tiny_config(background="white")).renderer)
    assert constant == {"kind": "constant", "rgb": [1.0, 1.0, 1.0]}


def test_marcher_matches_the_exact_render_of_a_trained_scene():
    model = RenderDiffusion.from_pretrained(str(ROOT / "weights" / "clevr1-32"))
    ex = json.loads((ROOT / "assets" / "clevr1-32" / "examples.json").read_text())["examples"][0]
    image = prepare_image(ROOT / "assets" / "clevr1-32" / ex["file"], model.config.image_size)
    cam = orbit_cameras(ex["azimuth"], ex["elevation"], ex["radius"], math.radians(ex["fov"]))
    scene = reconstruct(model, image[None], cam, t_r=0).scenes[0]
    vol = bake_volume(scene, resolution=48)
    az, el, _ = scene.input_view
    for daz, del_ in ((0, 0), (120, 0), (200, 25)):
        exact = scene.view(az + daz, el + del_, size=32).rgb.astype(np.float32) / 255
        baked = render_baked(vol, az + daz, el + del_, 32)
        assert _psnr(baked, exact) > 38.0, (daz, del_)
    other = scene.view(az + 90, el, size=32).rgb.astype(np.float32) / 255
    assert _psnr(render_baked(vol, az, el, 32), other) < 33.0  # a wrong view is far off: the test can fail


def test_bake_refuses_a_resolution_out_of_range(tiny_model):
    with pytest.raises(ValueError, match="resolution"):
        bake_volume(_scene(tiny_model), resolution=4)
