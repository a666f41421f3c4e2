"""Gaussian splat export: vanilla 3DGS .ply fields, baking from a scene's field, and the checking rasteriser."""

import math

import numpy as np
import pytest
import torch

from rdiff.cameras import orbit_cameras
from rdiff.sampling import reconstruct
from rdiff.splats import PLY_FIELDS, VIEWER_SCALE, Splats, bake_splats, read_splat_ply, render_splats, write_splat_ply


def _scene(model):
    image = torch.zeros(1, 3, 16, 16)
    return reconstruct(model, image, orbit_cameras(30.0, 30.0, 3.0, math.radians(45))).scenes[0]


def test_ply_has_the_vanilla_3dgs_fields_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    splats = Splats(rng.uniform(-1, 1, (50, 3)).astype(np.float32), rng.uniform(0, 1, (50, 3)).astype(np.float32),
                    rng.uniform(0.05, 0.95, 50).astype(np.float32), rng.uniform(0.01, 0.1, 50).astype(np.float32))
    path = write_splat_ply(splats, tmp_path / "s.ply")
    header = path.read_bytes().split(b"end_header\n")[0].decode()
    assert "element vertex 50" in header and "binary_little_endian" in header
    assert [ln.split()[2] for ln in header.splitlines() if ln.startswith("property")] == list(PLY_FIELDS)
    back = read_splat_ply(path)
    for name in ("means", "rgb", "opacity", "scale"):
        np.testing.assert_allclose(getattr(back, name), getattr(splats, name), rtol=1e-5, atol=1e-6)
    import trimesh  # another reader sees the same points

    cloud = trimesh.load(path)
    x, y, z = splats.means.T * VIEWER_SCALE  # stored with world +Z as the viewers' -Y (up), scaled
    np.testing.assert_allclose(np.asarray(cloud.vertices), np.stack([x, -z, y], -1), atol=1e-6)


def test_baked_splats_follow_the_field(tiny_model):
    scene = _scene(tiny_model)
    with torch.no_grad():
        tiny_model.field.decoder.out.bias[0] = 6.0  # dense everywhere: every cell gets a splat
    splats = bake_splats(scene, resolution=8, min_opacity=0.01)
    assert len(splats) == 8**3
    assert np.abs(splats.means @ scene.triplane_rotation.numpy()).max() <= 1.0  # inside the (triplane-frame) scene box
    assert ((splats.opacity > 0) & (splats.opacity < 1)).all() and (splats.rgb >= 0).all() and (splats.rgb <= 1).all()
    with torch.no_grad():
        tiny_model.field.decoder.out.bias[0] = -30.0  # empty
    with pytest.raises(ValueError, match="empty"):
        bake_splats(scene, resolution=8)


def test_rasteriser_puts_a_splat_where_the_camera_sees_it():
    cam = orbit_cameras(0.0, 0.0, 3.0, math.radians(40))  # on +x, looking at the origin
    one = Splats(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.6]], np.float32),
                 np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32),
                 np.array([0.99, 0.99], np.float32), np.array([0.2, 0.1], np.float32))
    img = render_splats(one, cam, 32, (0.0, 1.0, 0.0))
    assert img[16, 16, 0] > 0.9 and img[16, 16, 1] < 0.1  # red splat at the centre
    assert img[0, 0, 1] > 0.99  # background elsewhere
    rows = np.nonzero(img[..., 2] > 0.5)[0]
    assert rows.size and rows.mean() < 16  # +z is up in the image


def test_rasteriser_matches_a_per_pixel_reference():
    """Every pixel composites the splats within 3 sigma of it, nearest first, over its own background."""
    from rdiff.splats import CUTOFF_SIGMAS

    rng = np.random.default_rng(3)
    n, size = 40, 12
    splats = Splats(rng.uniform(-0.6, 0.6, (n, 3)).astype(np.float32), rng.uniform(0, 1, (n, 3)).astype(np.float32),
                    rng.uniform(0.2, 0.95, n).astype(np.float32), rng.uniform(0.03, 0.2, n).astype(np.float32))
    cam = orbit_cameras(35.0, 20.0, 2.5, math.radians(45))
    bg = rng.uniform(0, 1, (size * size, 3))
    img = render_splats(splats, cam, size, torch.from_numpy(bg))

    w2c = np.linalg.inv(cam.c2w[0].double().numpy())
    pts = splats.means.astype(np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    depth = -pts[:, 2]
    f = (size / 2) / math.tan(math.radians(45) / 2)
    u, v = f * pts[:, 0] / depth + size / 2, -f * pts[:, 1] / depth + size / 2
    sigma = f * splats.scale / depth
    ref = np.zeros((size, size, 3))
    for y in range(size):
        for x in range(size):
            t, c = 1.0, np.zeros(3)
            for i in np.argsort(depth):
                d2 = (x + 0.5 - u[i]) ** 2 + (y + 0.5 - v[i]) ** 2
                if depth[i] <= 1e-3 or d2 > (CUTOFF_SIGMAS * sigma[i]) ** 2:
                    continue
                a = min(splats.opacity[i] * math.exp(-0.5 * d2 / sigma[i] ** 2), 0.99)
                c += t * a * splats.rgb[i]
                t *= 1 - a
            ref[y, x] = c + t * bg[y * size + x]
    assert (ref != bg.reshape(size, size, 3)).any(axis=-1).mean() > 0.3  # the splats cover much of the image
    np.testing.assert_allclose(img, np.clip(ref, 0, 1), atol=1e-5)
