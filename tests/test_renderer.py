"""Volume rendering against analytic scenes, sampling helpers, ray-box tests and triplane lookups."""

import numpy as np
import pytest
import torch
from conftest import tiny_config

from rdiff import RenderDiffusion
from rdiff.cameras import orbit_cameras
from rdiff.decoder import InferenceField, TriplaneField
from rdiff.renderer import (
    FieldSample,
    VolumeRenderer,
    composite,
    ray_box_intersection,
    sample_pdf,
    stratified_samples,
)
from rdiff.triplane import TriplaneTable, sample_triplane

# --------------------------------------------------------------------------------------------------
# analytic references (independent of rdiff)


def slab_hits(origins: np.ndarray, dirs: np.ndarray, half: float) -> tuple[np.ndarray, np.ndarray]:
    """Entry distance (t >= 0) of rays with the box [-half, half]^3 and a hit mask, in float64."""
    o, d = origins.astype(np.float64), dirs.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    lo = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2)).max(-1)
    hi = np.where(np.isnan(t1), np.inf, np.maximum(t1, t2)).min(-1)
    return np.maximum(lo, 0.0), hi > np.maximum(lo, 0.0)


def sphere_hits(origins: np.ndarray, dirs: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    o, d = origins.astype(np.float64), dirs.astype(np.float64)
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - radius**2
    disc = b * b - c
    hit = disc > 0
    return -b - np.sqrt(np.where(hit, disc, 0.0)), hit


def box_planes(n: int = 128, half: float = 0.5, channels: int = 2) -> torch.Tensor:
    """Triplanes whose channel 0 is 1 on texels with |u|, |v| < half: the 3-plane sum is 3 only inside the box."""
    centres = (torch.arange(n) + 0.5) / n * 2 - 1
    inside = (centres.abs() < half).float()
    square = inside[:, None] * inside[None, :]
    planes = torch.zeros(1, 3, channels, n, n)
    planes[0, :, 0] = square
    return planes


COLOUR = torch.tensor([0.2, 0.55, 0.9])


def box_field(planes: torch.Tensor):
    def field(points):
        f = sample_triplane(planes, points)[..., 0]
        # 2 on the box faces (two of three planes are half-covered there), 3 inside
        density = 2000.0 * (f - 2.0).clamp(0.0, 1.0)
        return density, COLOUR.expand(*density.shape, 3)

    return field


def _rays(cams, h, w):
    o, d = cams.pixel_rays(h, w)
    return o.reshape(len(cams), -1, 3), d.reshape(len(cams), -1, 3)


# --------------------------------------------------------------------------------------------------
# analytic scenes


@pytest.mark.parametrize("az,el", [(30.0, 25.0), (-100.0, 60.0), (0.0, 0.0)])
def test_triplane_box_silhouette_and_depth(az, el):
    cams = orbit_cameras(az, el, 3.0, 0.75)
    o, d = _rays(cams, 40, 40)
    out = VolumeRenderer(64, 64, background="white")(box_field(box_planes()), o, d)
    entry, hit = slab_hits(o[0].numpy(), d[0].numpy(), 0.5)
    silhouette = out.opacity[0].numpy() > 0.5
    assert 0.1 < hit.mean() < 0.9  # the box covers part of the image
    assert (silhouette == hit).mean() >= 0.97
    # depth on rays that hit the box well inside its outline
    _, core = slab_hits(o[0].numpy(), d[0].numpy(), 0.47)
    err = np.abs(out.depth[0].numpy() - entry)[core]
    assert np.median(err) < 0.01 and err.max() < 0.03
    # colour: the box colour where opaque, the white background elsewhere
    rgb = out.rgb[0].numpy()
    assert np.abs(rgb[core] - COLOUR.numpy()).max() < 0.02
    far_off = ~slab_hits(o[0].numpy(), d[0].numpy(), 0.53)[1]
    assert np.abs(rgb[far_off] - 1.0).max() < 0.02


def test_analytic_sphere_field():
    radius = 0.6

    def field(points):
        r = points.norm(dim=-1)
        density = 300.0 * torch.sigmoid((radius - r) / 0.004)
        normal = points / r.clamp_min(1e-6)[..., None]
        return density, (normal + 1) / 2  # colour = outward normal

    cams = orbit_cameras([20.0, 200.0], [10.0, -35.0], [2.5, 3.2], 0.8)
    o, d = _rays(cams, 32, 32)
    out = VolumeRenderer(48, 48, background="black")(field, o, d)
    for b in range(2):
        on, dn = o[b].numpy(), d[b].numpy()
        entry, hit = sphere_hits(on, dn, radius)
        assert (((out.opacity[b].numpy() > 0.5) == hit).mean()) >= 0.97
        _, core = sphere_hits(on, dn, radius * 0.9)
        err = np.abs(out.depth[b].numpy() - entry)[core]
        assert np.median(err) < 0.01 and err.max() < 0.03
        # the colour is the normal at the first surface point
        normal = (on + entry[:, None] * dn) / radius
        assert np.abs(out.rgb[b].numpy()[core] - (normal[core] + 1) / 2).max() < 0.05
        assert np.abs(out.rgb[b].numpy()[~sphere_hits(on, dn, radius * 1.05)[1]]).max() < 0.02


def test_inference_and_training_paths_agree_on_analytic_scene():
    cams = orbit_cameras(30.0, 25.0, 3.0, 0.75)
    o, d = _rays(cams, 24, 24)
    r = VolumeRenderer(32, 32, background="white")
    field = box_field(box_planes())
    fast = r.render_inference(field, o, d)
    with torch.enable_grad():
        slow = r(field, o, d)
    torch.testing.assert_close(fast.rgb, slow.rgb, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.depth, slow.depth, atol=1e-4, rtol=0)
    torch.testing.assert_close(fast.opacity, slow.opacity, atol=1e-5, rtol=0)


def test_inference_path_without_importance_samples_agrees():
    cams = orbit_cameras(-40.0, 30.0, 2.8, 0.75)
    o, d = _rays(cams, 16, 16)
    r = VolumeRenderer(40, 0, background="black")
    field = box_field(box_planes())
    fast = r.render_inference(field, o, d)
    with torch.enable_grad():
        slow = r(field, o, d)
    assert float(slow.opacity.max()) > 0.9  # the box is in view
    torch.testing.assert_close(fast.rgb, slow.rgb, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.opacity, slow.opacity, atol=1e-5, rtol=0)


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
@pytest.mark.parametrize("aggregate", ["sum", "mean", "concat"])
def test_inference_field_matches_the_decoder_module(layers, aggregate):
    """The inference field (lookup table, feature-major MLP with folded biases) computes the module's maths."""
    torch.manual_seed(layers)
    field = TriplaneField(6, aggregate, 1.0, hidden=24, layers=layers, density_bias=-0.5)
    with torch.no_grad():
        for m in field.decoder.modules():
            if isinstance(m, torch.nn.Linear):
                m.bias.normal_(0, 0.5)  # biases matter here: make them large
    g = torch.Generator().manual_seed(1)
    planes = torch.randn(2, 3, 6, 10, 10, generator=g)
    points = torch.rand(2, 700, 3, generator=g) * 2.4 - 1.2  # some outside the box
    with torch.no_grad():
        want = field(planes, points)
        fast = field.inference_field(planes, chunk=256)  # several chunks, a partial last one
        got = fast(points)
        shared = field.inference_field(planes[:1])(points[:1])
    assert isinstance(fast, InferenceField) and fast.device == planes.device and fast.chunk == 256
    assert isinstance(got, FieldSample) and isinstance(want, FieldSample)  # named outputs on both paths
    assert got.density.shape == (2, 700) and got.rgb.shape == (2, 700, 3)
    torch.testing.assert_close(got.density, want.density, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.rgb, want.rgb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.density, want.density[:1], atol=1e-5, rtol=1e-5)
    with torch.enable_grad(), pytest.raises(RuntimeError, match="autograd"):
        field.inference_field(planes)(points)
    with torch.no_grad(), pytest.raises(ValueError, match="scenes"):
        field.inference_field(planes)(points[:1])


def test_optimised_model_rendering_matches_training_path():
    """The inference path (lookup table, chunking, skipped misses) is within 1/255 of the autograd path."""
    torch.manual_seed(0)
    model = RenderDiffusion(tiny_config(background="learned", coarse_samples=16, fine_samples=16)).eval()
    g = torch.Generator().manual_seed(1)
    planes = torch.randn(2, 3, 8, 16, 16, generator=g) * 2.0
    cams = orbit_cameras([10.0, 130.0], [20.0, 45.0], [2.2, 3.0], 0.9)  # close enough that some rays miss the box
    with torch.inference_mode():
        fast = model.render(planes, cams, 20, 20, field=model.inference_field(planes))
    with torch.enable_grad():
        slow = model.render(planes, cams, 20, 20)
    assert 0.05 < float(slow.opacity.detach().mean()) < 0.95  # a non-trivial scene
    to8 = lambda x: (x.detach().clamp(0, 1) * 255).round()  # noqa: E731
    assert float((to8(fast.rgb) - to8(slow.rgb)).abs().max()) <= 1.0
    torch.testing.assert_close(fast.rgb, slow.rgb.detach(), atol=1e-4, rtol=0)
    torch.testing.assert_close(fast.opacity, slow.opacity.detach(), atol=1e-4, rtol=0)
    torch.testing.assert_close(fast.depth, slow.depth.detach(), atol=1e-3, rtol=0)
    # a prepared field shared by a batch of views of one scene gives the same images
    one = planes[:1].expand(2, -1, -1, -1, -1)
    with torch.inference_mode():
        shared = model.render(one, cams, 20, 20, field=model.inference_field(planes[:1]))
        two = planes[:1].repeat(2, 1, 1, 1, 1)
        separate = model.render(two, cams, 20, 20, field=model.inference_field(two))
    torch.testing.assert_close(shared.rgb, separate.rgb, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="deterministic"):
        model.render_rays(planes, *_rays(cams, 4, 4), perturb=True, field=model.inference_field(planes))


def test_the_inference_path_is_taken_only_when_asked_for():
    """Disabling autograd does not switch paths: only an inference field does (the plain path renders misses)."""
    calls = []

    def counting(points):
        calls.append(points.shape[1])
        return torch.zeros(points.shape[:-1]), torch.zeros((*points.shape[:-1], 3))

    o = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 3.0, 0.5]]])
    d = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # both rays miss the box
    renderer = VolumeRenderer(8, 8)
    with torch.no_grad():
        renderer(counting, o, d)
    assert calls, "the differentiable path evaluates every ray, even without autograd"
    calls.clear()
    renderer.render_inference(counting, o, d)
    assert not calls


# --------------------------------------------------------------------------------------------------
# sampling helpers


def test_stratified_samples():
    near = torch.tensor([0.5, 1.0, 2.0])
    far = torch.tensor([1.5, 3.0, 2.5])
    t = stratified_samples(near, far, 8, perturb=False)
    assert t.shape == (3, 8)
    # deterministic: bin midpoints
    expected = near[:, None] + (far - near)[:, None] * (torch.arange(8) + 0.5) / 8
    torch.testing.assert_close(t, expected)
    g = torch.Generator().manual_seed(0)
    tp = stratified_samples(near.expand(500, 3), far.expand(500, 3), 8, perturb=True, generator=g)
    assert bool((tp.diff(dim=-1) >= 0).all())
    assert bool((tp >= near[:, None]).all() and (tp <= far[:, None]).all())
    # one sample per equal bin, spread over the whole bin
    k = ((tp - near[:, None]) / (far - near)[:, None] * 8).floor()
    assert bool((k == torch.arange(8)).all())
    frac = (tp - near[:, None]) / (far - near)[:, None] * 8 - k
    assert float(frac.min()) < 0.02 and float(frac.max()) > 0.98
    same = stratified_samples(near, far, 8, True, torch.Generator().manual_seed(5))
    torch.testing.assert_close(same, stratified_samples(near, far, 8, True, torch.Generator().manual_seed(5)))


def test_sample_pdf_properties():
    bins = torch.linspace(1.0, 3.0, 9).expand(4, 9)  # 8 bins of width 0.25
    weights = torch.zeros(4, 8)
    weights[0, 5] = 1.0  # all mass in bin 5
    weights[1] = 1.0  # uniform
    weights[2, 1] = 3.0
    weights[2, 6] = 1.0
    weights[3] = torch.rand(8)
    t = sample_pdf(bins, weights, 64, perturb=False)
    assert t.shape == (4, 64)
    assert bool((t.diff(dim=-1) >= 0).all())
    assert bool((t >= 1.0).all() and (t <= 3.0).all())
    # concentrated where the weight is
    assert bool(((t[0] >= 2.25) & (t[0] <= 2.5)).all())
    # uniform weights -> uniform samples (inverse of a linear cdf)
    torch.testing.assert_close(t[1], 1.0 + 2.0 * (torch.arange(64) + 0.5) / 64, atol=1e-4, rtol=0)
    # 3:1 split between two bins
    in_b1 = ((t[2] >= 1.25) & (t[2] <= 1.5)).float().mean()
    in_b6 = ((t[2] >= 2.5) & (t[2] <= 2.75)).float().mean()
    assert abs(float(in_b1) - 0.75) < 0.03 and abs(float(in_b6) - 0.25) < 0.03


def test_sample_pdf_histogram_matches_weights():
    g = torch.Generator().manual_seed(0)
    bins = torch.linspace(0.0, 1.0, 11)[None]
    weights = torch.tensor([[0.0, 1.0, 2.0, 4.0, 0.0, 0.0, 8.0, 1.0, 0.0, 0.0]])
    t = sample_pdf(bins, weights, 20000, perturb=True, generator=g)
    assert bool((t >= 0).all() and (t <= 1).all())
    hist = torch.histc(t, bins=10, min=0.0, max=1.0) / t.numel()
    expected = (weights + 1e-5) / (weights + 1e-5).sum()
    torch.testing.assert_close(hist, expected[0], atol=0.01, rtol=0)


def test_composite_single_opaque_sample():
    t = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    density = torch.tensor([[0.0, 1e4, 0.0, 0.0]])
    rgb = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1, 1]]])
    color, depth, opacity, w = composite(density, rgb, t, torch.tensor([5.0]))
    torch.testing.assert_close(color, torch.tensor([[0.0, 1.0, 0.0]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(depth, torch.tensor([2.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(opacity, torch.tensor([1.0]), atol=1e-5, rtol=0)
    # a uniform medium: opacity = 1 - exp(-sigma * length)
    t = torch.linspace(0.0, 2.0, 201)[None, :-1]
    _, _, opacity, _ = composite(torch.full_like(t, 0.7), torch.zeros(1, 200, 3), t, torch.tensor([2.0]))
    torch.testing.assert_close(opacity, torch.tensor([1 - np.exp(-1.4)], dtype=torch.float32), atol=1e-4, rtol=0)


# --------------------------------------------------------------------------------------------------
# ray-box intersection and backgrounds


def test_ray_box_intersection_known_rays():
    s3 = 3**0.5
    origins = torch.tensor([[-3.0, 0, 0], [0, 0, 0], [-3.0, 2.0, 0], [-3.0, -3, -3], [3.0, 0, 0], [0.5, 0.5, 5.0]])
    dirs = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0], [1 / s3, 1 / s3, 1 / s3], [1.0, 0, 0], [0, 0, -1.0]])
    near, far, hit = ray_box_intersection(origins, dirs, 1.0)
    assert hit.tolist() == [True, True, False, True, False, True]
    torch.testing.assert_close(near, torch.tensor([2.0, 0.0, 0.0, 2 * s3, 0.0, 4.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(far, torch.tensor([4.0, 1.0, 0.0, 4 * s3, 0.0, 6.0]), atol=1e-5, rtol=0)
    near, far, hit = ray_box_intersection(origins[:1], dirs[:1], 0.25)
    torch.testing.assert_close(torch.stack([near, far]), torch.tensor([[2.75], [3.25]]))


def test_ray_box_matches_slab_reference():
    g = torch.Generator().manual_seed(0)
    o = torch.randn(2000, 3, generator=g) * 2
    d = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g), dim=-1)
    near, far, hit = ray_box_intersection(o, d, 1.0)
    entry, ref_hit = slab_hits(o.numpy(), d.numpy(), 1.0)
    assert (hit.numpy() == ref_hit).mean() > 0.999
    both = hit.numpy() & ref_hit
    np.testing.assert_allclose(near.numpy()[both], entry[both], atol=1e-4)


@pytest.mark.parametrize("mode,expected", [("white", (1.0, 1.0, 1.0)), ("black", (0.0, 0.0, 0.0)),
                                           ("learned", (0.2, 0.5, 0.7))])
def test_background_for_empty_space(mode, expected):
    renderer = VolumeRenderer(8, 8, background=mode, background_init=(0.2, 0.5, 0.7))

    def empty(points):
        return torch.zeros(points.shape[:-1]), torch.full((*points.shape[:-1], 3), 0.3)

    cams = orbit_cameras(10.0, 20.0, 2.5, 2.2)  # wide: some rays miss the box
    o, d = _rays(cams, 16, 16)
    hit = ray_box_intersection(o, d, 1.0)[2]
    assert bool(hit.any()) and bool((~hit).any())
    for render in (renderer.render_inference, renderer):
        out = render(empty, o, d)
        torch.testing.assert_close(out.rgb.detach(), torch.tensor(expected).expand(1, 256, 3), atol=1e-5, rtol=0)
        torch.testing.assert_close(out.opacity.detach(), torch.zeros(1, 256))
    if mode == "learned":
        renderer(empty, o, d).rgb.sum().backward()
        assert renderer.background_logit.grad is not None and renderer.background_logit.grad.abs().sum() > 0


def test_ray_background_starts_constant_then_learns_a_horizon():
    """``background="ray"`` starts as its init colour and can learn what a floor to the horizon looks like."""
    renderer = VolumeRenderer(8, 8, background="ray", background_init=(0.35, 0.12, 0.12))

    def empty(points):
        return torch.zeros(points.shape[:-1]), torch.zeros((*points.shape[:-1], 3))

    cams = orbit_cameras(torch.linspace(0, 300, 6), torch.linspace(5, 60, 6), 3.0, 1.4)
    o, d = _rays(cams, 12, 12)
    with torch.no_grad():
        start = renderer(empty, o, d).rgb
    torch.testing.assert_close(start, torch.tensor([0.35, 0.12, 0.12]).expand_as(start), atol=1e-5, rtol=0)
    below = d[..., 2:] < -0.1  # world z up: rays going down see the floor, the rest a grey horizon
    target = torch.where(below, torch.tensor([0.4, 0.1, 0.1]), torch.tensor([0.6, 0.6, 0.6]))
    opt = torch.optim.Adam(renderer.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = (renderer(empty, o, d, perturb=True).rgb - target).pow(2).mean()
        loss.backward()
        opt.step()
    out = renderer.render_inference(empty, o, d).rgb
    assert (out - target).abs().mean() < 0.03
    assert (start - target).abs().mean() > 0.08  # far from where it started


def test_ray_background_inference_and_training_paths_agree():
    cams = orbit_cameras(torch.tensor([20.0, 150.0]), torch.tensor([15.0, 40.0]), 3.0, 1.3)  # some rays miss
    o, d = _rays(cams, 20, 20)
    r = VolumeRenderer(16, 16, background="ray")
    with torch.no_grad():
        for p in r.ray_background.parameters():
            p.normal_(0, 0.5)
    field = box_field(box_planes().expand(2, -1, -1, -1, -1))
    fast = r.render_inference(field, o, d)
    with torch.enable_grad():
        slow = r(field, o, d)
    hit = ray_box_intersection(o, d, 1.0)[2]
    assert bool(hit.any()) and bool((~hit).any())
    assert float(r.background(o, d).std(dim=(0, 1)).min()) > 0.01  # really varies by ray
    torch.testing.assert_close(fast.rgb, slow.rgb.detach(), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------------
# triplane sampling


def _ramp_planes(n, coeffs):
    """Planes with channel c of plane k = a u + b v + c0 at texel centres (u along the width, v the height)."""
    centres = (torch.arange(n) + 0.5) / n * 2 - 1
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    planes = torch.zeros(1, 3, coeffs.shape[1], n, n)
    for k in range(3):
        for c in range(coeffs.shape[1]):
            a, b, c0 = coeffs[k, c]
            planes[0, k, c] = a * u + b * v + c0
    return planes


def test_sample_triplane_bilinear_is_exact_on_linear_ramps():
    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(3, 4, 3, generator=g)
    planes = _ramp_planes(16, coeffs)
    pts = (torch.rand(1, 500, 3, generator=g) * 2 - 1) * 0.9  # inside the outermost texel centres
    axes = [(0, 1), (0, 2), (1, 2)]
    per_plane = torch.stack(
        [coeffs[k, :, 0] * pts[0, :, a, None] + coeffs[k, :, 1] * pts[0, :, b, None] + coeffs[k, :, 2]
         for k, (a, b) in enumerate(axes)]
    )  # (3, P, C)
    torch.testing.assert_close(sample_triplane(planes, pts, aggregate="sum")[0], per_plane.sum(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(sample_triplane(planes, pts, aggregate="mean")[0], per_plane.mean(0), atol=1e-5, rtol=0)
    concat = sample_triplane(planes, pts, aggregate="concat")[0]
    torch.testing.assert_close(concat, torch.cat(list(per_plane), -1), atol=1e-5, rtol=0)
    # the lookup table used for inference agrees
    for agg in ("sum", "mean", "concat"):
        table = TriplaneTable(planes, 1.0, agg)
        torch.testing.assert_close(table(pts[0]), sample_triplane(planes, pts, aggregate=agg)[0], atol=1e-5, rtol=0)


def test_sample_triplane_axis_convention():
    # channel 0 = u, channel 1 = v on every plane: the concat order must read x,y | x,z | y,z
    coeffs = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]] * 3)
    planes = _ramp_planes(32, coeffs)
    p = torch.tensor([[[0.3, -0.5, 0.7]]])
    out = sample_triplane(planes, p, aggregate="concat")[0, 0]
    torch.testing.assert_close(out, torch.tensor([0.3, -0.5, 0.3, 0.7, -0.5, 0.7]), atol=1e-5, rtol=0)
    # the scene bound rescales points onto the planes
    out2 = sample_triplane(planes, p * 2, bound=2.0, aggregate="concat")[0, 0]
    torch.testing.assert_close(out2, out, atol=1e-5, rtol=0)


def test_sample_triplane_zero_outside_and_batching():
    planes = torch.ones(2, 3, 1, 8, 8)
    planes[1] *= 2
    pts = torch.tensor([[[0.0, 0.0, 0.0], [3.0, 3.0, 3.0], [0.0, 0.0, 5.0]]]).expand(2, 3, 3)
    out = sample_triplane(planes, pts)[..., 0]
    # inside: three planes of ones; far outside: zero; z outside: only the xy plane contributes
    torch.testing.assert_close(out, torch.tensor([[3.0, 0.0, 1.0], [6.0, 0.0, 2.0]]))
    table = TriplaneTable(planes)
    flat = table(pts.reshape(-1, 3), torch.arange(2).repeat_interleave(3))[:, 0]
    torch.testing.assert_close(flat, out.reshape(-1))
    with pytest.raises(ValueError):
        sample_triplane(torch.ones(1, 2, 1, 8, 8), pts[:1])
    with pytest.raises(ValueError):
        sample_triplane(planes, pts, aggregate="max")


def test_triplane_table_matches_grid_sample_everywhere():
    g = torch.Generator().manual_seed(3)
    planes = torch.randn(2, 3, 5, 12, 12, generator=g)
    pts = torch.rand(2, 3000, 3, generator=g) * 2.6 - 1.3  # includes the border and outside
    for agg in ("sum", "mean", "concat"):
        ref = sample_triplane(planes, pts, bound=1.0, aggregate=agg)
        got = TriplaneTable(planes, 1.0, agg)(pts.reshape(-1, 3), torch.arange(2).repeat_interleave(3000))
        torch.testing.assert_close(got.reshape(ref.shape), ref, atol=1e-5, rtol=0)


def test_rays_that_all_miss_never_evaluate_the_field():
    def exploding(points):
        raise AssertionError("the field must not be evaluated for rays that miss the scene box")

    o = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 3.0, 0.5]]])
    d = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # pointing away / passing above the box
    renderer = VolumeRenderer(8, 8, background="learned", background_init=(0.3, 0.6, 0.9))
    out = renderer.render_inference(exploding, o, d)
    torch.testing.assert_close(out.rgb, torch.tensor([0.3, 0.6, 0.9]).expand(1, 2, 3))
    assert float(out.opacity.abs().max()) == 0.0 and float(out.depth.abs().max()) == 0.0


def test_triplane_table_needs_batch_index_for_several_scenes():
    table = TriplaneTable(torch.randn(2, 3, 4, 8, 8))
    with pytest.raises(ValueError, match="batch_index"):
        table(torch.zeros(5, 3))
    shared = TriplaneTable(torch.randn(1, 3, 4, 8, 8).expand(2, -1, -1, -1, -1))
    assert shared.shared and shared(torch.zeros(5, 3)).shape == (5, 4)


def test_inference_passes_follow_the_fields_own_ray_chunk():
    """A field with a ``ray_chunk`` attribute (a baked field: cheap points, larger passes) is rendered in passes of
    that many rays; an explicit ``ray_chunk`` overrides it; the image is the same either way."""
    cams = orbit_cameras(30.0, 25.0, 3.0, 0.75)
    o, d = _rays(cams, 16, 16)
    r = VolumeRenderer(8, 8, background="white")
    box = box_field(box_planes())

    class Recording:
        def __init__(self, chunk: int | None) -> None:
            if chunk is not None:
                self.ray_chunk = chunk
            self.calls: list[int] = []

        def __call__(self, points):
            self.calls.append(points.shape[1] // 8)  # rays in this pass (8 samples each)
            return box(points)

    default, own, overridden = Recording(None), Recording(100), Recording(100)
    reference = r.render_inference(default, o, d)
    hit = int(ray_box_intersection(o, d, 1.0)[2].sum())
    assert hit > 100 and max(default.calls) == hit  # 256 rays: one pass of the default RAY_CHUNK
    torch.testing.assert_close(r.render_inference(own, o, d).rgb, reference.rgb)
    assert max(own.calls) == 100 and len(own.calls) == 2 * -(-hit // 100)  # coarse + fine per pass
    r.render_inference(overridden, o, d, ray_chunk=64)
    assert max(overridden.calls) == 64
