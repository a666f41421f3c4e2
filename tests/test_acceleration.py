"""The accelerated renderer (rdiff.acceleration) against the exact inference path.

On a trained scene (the shipped clevr1-32 model's reconstruction of a committed example image, rendered at 64x64)
and on an analytic opaque scene (where early ray termination does the work).
"""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rdiff.acceleration import (
    NEVER,
    DensityBoundGrid,
    SceneAccelerator,
    skippable,
)
from rdiff.cameras import orbit_cameras, to_triplane_frame
from rdiff.renderer import FieldSample, VolumeRenderer
from rdiff.scene import Scene

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights" / "clevr1-32"
ASSETS = ROOT / "assets" / "clevr1-32"
SIZE = 64  # the 32x32 model's scene rendered at 64x64, as the server does
VIEWS = [(30.0, 30.0), (120.0, 35.0), (220.0, 10.0), (300.0, 60.0), (0.0, -20.0)]


class Counting:
    """A field wrapper that counts the points it is asked for (independently of the accelerator's stats)."""

    def __init__(self, field) -> None:
        self.field, self.device, self.points = field, getattr(field, "device", torch.device("cpu")), 0

    def __call__(self, points):
        self.points += points.shape[0] * points.shape[1]
        return self.field(points)


@pytest.fixture(scope="module")
def trained():
    """(model, planes, world-from-triplane rotation) of clevr1-32's reconstruction of the red rubber sphere example."""
    from rdiff.model import RenderDiffusion
    from rdiff.preprocess import prepare_image
    from rdiff.sampling import reconstruct

    torch.set_num_threads(1)
    model = RenderDiffusion.from_pretrained(WEIGHTS).eval()
    ex = json.loads((ASSETS / "examples.json").read_text())["examples"][0]
    image = prepare_image(ASSETS / ex["file"], model.config.image_size)
    cam = orbit_cameras(ex["azimuth"], ex["elevation"], ex["radius"], math.radians(ex["fov"]))
    scene = reconstruct(model, image[None], cam, t_r=0, steps=1).scenes[0]
    return model, scene


def _rays(cams, rotation, size=SIZE):
    o, d = to_triplane_frame(cams, rotation).pixel_rays(size, size)
    return o.reshape(len(cams), -1, 3), d.reshape(len(cams), -1, 3)


def _to8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round()


def test_accelerated_render_matches_exact_path_on_a_trained_scene(trained):
    model, scene = trained
    with torch.inference_mode():
        field = model.inference_field(scene.planes[None])
        counted = Counting(field)
        acc = SceneAccelerator(model.renderer, counted, max_fraction=None)  # always accelerated
        grid_points = counted.points
        assert grid_points == (acc.grid.resolution + 1) ** 3  # the grid: one evaluation per cell corner
        for az, el in VIEWS:
            o, d = _rays(orbit_cameras(az, el, 3.0, math.radians(45)), scene.triplane_rotation)
            exact = model.renderer.render_inference(field, o, d)
            counted.points = 0
            fast = acc.render(o, d)
            stats = acc.last_stats
            # fewer field evaluations, counted at the field
            assert counted.points == stats.points_evaluated
            assert stats.points_exact == stats.rays_hit * (model.config.coarse_samples + model.config.fine_samples)
            # (this model's scenes are fog: little can be skipped; the analytic opaque scene below skips most)
            assert stats.points_evaluated < stats.points_exact, (az, el, stats.fraction)
            # 8-bit images: within 1/255 on >= 99.9% of pixels (here: every pixel, and in float too)
            diff8 = (_to8(fast.rgb) - _to8(exact.rgb)).abs().amax(-1)
            assert float((diff8 <= 1).float().mean()) >= 0.999
            assert float((fast.rgb - exact.rgb).abs().max()) <= 1 / 255
            # opacity within what the skipping allows, depth where there is something to see
            assert float((fast.opacity - exact.opacity).abs().max()) <= acc.max_error
            seen = exact.opacity > 0.5
            assert bool(seen.any())
            assert float((fast.depth - exact.depth)[seen].abs().max()) < 0.01
            misses = exact.opacity == 0
            torch.testing.assert_close(fast.rgb[misses], exact.rgb[misses], atol=0, rtol=0)  # the background


def test_without_skipping_the_accelerator_is_the_exact_path(trained):
    """budget = 0 and epsilon = 0: every sample evaluated, at the exact path's positions."""
    model, scene = trained
    with torch.inference_mode():
        field = model.inference_field(scene.planes[None])
        acc = SceneAccelerator(model.renderer, field, budget=0.0, epsilon=0.0, max_fraction=None)
        o, d = _rays(orbit_cameras([45.0, 200.0], [35.0, 15.0], 3.0, math.radians(45)), scene.triplane_rotation)
        exact = model.renderer.render_inference(field, o, d)
        fast = acc.render(o, d)
    assert acc.last_stats.points_evaluated == acc.last_stats.points_exact
    torch.testing.assert_close(fast.rgb, exact.rgb, atol=2e-6, rtol=0)
    torch.testing.assert_close(fast.opacity, exact.opacity, atol=2e-6, rtol=0)
    torch.testing.assert_close(fast.depth, exact.depth, atol=2e-5, rtol=0)


def test_renders_take_the_exact_path_where_skipping_does_not_pay(trained):
    """A probe render at build time decides, once per scene, whether renders are accelerated."""
    model, scene = trained
    with torch.inference_mode():
        field = model.inference_field(scene.planes[None])
        off = SceneAccelerator(model.renderer, field, max_fraction=0.0)  # nothing pays
        assert 0.0 < off.probe_fraction < 1.0 and not off.enabled
        o, d = _rays(orbit_cameras(45.0, 35.0, 3.0, math.radians(45)), scene.triplane_rotation)
        exact = model.renderer.render_inference(field, o, d)
        for _ in range(2):
            out = off.render(o, d)
            assert off.last_stats.exact_path
            assert off.last_stats.points_evaluated == off.last_stats.points_exact > 0
            torch.testing.assert_close(out.rgb, exact.rgb, atol=0, rtol=0)  # the exact path itself
            torch.testing.assert_close(out.depth, exact.depth, atol=0, rtol=0)
        on = SceneAccelerator(model.renderer, field, grid=off.grid, max_fraction=1.0)
        assert on.enabled and on.probe_fraction == off.probe_fraction
        on.render(o, d)
        assert not on.last_stats.exact_path and on.last_stats.points_evaluated < on.last_stats.points_exact


def test_scene_renders_through_the_accelerator_behind_one_switch(trained):
    model, scene = trained
    fast = Scene(model, scene.planes, scene.camera, scene.triplane_rotation, acceleration="skip")
    exact = Scene(model, scene.planes, scene.camera, scene.triplane_rotation, acceleration="exact")
    assert Scene(model, scene.planes, scene.camera, scene.triplane_rotation).acceleration == "exact"  # opt-in
    cams = orbit_cameras([45.0, 160.0, 280.0], [35.0, 20.0, 50.0], 3.0, float(scene.camera.fov_x[0]))
    fast.render(cams[:1], 8)
    assert fast._accelerator is not None and exact._accelerator is None
    # this scene's probe finds skipping does not pay (its renders then take the exact path): accelerate anyway
    probed = fast._accelerator
    assert probed.probe_fraction > probed.max_fraction and not probed.enabled
    fast._accelerator = SceneAccelerator(model.renderer, fast._field, grid=probed.grid, max_fraction=None)
    views_fast, views_exact = fast.render(cams, SIZE), exact.render(cams, SIZE)
    assert fast._accelerator.last_stats.fraction < 1.0
    for a, b in zip(views_fast, views_exact):
        d8 = np.abs(a.rgb.astype(int) - b.rgb.astype(int)).max(-1)
        assert (d8 <= 1).mean() >= 0.999
        assert np.abs(a.opacity - b.opacity).max() <= fast._accelerator.max_error
    # the exact switch really is the exact inference path
    with torch.inference_mode():
        rotations = scene.triplane_rotation[None].expand(len(cams), 3, 3)
        ref = model.render_world(scene.planes[None].expand(len(cams), -1, -1, -1, -1), rotations, cams, SIZE, SIZE,
                                 field=model.inference_field(scene.planes[None]))
    np.testing.assert_array_equal(views_exact[0].rgb, (ref.rgb[0].clamp(0, 1) * 255).round().byte()
                                  .permute(1, 2, 0).numpy())
    # copies drop the prepared field and accelerator and rebuild them (here: probed again, so the exact path)
    clone = copy.deepcopy(fast)
    assert clone._accelerator is None and clone.acceleration == "skip"
    np.testing.assert_array_equal(clone.view(45.0, 35.0, size=SIZE).rgb, exact.view(45.0, 35.0, size=SIZE).rgb)
    assert clone._accelerator is not None and not clone._accelerator.enabled


# --------------------------------------------------------------------------------------------------
# an analytic opaque scene: early ray termination, a per-ray background


def _opaque_ball(points):
    """A dense ball of radius 0.5 (density 40, soft edge), coloured by position, in faint haze."""
    r = points.norm(dim=-1)
    density = 40.0 * torch.sigmoid((0.5 - r) / 0.02) + 1e-6
    return FieldSample(density, (points.clamp(-1, 1) + 1) / 2)


def test_early_termination_on_an_opaque_scene_with_a_per_ray_background():
    torch.manual_seed(0)
    renderer = VolumeRenderer(32, 32, background="ray", background_init=(0.3, 0.5, 0.7))
    with torch.no_grad():
        for p in renderer.ray_background.parameters():
            p.normal_(0, 0.5)  # a background that really depends on the ray
    cams = orbit_cameras([20.0, 140.0], [25.0, -10.0], [2.5, 2.2], 0.8)
    o, d = _rays(cams, torch.eye(3), 48)
    field = Counting(_opaque_ball)
    with torch.inference_mode():
        exact = renderer.render_inference(_opaque_ball, o, d)
        acc = SceneAccelerator(renderer, field)
        field.points = 0
        fast = acc.render(o, d)
    hit_ball = exact.opacity > 0.999
    assert 0.1 < float(hit_ball.float().mean()) < 0.6
    stats = acc.last_stats
    assert field.points == stats.points_evaluated < 0.6 * stats.points_exact
    assert float((fast.rgb - exact.rgb).abs().max()) <= 1 / 255
    assert float((fast.opacity - exact.opacity).abs().max()) <= acc.max_error
    assert float((fast.depth - exact.depth)[hit_ball].abs().max()) < 1e-3
    with torch.no_grad():
        bg = renderer.background(o, d)
    assert float((bg[0, 0] - bg[0, -1]).abs().max()) > 0.05  # the background differs between rays
    empty = exact.opacity < 1e-3
    torch.testing.assert_close(fast.rgb[empty], exact.rgb[empty], atol=1e-3, rtol=0)


def test_skippable_stays_within_the_budget():
    g = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 40, (64, 48), generator=g)
    levels[:, ::7] = NEVER
    deltas = torch.rand(64, 48, generator=g) * 0.1
    table = DensityBoundGrid(torch.zeros(2, 2, 2), 1.0).level_density
    for budget in (0.0, 1e-4, 2e-3, 1e-1):
        skip = skippable(levels, deltas, table, budget)
        assert not bool(skip[:, ::7].any())  # never-skipped cells
        depth = (table[levels] * deltas * skip).sum(1)
        assert float(depth.max()) <= budget * (1 + 1e-5)
        # whole levels, lowest first: a skipped sample's level is below every kept sample's
        kept_min = torch.where(skip, NEVER + 1, levels).amin(1)
        skipped_max = torch.where(skip, levels, -1).amax(1)
        assert bool((skipped_max < kept_min).all())
    exclude = torch.zeros_like(skip)
    exclude[:, :10] = True
    assert not bool(skippable(levels, deltas, table, 1e-1, exclude)[:, :10].any())


def test_density_bound_grid_bounds_the_corners_and_dilates():
    density = torch.zeros(9, 9, 9)
    density[4, 4, 4] = 1.0
    grid = DensityBoundGrid.from_corner_densities(density, 1.0, dilation=1, safety=2.0)
    assert grid.resolution == 8
    near = torch.tensor([[0.01, 0.01, 0.01], [-0.2, 0.3, 0.1], [0.45, 0.45, 0.45]])
    far = torch.tensor([[0.9, 0.9, 0.9], [-0.9, 0.0, 0.0]])
    assert bool((grid(near) >= 2.0).all())  # cells touching the corner, and one cell further
    assert bool((grid(far) <= 1e-6).all())
    assert grid.fraction_below(1e-3) == pytest.approx(1 - 4**3 / 8**3)


def test_rays_that_miss_and_renderers_without_importance_samples():
    renderer = VolumeRenderer(40, 0, background="white")  # coarse samples only
    cams = orbit_cameras(30.0, 20.0, 2.5, 0.8)
    o, d = _rays(cams, torch.eye(3), 32)
    field = Counting(_opaque_ball)
    with torch.inference_mode():
        acc = SceneAccelerator(renderer, field, max_fraction=None)
        exact = renderer.render_inference(_opaque_ball, o, d)
        fast = acc.render(o, d)
        assert float((fast.rgb - exact.rgb).abs().max()) <= 1 / 255
        assert acc.last_stats.points_evaluated < 0.6 * acc.last_stats.points_exact
        field.points = 0
        away = acc.render(o, -d)  # every ray leaves the box behind it
    assert field.points == 0 and acc.last_stats.rays_hit == 0
    assert bool((away.rgb == 1.0).all()) and bool((away.opacity == 0).all()) and bool((away.depth == 0).all())
