"""A deliberately plain reference renderer for triplane radiance fields (the baseline of the benchmarks).

It computes the same image as ``rdiff``'s renderer, written the straightforward way, as in the original
NeRF code:

* one ``F.grid_sample`` call per plane, features summed afterwards;
* a coarse pass with stratified samples, then a fine pass that evaluates the field again at the coarse
  *and* the importance samples (the coarse evaluations are thrown away);
* autograd left on, every ray processed (including rays that miss the scene box), no chunking.

Only the decoder's weights are taken from an ``rdiff`` model; rays, sampling, lookups and compositing are
re-implemented here, so the benchmark doubles as an independent check of the optimised path. Only
``triplane_aggregate = "sum"`` (the default) is supported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def camera_rays(c2w: Tensor, fov_x: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Pinhole rays through pixel centres, OpenGL camera axes. ``c2w (B,4,4)`` -> origins, dirs ``(B,H*W,3)``."""
    focal = 0.5 * width / torch.tan(0.5 * fov_x)  # (B,)
    rows = torch.arange(height, dtype=c2w.dtype) + 0.5
    cols = torch.arange(width, dtype=c2w.dtype) + 0.5
    out_o, out_d = [], []
    for b in range(c2w.shape[0]):
        x = (cols[None, :] - width / 2) / focal[b]
        y = -(rows[:, None] - height / 2) / focal[b]
        x, y = torch.broadcast_tensors(x, y)
        d_cam = torch.stack([x, y, -torch.ones_like(x)], -1).reshape(-1, 3)
        d = d_cam @ c2w[b, :3, :3].T
        d = d / torch.linalg.norm(d, dim=-1, keepdim=True)
        out_d.append(d)
        out_o.append(c2w[b, :3, 3].expand_as(d))
    return torch.stack(out_o), torch.stack(out_d)


def box_interval(origins: Tensor, dirs: Tensor, bound: float) -> tuple[Tensor, Tensor, Tensor]:
    """Slab test against ``[-bound, bound]^3``: near, far and a hit mask (misses get near = far = 0)."""
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    ta = (-bound - origins) / safe
    tb = (bound - origins) / safe
    t_enter = torch.max(torch.min(ta, tb), dim=-1).values
    t_exit = torch.min(torch.max(ta, tb), dim=-1).values
    t_enter = torch.clamp(t_enter, min=0.0)
    hit = t_exit > t_enter
    return torch.where(hit, t_enter, 0.0), torch.where(hit, t_exit, 0.0), hit


def triplane_features(planes: Tensor, points: Tensor, bound: float) -> Tensor:
    """Sum of bilinear lookups in the xy, xz and yz planes (one grid_sample each). -> ``(B, P, C)``."""
    p = points / bound
    total = 0.0
    for k, (a, b) in enumerate(((0, 1), (0, 2), (1, 2))):
        grid = torch.stack([p[..., a], p[..., b]], -1)[:, None]  # (B, 1, P, 2)
        f = F.grid_sample(planes[:, k], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        total = total + f[:, :, 0].transpose(1, 2)
    return total


def decode(decoder, features: Tensor) -> tuple[Tensor, Tensor]:
    """Apply an ``rdiff.decoder.TriplaneDecoder``'s weights: SiLU MLP -> softplus density, widened-sigmoid rgb."""
    h = features
    for layer in decoder.hidden:
        h = F.silu(F.linear(h, layer.weight, layer.bias))
    raw = F.linear(h, decoder.out.weight, decoder.out.bias)
    density = F.softplus(raw[..., 0] + decoder.density_bias)
    rgb = torch.sigmoid(raw[..., 1:]) * 1.002 - 0.001
    return density, rgb


def evaluate(decoder, planes: Tensor, origins: Tensor, dirs: Tensor, t: Tensor, bound: float) -> tuple[Tensor, Tensor]:
    b, r, s = t.shape
    pts = origins[:, :, None] + dirs[:, :, None] * t[..., None]
    density, rgb = decode(decoder, triplane_features(planes, pts.reshape(b, r * s, 3), bound))
    return density.reshape(b, r, s), rgb.reshape(b, r, s, 3)


def alpha_weights(density: Tensor, t: Tensor, far: Tensor) -> Tensor:
    """Compositing weights ``T_i * alpha_i``; the last interval runs to ``far``."""
    gaps = t[..., 1:] - t[..., :-1]
    last = torch.clamp(far[..., None] - t[..., -1:], min=0.0)
    delta = torch.cat([gaps, last], -1)
    alpha = 1.0 - torch.exp(-density * delta)
    survive = 1.0 - alpha + 1e-10
    trans = torch.cumprod(torch.cat([torch.ones_like(survive[..., :1]), survive[..., :-1]], -1), -1)
    return alpha * trans


def importance_samples(near: Tensor, far: Tensor, t_c: Tensor, w: Tensor, n: int) -> Tensor:
    """Deterministic inverse-CDF samples from the piecewise-constant pdf over the coarse bins."""
    edges = torch.cat([near[..., None], 0.5 * (t_c[..., 1:] + t_c[..., :-1]), far[..., None]], -1)
    w = w + 1e-5
    cdf = torch.cumsum(w / w.sum(-1, keepdim=True), -1)
    cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf], -1)
    u = ((torch.arange(n, dtype=t_c.dtype) + 0.5) / n).expand(*cdf.shape[:-1], n).contiguous()
    j = torch.searchsorted(cdf, u, right=True)
    lo = torch.clamp(j - 1, 0, cdf.shape[-1] - 1)
    hi = torch.clamp(j, 0, cdf.shape[-1] - 1)
    c_lo, c_hi = torch.gather(cdf, -1, lo), torch.gather(cdf, -1, hi)
    e_lo, e_hi = torch.gather(edges, -1, lo), torch.gather(edges, -1, hi)
    span = c_hi - c_lo
    span = torch.where(span < 1e-5, torch.ones_like(span), span)
    return e_lo + (u - c_lo) / span * (e_hi - e_lo)


def plain_render(
    decoder,
    planes: Tensor,
    c2w: Tensor,
    fov_x: Tensor,
    height: int,
    width: int,
    coarse: int,
    fine: int,
    bound: float,
    background,
) -> tuple[Tensor, Tensor, Tensor]:
    """Render ``planes (B,3,C,N,N)`` from cameras given *in the triplane frame*.

    ``background``: a colour ``(3,)`` or a function of the rays ``(origins, dirs) -> (..., 3)``.

    Returns rgb ``(B,3,H,W)`` in [0, 1], depth and opacity ``(B,H,W)``.
    """
    with torch.enable_grad():
        origins, dirs = camera_rays(c2w, fov_x, height, width)
        near, far, hit = box_interval(origins, dirs, bound)
        k = torch.arange(coarse, dtype=near.dtype)
        t_c = near[..., None] + (far - near)[..., None] * (k + 0.5) / coarse
        dens_c, _ = evaluate(decoder, planes, origins, dirs, t_c, bound)
        t_all = t_c
        if fine > 0:
            w_c = alpha_weights(dens_c, t_c, far).detach()
            t_f = importance_samples(near, far, t_c, w_c, fine)
            t_all = torch.sort(torch.cat([t_c, t_f], -1), -1).values
        dens, rgb = evaluate(decoder, planes, origins, dirs, t_all, bound)  # coarse samples evaluated again
        w = alpha_weights(dens, t_all, far)
        opacity = w.sum(-1) * hit
        colour = (w[..., None] * rgb).sum(-2) * hit[..., None]
        depth = torch.where(hit, (w * t_all).sum(-1) / torch.clamp(w.sum(-1), min=1e-6), far)
        bg = background(origins, dirs) if callable(background) else background
        colour = colour + (1.0 - opacity[..., None]) * bg
    b = planes.shape[0]
    return (
        colour.reshape(b, height, width, 3).permute(0, 3, 1, 2),
        depth.reshape(b, height, width),
        opacity.reshape(b, height, width),
    )


def world_to_triplane(c2w: Tensor, rotation: Tensor) -> Tensor:
    """Camera-to-world matrices re-expressed in a triplane frame given by its world-from-triplane rotation."""
    m = torch.eye(4, dtype=c2w.dtype).repeat(c2w.shape[0], 1, 1)
    m[:, :3, :3] = rotation.T if rotation.ndim == 2 else rotation.transpose(-1, -2)
    return m @ c2w


def plain_render_model(model, planes: Tensor, rotation: Tensor, c2w: Tensor, fov_x: Tensor, size: int):
    """Plain rendering with an ``rdiff.RenderDiffusion``'s decoder, sample counts and background.

    ``planes (B,3,C,N,N)``, ``rotation (3,3)`` world-from-triplane rotation, world-space cameras ``c2w (B,4,4)``.
    """
    cfg = model.config
    background = model.renderer.background
    return plain_render(
        model.field.decoder, planes, world_to_triplane(c2w, rotation), fov_x, size, size,
        cfg.coarse_samples, cfg.fine_samples, cfg.scene_bound, background,
    )


__all__ = ["plain_render", "plain_render_model", "camera_rays", "box_interval"]
