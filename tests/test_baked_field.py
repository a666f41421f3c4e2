"""The baked field (rdiff.baked_field) against the exact inference path.

On trained scenes: the shipped clevr1-32 and chairs-64 models' reconstructions of committed example images, rendered
at 64x64 as the server does; on random triplanes for the grid's alignment and the exact-cell fallback.
"""

import copy
import json
import math
import pickle
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

import rdiff.scene as scene_module
from rdiff import RenderDiffusion
from rdiff.baked_field import BakedField, bake_field
from rdiff.cameras import orbit_cameras
from rdiff.scene import Scene

ROOT = Path(__file__).resolve().parent.parent
SIZE = 64
VIEWS = [(30.0, 30.0), (120.0, 35.0), (220.0, 10.0), (300.0, 60.0), (0.0, -20.0)]


def _reconstruction(name: str):
    """(model, scene) of the shipped model ``name``'s reconstruction of its first example, one denoising step."""
    from rdiff.model import RenderDiffusion
    from rdiff.preprocess import prepare_image
    from rdiff.sampling import reconstruct

    model = RenderDiffusion.from_pretrained(ROOT / "weights" / name).eval()
    assets = ROOT / "assets" / name
    ex = json.loads((assets / "examples.json").read_text())["examples"][0]
    image = prepare_image(assets / ex["file"], model.config.image_size)
    cam = orbit_cameras(ex["azimuth"], ex["elevation"], ex["radius"], math.radians(ex["fov"]))
    return model, reconstruct(model, image[None], cam, t_r=0, steps=1).scenes[0]


@pytest.fixture(scope="module")
def clevr():
    torch.set_num_threads(1)
    return _reconstruction("clevr1-32")


@pytest.fixture(scope="module")
def chairs():
    torch.set_num_threads(1)
    return _reconstruction("chairs-64")


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():  # inference fields (and so baked ones) refuse autograd
        yield


def _as(scene: Scene, acceleration: str) -> Scene:
    out = copy.copy(scene)  # (copies drop the caches: rebuilt on demand)
    out.set_acceleration(acceleration)
    return out


def _views(scene: Scene):
    return [scene.view(az, el, size=SIZE) for az, el in VIEWS]


def _compare(exact_views, baked_views):
    worst, within = 0, 1.0
    for e, b in zip(exact_views, baked_views):
        diff = (e.rgb.astype(int) - b.rgb.astype(int))
        worst = max(worst, int(abs(diff).max()))
        within = min(within, float((abs(diff).max(-1) <= 1).mean()))
    return worst, within


@pytest.mark.parametrize("name", ["clevr", "chairs"])
def test_baked_renders_match_the_exact_path_on_trained_scenes(name, request):
    _, scene = request.getfixturevalue(name)
    exact, baked = _as(scene, "exact"), _as(scene, "baked")
    exact_views, baked_views = _views(exact), _views(baked)
    field = baked.baked_field()
    assert isinstance(field, BakedField)  # the probes accepted the bake: these renders went through the table
    worst, within = _compare(exact_views, baked_views)
    assert within >= 0.999 and worst <= 2, (worst, within)
    # ... and most points really were interpolated, not handed to the exact field
    assert field.points_seen > 0 and field.points_exact / field.points_seen < 0.6
    if name == "chairs":
        assert field.points_exact / field.points_seen < 0.1  # a 64^2 triplane's field is smooth between knots


def test_knots_reproduce_the_field_exactly(clevr):
    """The grid is aligned: at its knots the table holds the decoder's raw outputs."""
    model, scene = clevr
    field = model.inference_field(scene.planes[None])
    baked = BakedField(field, subdivision=2, tolerance=float("inf"))
    assert not bool(baked.exact_cells.any())
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, baked.knots - 1, (500, 3), generator=g).float()  # (x, y, z) knot indices, not the last
    points = (idx * baked.spacing - baked.extent)[None]
    (bd, brgb), (fd, frgb) = baked(points), field(points)
    got, want = torch.cat([bd[..., None], brgb], -1), torch.cat([fd[..., None], frgb], -1)
    assert torch.allclose(got, want, atol=1e-4), float((got - want).abs().max())


def test_cells_marked_exact_are_evaluated_by_the_exact_field(clevr):
    model, scene = clevr
    field = model.inference_field(scene.planes[None])
    baked = BakedField(field, tolerance=float("inf"))
    g = torch.Generator().manual_seed(1)
    points = (torch.rand(1, 4000, 3, generator=g) * 2 - 1) * field.table.bound
    loose = baked(points)
    exact = field(points)
    assert float((loose.rgb - exact.rgb).abs().max()) > 1e-4  # interpolation differs somewhere ...
    baked.mark_exact(0.0)  # ... every cell whose raw outputs bend at all is now exact
    assert baked.exact_fraction > 0.5
    tight = baked(points)
    assert baked.points_exact > 0
    assert torch.allclose(tight.rgb, exact.rgb, atol=1e-5) and torch.allclose(tight.density, exact.density, atol=1e-4)


def test_a_looser_tolerance_marks_fewer_cells(clevr):
    model, scene = clevr
    baked = BakedField(model.inference_field(scene.planes[None]), tolerance=1e-2)
    loose = baked.exact_fraction
    baked.mark_exact(1e-4)
    assert baked.exact_fraction > loose and baked.tolerance == 1e-4


def test_bake_field_tightens_until_the_probe_agrees_or_gives_up(clevr):
    model, scene = clevr
    field = model.inference_field(scene.planes[None])
    seen = []

    def agrees_once_tight(fn):  # exact: 0; baked: 0 only once its tolerance has been tightened twice
        seen.append(getattr(fn, "tolerance", None))
        return torch.zeros(1) if fn is field or fn.tolerance < 1e-3 / 8 else torch.ones(1)

    baked = bake_field(field, agrees_once_tight, tolerance=1e-3)
    assert baked is not None and baked.tolerance == pytest.approx(1e-3 / 16)
    assert seen == [None, 1e-3, 1e-3 / 4, 1e-3 / 16]

    def never(fn):
        return torch.zeros(1) if fn is field else torch.ones(1)

    assert bake_field(field, never, attempts=2) is None


def test_baked_field_refuses_batches_and_coarse_grids(clevr):
    model, scene = clevr
    with pytest.raises(ValueError, match="one scene"):
        BakedField(model.inference_field(torch.stack([scene.planes, scene.planes.flip(-1)])))
    shared = BakedField(model.inference_field(scene.planes[None].expand(2, -1, -1, -1, -1)), tolerance=0.0)
    points = torch.rand(2, 50, 3) - 0.5  # one scene viewed twice (a batch of views sharing its planes) is fine
    assert torch.allclose(shared(points).rgb, shared.field(points).rgb, atol=1e-5)
    with pytest.raises(ValueError, match="subdivision"):
        BakedField(model.inference_field(scene.planes[None]), subdivision=1)


def test_scene_acceleration_switch(clevr, monkeypatch):
    model, scene = clevr
    with pytest.raises(ValueError, match="acceleration must be one of"):
        Scene(model, scene.planes, scene.camera, scene.triplane_rotation, acceleration="fast")
    baked = _as(scene, "baked")
    first = baked.baked_field()
    assert baked.baked_field() is first  # baked once, kept
    clone = pickle.loads(pickle.dumps(baked))
    assert clone._baked is None and clone.acceleration == "baked"  # the table is not pickled: rebuilt on demand
    # where the bake's probes fail, the scene renders exactly
    monkeypatch.setattr(scene_module, "bake_field", lambda field, probe: None)
    failing = _as(scene, "baked")
    view = failing.view(60.0, 25.0, size=32)
    assert failing.baked_field() is None and failing._bake_failed
    exact = _as(scene, "exact").view(60.0, 25.0, size=32)
    assert (view.rgb == exact.rgb).all()


def test_the_app_keeps_a_bounded_number_of_baked_scenes(clevr):
    from demo.results import BakedScenes

    _, scene = clevr
    scenes = [_as(scene, "exact") for _ in range(3)]
    kept = BakedScenes(max_scenes=2)
    for s in scenes:
        kept.add(s)
    scenes[1].view(45.0, 30.0, size=16)  # a render bakes it
    assert scenes[1]._baked is not None
    kept.add(scenes[1])  # shown again: now the most recent
    kept.add(_as(scene, "exact"))  # a fourth scene evicts the least recently shown (the third)
    assert len(kept) == 2
    assert [s.acceleration for s in scenes] == ["exact", "baked", "exact"]
    scenes[1].set_acceleration("exact")
    assert scenes[1]._baked is None  # the table is freed


def test_renders_during_a_bake_take_the_exact_path(clevr):
    _, scene = clevr
    baked = _as(scene, "baked")
    exact = _as(scene, "exact").view(75.0, 20.0, size=24)
    baked._bake_lock.acquire()  # as if another thread (the app's turntable) were baking this scene
    try:
        view = baked.view(75.0, 20.0, size=24)
        assert baked._baked is None and baked.baked_field(wait=False) is None
    finally:
        baked._bake_lock.release()
    assert (view.rgb == exact.rgb).all()
    assert baked.baked_field() is not None  # once free, the next render bakes it


def test_large_triplanes_are_not_baked():
    from rdiff.baked_field import MAX_TABLE_BYTES, table_bytes

    assert table_bytes(64) == 131**3 * 32 <= MAX_TABLE_BYTES < table_bytes(256)
    model = RenderDiffusion(tiny_config(triplane_size=256, triplane_channels=4)).eval()
    field = model.inference_field(torch.zeros(1, 3, 4, 256, 256))
    with pytest.raises(ValueError, match="render it exactly"):
        BakedField(field)
    assert bake_field(field, lambda fn: torch.zeros(1)) is None
