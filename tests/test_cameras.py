"""Camera geometry: spherical coordinates, look-at frames, rays, projection and view-aligned frames."""

import math

import pytest
import torch

from rdiff.cameras import (
    Cameras,
    look_at,
    orbit_cameras,
    position_to_spherical,
    spherical_to_position,
    to_triplane_frame,
    turntable,
    yaw_rotations,
)
from rdiff.renderer import VolumeRenderer


def _random_orbit(n=16, seed=0, fov=0.8):
    g = torch.Generator().manual_seed(seed)
    az = torch.rand(n, generator=g) * 360 - 180
    el = torch.rand(n, generator=g) * 160 - 80
    r = torch.rand(n, generator=g) * 3 + 1
    return orbit_cameras(az, el, r, fov), (az, el, r)


# --------------------------------------------------------------------------------------------------
# spherical coordinates


def test_spherical_round_trip():
    _, (az, el, r) = _random_orbit(64)
    az2, el2, r2 = position_to_spherical(spherical_to_position(az, el, r))
    torch.testing.assert_close(az2, az, atol=1e-3, rtol=0)
    torch.testing.assert_close(el2, el, atol=1e-3, rtol=0)
    torch.testing.assert_close(r2, r, atol=1e-5, rtol=1e-5)


def test_spherical_known_positions():
    # azimuth is measured about +Z from +X, elevation up from the xy plane
    pos = spherical_to_position(torch.tensor([0.0, 90.0, 180.0, 0.0]), torch.tensor([0.0, 0.0, 0.0, 90.0]), 2.0)
    expected = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [-2.0, 0, 0], [0, 0, 2.0]])
    torch.testing.assert_close(pos, expected, atol=1e-6, rtol=0)


def test_position_to_spherical_inverse_on_points():
    g = torch.Generator().manual_seed(1)
    p = torch.randn(100, 3, generator=g) * 2
    az, el, r = position_to_spherical(p)
    torch.testing.assert_close(spherical_to_position(az, el, r), p, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# camera-to-world matrices


def test_orbit_c2w_orthonormal_and_looking_at_origin():
    cams, (az, el, r) = _random_orbit(32)
    rot = cams.c2w[:, :3, :3]
    eye = torch.eye(3).expand_as(rot)
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(32), atol=1e-5, rtol=0)  # right-handed
    torch.testing.assert_close(cams.c2w[:, 3], torch.tensor([0.0, 0, 0, 1]).expand(32, 4))
    # the camera looks down its -Z axis, which points from the camera centre to the origin
    forward = -cams.c2w[:, :3, 2]
    to_origin = -cams.position / cams.position.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(forward, to_origin, atol=1e-5, rtol=0)
    torch.testing.assert_close(cams.position, spherical_to_position(az, el, r), atol=1e-5, rtol=1e-5)
    # image up (+Y) leans towards world +Z and the image x axis stays horizontal
    assert bool((cams.c2w[:, 2, 1] > 0).all())
    torch.testing.assert_close(cams.c2w[:, 2, 0], torch.zeros(32), atol=1e-5, rtol=0)


def test_look_at_arbitrary_target():
    eye = torch.tensor([[2.0, -1.0, 1.5]])
    target = torch.tensor([0.3, 0.2, -0.4])
    c2w = look_at(eye, target)
    forward = -c2w[0, :3, 2]
    expected = (target - eye[0]) / (target - eye[0]).norm()
    torch.testing.assert_close(forward, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(c2w[0, :3, 3], eye[0])


def test_look_at_straight_down_is_still_a_rotation():
    c2w = look_at(torch.tensor([[0.0, 0.0, 3.0]]))
    rot = c2w[0, :3, :3]
    torch.testing.assert_close(rot.T @ rot, torch.eye(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(-rot[:, 2], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)
    assert torch.isfinite(c2w).all()


def test_turntable_even_azimuths():
    cams = turntable(8, elevation_deg=20.0, radius=2.5, fov_x=0.7, start_azimuth_deg=10.0)
    az, el, r = position_to_spherical(cams.position)
    steps = torch.remainder(az.diff(), 360.0)
    torch.testing.assert_close(steps, torch.full((7,), 45.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(az[0], torch.tensor(10.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(el, torch.full((8,), 20.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(r, torch.full((8,), 2.5), atol=1e-5, rtol=0)


def test_focal_length():
    cams = orbit_cameras(0.0, 0.0, 2.0, math.pi / 2)  # 90 degrees: focal = width / 2
    torch.testing.assert_close(cams.focal(64), torch.tensor([32.0]))


# --------------------------------------------------------------------------------------------------
# rays and projection


def _point_line_distance(p, o, d):
    v = p - o
    return (v - (v * d).sum(-1, keepdim=True) * d).norm(dim=-1)


def test_centre_ray_hits_look_at_target():
    target = torch.tensor([0.4, -0.3, 0.2])
    eye = torch.tensor([[2.5, 1.0, 1.2]])
    cams = Cameras(look_at(eye, target), torch.tensor([0.9]))
    o, d = cams.pixel_rays(33, 33)  # odd: the middle pixel's centre is the principal point
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(1, 33, 33), atol=1e-6, rtol=0)
    centre = d[0, 16, 16]
    assert _point_line_distance(target, o[0, 16, 16], centre) < 1e-5
    assert float((target - eye[0]) @ centre) > 0  # in front of the camera
    torch.testing.assert_close(o[0], eye[0].expand(33, 33, 3))


def test_ray_layout_matches_image_axes():
    cams = orbit_cameras(0.0, 0.0, 3.0, 0.8)  # on +X looking at the origin: image right = +Y, image up = +Z
    _, d = cams.pixel_rays(8, 8)
    assert d[0, 0, -1, 1] > d[0, 0, 0, 1]  # moving right along a row goes towards +Y
    assert d[0, 0, 0, 2] > d[0, -1, 0, 2]  # the first row is the top of the image (+Z)
    # field of view: the edge rays of the left/right image borders span fov_x
    _, d = cams.pixel_rays(1, 2001)
    half = torch.atan2(d[0, 0, -1, 1], -d[0, 0, -1, 0])
    torch.testing.assert_close(2 * half, torch.tensor(0.8), atol=2e-3, rtol=0)


def test_project_points_on_pixel_ray_lands_on_that_pixel():
    cams, _ = _random_orbit(4, seed=3)
    h, w = 12, 20
    o, d = cams.pixel_rays(h, w)
    ts = torch.tensor([0.5, 1.0, 2.5, 4.0])
    pts = o[:, :, :, None, :] + d[:, :, :, None, :] * ts[:, None]  # (B, H, W, T, 3)
    uv = cams.project(pts.reshape(4, -1, 3), h, w).reshape(4, h, w, len(ts), 2)
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    expected = torch.stack([u, v], -1)[None, :, :, None].expand_as(uv)
    torch.testing.assert_close(uv, expected, atol=1e-3, rtol=0)


def test_project_origin_to_image_centre():
    cams, _ = _random_orbit(8, seed=4)
    uv = cams.project(torch.zeros(8, 1, 3), 30, 40)
    torch.testing.assert_close(uv[:, 0], torch.tensor([20.0, 15.0]).expand(8, 2), atol=1e-4, rtol=0)


def test_indexing_and_cat():
    cams, _ = _random_orbit(5)
    assert len(cams[1]) == 1 and len(cams[1:4]) == 3
    torch.testing.assert_close(cams[2].c2w[0], cams.c2w[2])
    both = Cameras.cat([cams[0:2], cams[2:5]])
    torch.testing.assert_close(both.c2w, cams.c2w)
    torch.testing.assert_close(both.fov_x, cams.fov_x)
    cond = cams.conditioning()
    assert cond.shape == (5, 13)
    torch.testing.assert_close(cond[:, -1], cams.fov_x)


# --------------------------------------------------------------------------------------------------
# view-aligned (yaw) frames


def test_yaw_rotations_are_rotations_about_z():
    cams, _ = _random_orbit(16, seed=5)
    rot = yaw_rotations(cams)
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3).expand(16, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(rot[:, 2], torch.tensor([0.0, 0, 1]).expand(16, 3))
    torch.testing.assert_close(rot[:, :, 2], torch.tensor([0.0, 0, 1]).expand(16, 3))


def test_to_frame_puts_camera_at_azimuth_zero():
    cams, (az, el, r) = _random_orbit(16, seed=6)
    local = to_triplane_frame(cams, yaw_rotations(cams))
    az2, el2, r2 = position_to_spherical(local.position)
    torch.testing.assert_close(az2, torch.zeros(16), atol=1e-3, rtol=0)
    torch.testing.assert_close(el2, el, atol=1e-3, rtol=0)
    torch.testing.assert_close(r2, r, atol=1e-5, rtol=1e-5)
    # still looking at the origin, still a rotation
    forward = -local.c2w[:, :3, 2]
    torch.testing.assert_close(forward, -local.position / r2[:, None], atol=1e-5, rtol=0)
    torch.testing.assert_close(local.fov_x, cams.fov_x)


def test_to_frame_transforms_rays_consistently():
    cams, _ = _random_orbit(3, seed=7)
    rotations = yaw_rotations(cams)
    local = to_triplane_frame(cams, rotations)
    o_w, d_w = cams.pixel_rays(6, 7)
    o_l, d_l = local.pixel_rays(6, 7)
    # world = R @ local for both ray origins and directions
    torch.testing.assert_close(torch.einsum("bij,bhwj->bhwi", rotations, o_l), o_w, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.einsum("bij,bhwj->bhwi", rotations, d_l), d_w, atol=1e-5, rtol=0)


def test_to_frame_single_rotation_broadcasts():
    cams, _ = _random_orbit(4, seed=8)
    c, s = math.cos(0.7), math.sin(0.7)
    rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    a = to_triplane_frame(cams, rot)
    b = to_triplane_frame(cams, rot[None].expand(4, 3, 3))
    torch.testing.assert_close(a.c2w, b.c2w)
    torch.testing.assert_close(a.position, cams.position @ rot, atol=1e-6, rtol=0)  # R^T p, row-vector form


def test_rendering_is_invariant_to_the_frame():
    """Rendering a world-space field from world cameras == rendering the rotated field from local cameras."""
    centre = torch.tensor([0.35, -0.2, 0.1])

    def world_field(p):
        d2 = ((p - centre) ** 2).sum(-1)
        density = 40.0 * torch.exp(-d2 / 0.03)
        rgb = torch.stack([0.5 + 0.5 * torch.tanh(3 * p[..., 0]), 0.5 + 0.5 * torch.tanh(3 * p[..., 1]),
                           torch.full_like(d2, 0.3)], -1)
        return density, rgb

    cams = orbit_cameras([40.0, 160.0], [25.0, 50.0], [2.8, 3.0], 0.8)
    rotations = yaw_rotations(cams)  # world-from-local

    def local_field(q):  # q in the triplane frames: world point = R q
        return world_field(torch.einsum("bij,bpj->bpi", rotations, q))

    renderer = VolumeRenderer(64, 64, background="black")
    o, d = cams.pixel_rays(12, 12)
    out_w = renderer(world_field, o.reshape(2, -1, 3), d.reshape(2, -1, 3))
    local = to_triplane_frame(cams, rotations)
    o, d = local.pixel_rays(12, 12)
    out_l = renderer(local_field, o.reshape(2, -1, 3), d.reshape(2, -1, 3))
    assert float(out_w.opacity.max()) > 0.5  # the blob is visible
    # the box is axis-aligned in each frame, so ray segments differ; the blob is well inside either way
    torch.testing.assert_close(out_l.rgb, out_w.rgb, atol=2e-3, rtol=0)
    torch.testing.assert_close(out_l.opacity, out_w.opacity, atol=2e-3, rtol=0)


# --------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("fov", [0.0, -0.5, math.pi, 4.0])
def test_fov_out_of_range(fov):
    with pytest.raises(ValueError, match="fov"):
        Cameras(torch.eye(4)[None], torch.tensor([fov]))


def test_bad_shapes():
    with pytest.raises(ValueError, match="c2w"):
        Cameras(torch.eye(4)[:3][None], torch.tensor([0.8]))
    with pytest.raises(ValueError, match="fov_x"):
        Cameras(torch.eye(4).expand(3, 4, 4), torch.tensor([0.8, 0.8]))
    with pytest.raises(ValueError):
        turntable(0, 20.0, 2.0, 0.8)


def test_single_matrix_and_scalar_fov_are_promoted():
    cams = Cameras(torch.eye(4), 0.5)
    assert cams.c2w.shape == (1, 4, 4) and cams.fov_x.shape == (1,)
    cams = Cameras(torch.eye(4).expand(3, 4, 4), torch.tensor(0.5))
    assert cams.fov_x.shape == (3,)
