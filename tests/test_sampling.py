"""Sampling loops (reconstruct, inpaint, generate) and the Scene they return: renders, meshes, videos."""

import math

import numpy as np
import pytest
import torch
from conftest import tiny_config

from rdiff import RenderDiffusion
from rdiff.cameras import orbit_cameras
from rdiff.sampling import (
    InpaintSettings,
    generate,
    inpaint,
    inpaint_steps,
    reconstruct,
    reconstruction_input,
    repaint_schedule,
    result_from_step,
)
from rdiff.scene import Scene


@pytest.fixture
def counted(tiny_model, monkeypatch):
    """The tiny model with a counter of denoiser calls."""
    calls = []
    forward = tiny_model.forward

    def counting(*args, **kwargs):
        calls.append(int(args[1][0]))  # the timestep
        return forward(*args, **kwargs)

    monkeypatch.setattr(tiny_model, "forward", counting)
    return tiny_model, calls


def _images(b=1, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    # 8-bit values, as a real input would be
    return ((torch.rand(b, 3, size, size, generator=g) * 255).round() / 255) * 2 - 1


def _cams(b=1):
    return orbit_cameras([30.0 + 50 * i for i in range(b)], [25.0] * b, [3.0] * b, 0.8)


# --------------------------------------------------------------------------------------------------
# step counts


def test_reconstruct_at_zero_is_one_pass(counted):
    model, calls = counted
    result = reconstruct(model, _images(2), _cams(2), t_r=0, steps=10)
    assert calls == [0]
    assert result.images.shape == (2, 3, 16, 16) and len(result.scenes) == 2
    assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1


@pytest.mark.parametrize("t_r,steps,expected", [(50, 10, 10), (5, 10, 6), (99, 1, 1), (40, 3, 3)])
def test_reconstruct_step_counts(counted, t_r, steps, expected):
    model, calls = counted
    seen = []
    reconstruct(model, _images(), _cams(), t_r=t_r, steps=steps, progress=lambda i, n: seen.append((i, n)))
    assert len(calls) == expected
    assert calls[0] == t_r and calls == sorted(calls, reverse=True)
    assert seen == [(i + 1, expected) for i in range(expected)]


def test_generate_returns_n_scenes(counted):
    model, calls = counted
    result = generate(model, n=3, steps=7, seed=1)
    assert len(calls) == 7 and calls[0] == model.config.timesteps - 1
    assert result.images.shape == (3, 3, 16, 16) and len(result.scenes) == 3
    assert all(s.planes.shape == (3, 8, 16, 16) for s in result.scenes)
    with pytest.raises(ValueError):
        generate(model, n=0)


def test_seeds_make_results_deterministic(tiny_model):
    a = generate(tiny_model, n=2, steps=4, seed=3)
    b = generate(tiny_model, n=2, steps=4, seed=3)
    c = generate(tiny_model, n=2, steps=4, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.scenes[0].planes, b.scenes[0].planes)
    assert not torch.equal(a.images, c.images)
    r1 = reconstruct(tiny_model, _images(), _cams(), t_r=30, steps=3, seed=7)
    r2 = reconstruct(tiny_model, _images(), _cams(), t_r=30, steps=3, seed=7)
    r3 = reconstruct(tiny_model, _images(), _cams(), t_r=30, steps=3, seed=8)
    assert torch.equal(r1.images, r2.images) and not torch.equal(r1.images, r3.images)


def test_reconstruction_input_is_what_the_model_gets_first(tiny_model, monkeypatch):
    """The noise preview's x_{t_r} is the model's first input in reconstruct, for each seed."""
    seen = []
    forward = tiny_model.forward

    def capture(x, *args, **kwargs):
        seen.append(x.detach().clone())
        return forward(x, *args, **kwargs)

    monkeypatch.setattr(tiny_model, "forward", capture)
    for seed in (0, 5):
        seen.clear()
        reconstruct(tiny_model, _images(), _cams(), t_r=40, steps=3, seed=seed)
        preview = reconstruction_input(tiny_model, _images()[0], t_r=40, seed=seed)
        torch.testing.assert_close(preview, seen[0], rtol=0, atol=0)
    other = reconstruction_input(tiny_model, _images(), t_r=40, seed=6)
    assert not torch.allclose(other, seen[0])
    with pytest.raises(ValueError, match="images must be"):
        reconstruction_input(tiny_model, _images(size=8))


def test_reconstruct_rejects_bad_inputs(tiny_model):
    with pytest.raises(ValueError, match="images"):
        reconstruct(tiny_model, _images(size=8), _cams())
    with pytest.raises(ValueError, match="cameras"):
        reconstruct(tiny_model, _images(2), _cams(1))
    with pytest.raises(ValueError, match="timestep"):
        reconstruct(tiny_model, _images(), _cams(), t_r=tiny_model.config.timesteps)


# --------------------------------------------------------------------------------------------------
# inpainting


def _mask(b=1, size=16):
    m = torch.zeros(b, size, size)
    m[:, 4:12, 6:14] = 1.0
    return m


def test_inpaint_composite_keeps_known_pixels_exactly(tiny_model):
    images, masks = _images(2, seed=1), _mask(2)
    result = inpaint(tiny_model, images, masks, _cams(2), InpaintSettings(steps=4), seed=0)
    known = (masks == 0)[:, None].expand(-1, 3, -1, -1)
    assert torch.equal(result.composites[known], ((images + 1) / 2)[known])
    # the masked pixels are filled in by the model, not copied
    assert not torch.allclose(result.composites[~known], ((images + 1) / 2)[~known], atol=0.05)


def _render(scene) -> torch.Tensor:
    return torch.from_numpy(scene.render(scene.camera)[0].rgb).permute(2, 0, 1).float() / 255


@pytest.mark.parametrize("harmonize", [0, None])
def test_inpaint_result_is_the_render_of_the_final_scene(tiny_model, harmonize):
    """images: what the final triplane looks like from the input camera (not the pasted-back composite)."""
    images, masks = _images(2, seed=1), _mask(2)
    result = inpaint(tiny_model, images, masks, _cams(2), InpaintSettings(steps=3, harmonize_t_r=harmonize), seed=0)
    known = (masks == 0)[:, None].expand(-1, 3, -1, -1)
    for i, scene in enumerate(result.scenes):
        assert (result.images[i] - _render(scene)).abs().max() < 3 / 255
    # an untrained model's scene does not reproduce the known pixels: the result shows that
    assert not torch.allclose(result.images[known], ((images + 1) / 2)[known], atol=0.05)


def test_an_early_stop_gives_the_scene_of_that_step(tiny_model):
    """A caller stopping the loop (the app's Stop): images render the triplane of that step; the composite
    still has every known pixel, which is why it is only an extra."""
    images, masks = _images(seed=2), _mask()
    loop = inpaint_steps(tiny_model, images, masks, _cams(), InpaintSettings(steps=6), seed=0)
    first = next(loop)
    loop.close()
    result = result_from_step(tiny_model, first, _cams())
    known = (masks == 0)[:, None].expand(-1, 3, -1, -1)
    assert torch.equal(result.composites[known], ((images + 1) / 2)[known])
    assert (result.images[0] - _render(result.scenes[0])).abs().max() < 3 / 255
    assert torch.equal(result.scenes[0].planes, first.planes[0])


def test_reconstruct_and_generate_have_no_composite(tiny_model):
    assert reconstruct(tiny_model, _images(), _cams(), t_r=0).composites is None
    assert generate(tiny_model, n=1, steps=2).composites is None


@pytest.mark.parametrize("resample", [1, 3])
def test_repaint_resampling_multiplies_model_calls(counted, resample):
    model, calls = counted
    steps = 5
    settings = InpaintSettings(steps=steps, jump_n_sample=resample, harmonize_t_r=None)
    inpaint(model, _images(), _mask(), _cams(), settings)
    # every step but the last (which goes straight to x0) is repeated `resample` times
    assert len(calls) == (steps - 1) * resample + 1 == settings.model_calls
    loop = inpaint_steps(model, _images(), _mask(), _cams(), settings)
    assert [s.total for s in loop][-1] == (steps - 1) * resample + 1


def test_harmonising_reconstruction_adds_its_steps_and_sets_the_final_scene(counted):
    model, calls = counted
    plain = InpaintSettings(steps=4, harmonize_t_r=None)
    fitted = InpaintSettings(steps=4, harmonize_t_r=20, harmonize_steps=3)
    steps = list(inpaint_steps(model, _images(), _mask(), _cams(), fitted, seed=0))
    assert [s.index for s in steps] == list(range(1, 4 + 3 + 1)) and {s.total for s in steps} == {7}
    assert [s.t for s in steps[-3:]] == [20, 10, 0]
    before = list(inpaint_steps(model, _images(), _mask(), _cams(), plain, seed=0))
    torch.testing.assert_close(steps[3].x0, before[-1].x0)  # same sampling, then the reconstruction
    result = inpaint(model, _images(), _mask(), _cams(), fitted, seed=0)
    last = steps[-1].planes[0]
    torch.testing.assert_close(result.scenes[0].planes.to(last), last)


@pytest.mark.parametrize("jump_length,jump_n_sample", [(1, 1), (1, 3), (3, 2), (5, 4)])
def test_repaint_schedule_time_travel(jump_length, jump_n_sample):
    n = 10
    path = repaint_schedule(n, jump_length, jump_n_sample)
    assert path[0] == 0 and path[-1] == n
    assert all(abs(b - a) == 1 for a, b in zip(path, path[1:]))
    downs = sum(b > a for a, b in zip(path, path[1:]))
    jumps = len(range(jump_length, n, jump_length)) * (jump_n_sample - 1)
    assert downs == n + jumps * jump_length
    assert min(path) >= 0 and max(path) <= n
    if jump_n_sample == 1:
        assert path == list(range(n + 1))


def test_inpaint_mask_shape_checks(tiny_model):
    with pytest.raises(ValueError, match="mask shape"):
        inpaint(tiny_model, _images(), _mask(size=8), _cams(), InpaintSettings(steps=2))
    with pytest.raises(ValueError, match="mask shape"):
        inpaint(tiny_model, _images(), _mask(b=2), _cams(), InpaintSettings(steps=2))
    with pytest.raises(ValueError, match="jump_n_sample"):
        InpaintSettings(steps=2, jump_n_sample=0)
    # a single (M, M) mask is accepted for a single image
    result = inpaint(tiny_model, _images(), _mask()[0], _cams(), InpaintSettings(steps=2))
    assert result.images.shape == (1, 3, 16, 16)


# --------------------------------------------------------------------------------------------------
# scenes: rendering


def test_scene_render_from_input_camera_reproduces_image(tiny_model):
    cams = _cams(2)
    result = reconstruct(tiny_model, _images(2, seed=2), cams, t_r=0)
    for i, scene in enumerate(result.scenes):
        view = scene.render(cams[i])[0]
        assert view.rgb.dtype == np.uint8 and view.rgb.shape == (16, 16, 3)
        expected = result.images[i].permute(1, 2, 0).numpy()
        assert np.abs(view.rgb / 255.0 - expected).max() <= 2 / 255
        assert view.depth.shape == (16, 16) and view.opacity.shape == (16, 16)


def test_orbit_first_view_is_input_view(tiny_model):
    cams = _cams(1)
    result = reconstruct(tiny_model, _images(1, seed=3), cams, t_r=0)
    scene = result.scenes[0]
    views = scene.orbit(5, batch=2)
    assert len(views) == 5
    expected = result.images[0].permute(1, 2, 0).numpy()
    assert np.abs(views[0].rgb / 255.0 - expected).max() <= 2 / 255
    assert any(np.abs(v.rgb.astype(int) - views[0].rgb.astype(int)).max() > 2 for v in views[1:])
    az, el, r = scene.input_view
    assert az == pytest.approx(30.0, abs=1e-3) and el == pytest.approx(25.0, abs=1e-3) and r == pytest.approx(3.0)
    big = scene.view(az, el, size=24)
    assert big.rgb.shape == (24, 24, 3)
    for bad in (0, -3, 5000):
        with pytest.raises(ValueError, match="render size"):
            scene.render(cams, size=bad)


# --------------------------------------------------------------------------------------------------
# scenes: meshes


def blob_scene(centre=(0.3, 0.0, 0.0), triplane_rotation=None, empty=False):
    """A scene whose field is a density blob: decoder wired so density grows with the plane features."""
    torch.manual_seed(0)
    model = RenderDiffusion(tiny_config()).eval()
    dec = model.field.decoder
    with torch.no_grad():
        for p in dec.parameters():
            p.zero_()
        dec.hidden[0].weight[0, 0] = 1.0  # h0 = silu(feature 0)
        dec.out.weight[0, 0] = 20.0
        silu2 = 2.0 * torch.sigmoid(torch.tensor(2.0))
        dec.out.bias[0] = -20.0 * silu2 + 1.0  # density = softplus(20 (silu(f) - silu(2)))
        dec.out.bias[1:] = torch.tensor([1.0, -1.0, 0.0])  # a constant colour
    n = model.config.triplane_size
    c = (torch.arange(n) + 0.5) / n * 2 - 1
    v, u = torch.meshgrid(c, c, indexing="ij")
    planes = torch.zeros(3, model.config.triplane_channels, n, n)
    if not empty:
        for k, (a, b) in enumerate([(0, 1), (0, 2), (1, 2)]):
            planes[k, 0] = torch.exp(-((u - centre[a]) ** 2 + (v - centre[b]) ** 2) / (2 * 0.35**2))
    return Scene(model, planes, orbit_cameras(30.0, 25.0, 3.0, 0.8), triplane_rotation)


def test_mesh_of_a_density_blob():
    scene = blob_scene()
    mesh = scene.mesh(resolution=32)
    assert len(mesh.vertices) > 100 and len(mesh.faces) > 100
    assert mesh.is_watertight
    assert mesh.volume > 0  # faces wound so normals point out of the object
    centroid = mesh.vertices.mean(0)
    np.testing.assert_allclose(centroid, [0.3, 0.0, 0.0], atol=0.05)
    extent = mesh.vertices.max(0) - mesh.vertices.min(0)
    assert bool((extent > 0.2).all() and (extent < 1.2).all())
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3]
    expected = 255 * (1 / (1 + np.exp(-np.array([1.0, -1.0, 0.0]))) * 1.002 - 0.001)
    assert np.abs(colours - expected).max() <= 2


def test_mesh_is_placed_in_world_with_the_scene_frame():
    quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # world-from-triplane, +90 deg about z
    mesh = blob_scene(triplane_rotation=quarter).mesh(resolution=32)
    np.testing.assert_allclose(mesh.vertices.mean(0), [0.0, 0.3, 0.0], atol=0.05)


@pytest.mark.parametrize("suffix", [".glb", ".obj", ".ply"])
def test_mesh_export_formats(tmp_path, suffix):
    import trimesh

    scene = blob_scene()
    path = scene.export_mesh(tmp_path / f"blob{suffix}", resolution=24)
    assert path.is_file() and path.stat().st_size > 0
    loaded = trimesh.load(path, force="mesh", process=False)
    ref = scene.mesh(resolution=24)
    assert len(loaded.faces) == len(ref.faces)
    np.testing.assert_allclose(loaded.bounds, ref.bounds, atol=1e-4)


def test_mesh_without_surface_is_a_clear_error(tmp_path):
    scene = blob_scene(empty=True)
    with pytest.raises(ValueError, match="no surface"):
        scene.mesh(resolution=16)
    with pytest.raises(ValueError, match="no surface"):
        scene.export_mesh(tmp_path / "empty.glb", resolution=16)
    with pytest.raises(ValueError, match="mesh format"):
        blob_scene().export_mesh(tmp_path / "blob.stl")
    with pytest.raises(ValueError):
        scene.density_grid(resolution=1)


def test_density_grid_axes():
    density, rgb = blob_scene(centre=(0.5, -0.25, 0.0)).density_grid(resolution=17)
    assert density.shape == (17, 17, 17) and rgb.shape == (17, 17, 17, 3)
    i, j, k = np.unravel_index(np.argmax(density), density.shape)
    axis = np.linspace(-1, 1, 17)
    assert (axis[i], axis[j], axis[k]) == pytest.approx((0.5, -0.25, 0.0), abs=0.13)


# --------------------------------------------------------------------------------------------------
# videos


def test_save_video_writes_a_readable_mp4(tmp_path, tiny_model):
    import imageio_ffmpeg

    scene = reconstruct(tiny_model, _images(1, seed=4), _cams(1), t_r=0).scenes[0]
    path = scene.save_video(tmp_path / "orbit.mp4", n=6, fps=6, upscale=64)
    assert path.is_file()
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = list(reader)
    assert tuple(meta["size"]) == (64, 64)
    assert len(frames) == 6
    assert all(len(f) == 64 * 64 * 3 for f in frames)
    assert math.isclose(meta["fps"], 6.0, rel_tol=0.01)


def test_scene_survives_copy_and_pickle_after_rendering(tiny_model):
    import copy
    import pickle

    cams = _cams(1)
    scene = reconstruct(tiny_model, _images(1, seed=5), cams, t_r=0).scenes[0]
    first = scene.render(cams)[0].rgb  # prepares and caches the lookup table
    for clone in (copy.deepcopy(scene), pickle.loads(pickle.dumps(scene))):
        assert np.array_equal(clone.render(cams)[0].rgb, first)


def test_one_scene_renders_correctly_from_several_threads_at_once():
    """The app re-renders a session's cached Scene from worker threads: concurrent renders must not mix."""
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    model = RenderDiffusion(tiny_config(decoder_layers=2, coarse_samples=24, fine_samples=24)).eval()
    planes = torch.randn(3, 8, 16, 16, generator=torch.Generator().manual_seed(4)) * 2.0
    scene = Scene(model, planes, orbit_cameras(30.0, 25.0, 3.0, 0.8))
    views = [(az, 20.0) for az in (0.0, 90.0, 180.0, 270.0)]
    expected = [scene.view(az, el, size=40).rgb for az, el in views]
    assert all(np.abs(expected[0].astype(int) - e.astype(int)).max() > 8 for e in expected[1:])  # distinct images

    def render(i: int) -> np.ndarray:
        az, el = views[i % len(views)]
        return scene.view(az, el, size=40).rgb

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(render, range(32)))
    for i, rgb in enumerate(got):
        assert np.array_equal(rgb, expected[i % len(views)]), f"render {i} differs from its sequential render"


def test_fill_start_begins_part_way_down_from_the_2d_fill(counted):
    model, calls = counted
    settings = InpaintSettings(steps=5, fill_start=0.3, harmonize_t_r=None)
    steps = list(inpaint_steps(model, _images(), _mask(), _cams(), settings, seed=0))
    assert steps[0].t == round(0.3 * model.diffusion.timesteps) and steps[-1].t == 0
    # the starting x_t is the smooth fill (not noise) plus a little noise: close to the image outside the hole
    x_t, images = steps[0].x_t, _images()
    known = (_mask() == 0)[:, None].expand_as(images)
    ab = float(model.diffusion.alpha_bar[steps[0].t])
    expected = ab**0.5 * images
    assert (x_t - expected)[known].std() < 1.1 * (1 - ab) ** 0.5
    with pytest.raises(ValueError, match="fill_start"):
        InpaintSettings(fill_start=1.5)


def test_smooth_fill_only_changes_the_hole():
    from rdiff.sampling import smooth_fill

    images = _images()
    fill = _mask()[:, None]
    out = smooth_fill(images, fill)
    assert torch.equal(out[fill.expand_as(out) == 0], images[fill.expand_as(images) == 0])
    assert not torch.equal(out, images)
