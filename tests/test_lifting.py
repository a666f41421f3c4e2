"""Geometry-aware encoder options: projective lifting onto the triplane and Plücker ray embeddings."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from rdiff import RenderDiffusion
from rdiff.cameras import orbit_cameras
from rdiff.lifting import ProjectiveLift, image_grid, plane_points, plucker_rays, sample_image
from rdiff.training.loop import load_init_weights
from rdiff.triplane import sample_triplane


def test_plane_points_sit_on_the_texels_they_belong_to():
    n, k = 6, 3
    points = plane_points(n, k, bound=1.0)
    planes = torch.randn(1, 3, 2, n, n)
    for plane in range(3):
        only = torch.zeros_like(planes)
        only[:, plane] = planes[:, plane]
        got = sample_triplane(only, points[plane].reshape(1, -1, 3)).reshape(n, n, k, 2)
        want = planes[0, plane].permute(1, 2, 0)[:, :, None, :].expand(n, n, k, 2)
        torch.testing.assert_close(got, want)
    depths = points[0, 0, 0, :, 2]  # the xy plane's points step through z
    torch.testing.assert_close(depths, torch.tensor([-2 / 3, 0.0, 2 / 3]))


def test_points_on_a_pixel_ray_read_that_pixel():
    cams = orbit_cameras([20.0, -70.0], [35.0, 10.0], [2.8, 3.2], 0.8)
    h = w = 8
    features = torch.randn(2, 5, h, w)
    origins, dirs = cams.pixel_rays(h, w)
    for t in (1.5, 2.5, 3.5):
        points = (origins + t * dirs).reshape(2, -1, 3)
        got = sample_image(features, cams, points)[:, :, 0]  # (B, C, P)
        torch.testing.assert_close(got, features.reshape(2, 5, -1), atol=1e-4, rtol=1e-4)


def test_points_behind_the_camera_or_off_the_image_read_zero():
    cams = orbit_cameras([0.0], [0.0], [3.0], 0.8)  # at +x, looking at the origin
    features = torch.ones(1, 2, 4, 4)
    points = torch.tensor([[[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 50.0, 0.0]]])  # seen, behind, far off to a side
    _, in_front = image_grid(cams, points, 4, 4)
    assert in_front.tolist() == [[True, False, True]]
    got = sample_image(features, cams, points)[0, :, 0]
    assert got[:, 0].tolist() == [1.0, 1.0]
    assert got[:, 1:].abs().max() == 0


def test_each_texel_gets_the_image_features_behind_it_in_order():
    """ProjectiveLift's output layout: channel (c, k) of texel (i, j) of plane p is feature c where the camera sees
    that texel's k-th depth point (head set to identity, output layer picking one channel each)."""
    n, k, c = 4, 3, 2
    lift = ProjectiveLift(c, c, k, c * k, n, bound=1.0)
    lift.head = torch.nn.Identity()
    with torch.no_grad():
        lift.out.weight.copy_(torch.eye(c * k)[:, :, None, None])
        lift.out.bias.zero_()
    cams = orbit_cameras([0.0, 40.0], [30.0, 15.0], [3.0, 2.8], 0.9)
    features = torch.randn(2, c, 8, 8)
    got = lift(features, cams)  # (B, 3, c * k, N, N)
    points = plane_points(n, k)
    for plane in range(3):
        want = sample_image(features, cams, points[plane].reshape(1, -1, 3).expand(2, -1, -1))  # (B, c, 1, N*N*K)
        want = want.reshape(2, c, n, n, k).permute(0, 1, 4, 2, 3).reshape(2, c * k, n, n)
        torch.testing.assert_close(got[:, plane], want)


def test_plucker_rays_are_unit_directions_with_their_moments():
    cams = orbit_cameras([30.0], [20.0], [3.0], 0.7)
    rays = plucker_rays(cams, 4, 4)
    assert rays.shape == (1, 6, 4, 4)
    d, m = rays[:, :3], rays[:, 3:]
    torch.testing.assert_close(d.norm(dim=1), torch.ones(1, 4, 4))
    torch.testing.assert_close((d * m).sum(1), torch.zeros(1, 4, 4), atol=1e-5, rtol=0)  # moment is orthogonal to d
    origin = cams.position[0]
    torch.testing.assert_close(m[0, :, 1, 2], torch.linalg.cross(origin, d[0, :, 1, 2], dim=0))


def _denoise(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    cams = orbit_cameras([10.0, 200.0], [30.0, 45.0], [3.0, 2.9], 0.78)
    return model(x, torch.tensor([3, 60]), cams).x0


def test_extensions_start_as_no_ops_and_learn():
    torch.manual_seed(0)
    plain = RenderDiffusion(tiny_config()).eval()
    extended = RenderDiffusion(tiny_config(ray_conditioning=True, lift_features=4, lift_depths=3)).eval()
    load_init_weights(extended, plain, "plain")
    with torch.no_grad():
        torch.testing.assert_close(_denoise(extended), _denoise(plain), atol=0, rtol=0)
    extended.train()
    loss = _denoise(extended).square().mean()
    loss.backward()
    assert extended.encoder.projective.out.weight.grad.abs().sum() > 0
    assert extended.encoder.rays.conv.weight.grad.abs().sum() > 0
    with torch.no_grad():  # moving only the new branches changes the output: they are wired in
        for name, p in extended.named_parameters():
            if name.startswith(("encoder.projective.", "encoder.rays.")):
                p -= p.grad.sign() * 1e-2
        assert (_denoise(extended.eval()) - _denoise(plain)).abs().max() > 1e-4


def test_extended_model_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(1)
    model = RenderDiffusion(tiny_config(lift_features=4, lift_depths=2, ray_conditioning=True)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "m")
    loaded = RenderDiffusion.from_pretrained(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(_denoise(loaded), _denoise(model))


@pytest.mark.parametrize("start, target", [
    (dict(), dict(triplane_channels=4)),  # not an extension
    (dict(lift_features=4), dict()),  # switching an extension off
    (dict(lift_features=4, lift_depths=2), dict(lift_features=4, lift_depths=3)),  # a different lift
    (dict(ray_conditioning=True), dict()),
])
def test_init_weights_refuse_anything_but_switching_extensions_on(start, target):
    with pytest.raises(ValueError, match="different model config"):
        load_init_weights(RenderDiffusion(tiny_config(**target)), RenderDiffusion(tiny_config(**start)), "start")


def test_config_rejects_bad_lift_settings():
    with pytest.raises(ValueError, match="lift_features"):
        tiny_config(lift_features=-1)
    with pytest.raises(ValueError, match="lift_features"):
        tiny_config(lift_features=4, lift_depths=0)


def test_init_weights_may_switch_a_one_colour_background_to_the_per_ray_one():
    torch.manual_seed(0)
    start = RenderDiffusion(tiny_config(background="learned", background_init=(0.2, 0.5, 0.7)))
    with torch.no_grad():
        start.renderer.background_logit.add_(0.3)  # a trained colour, not the config's
    model = RenderDiffusion(tiny_config(background="ray"))
    load_init_weights(model, start, "start")
    origins = torch.randn(5, 3)
    dirs = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(model.renderer.background(origins, dirs), start.renderer.background(origins, dirs))
        torch.testing.assert_close(model.field.decoder.out.weight, start.field.decoder.out.weight)
    with pytest.raises(ValueError, match="different model config"):  # not the other way round
        load_init_weights(RenderDiffusion(tiny_config(background="learned")), model, "ray")
