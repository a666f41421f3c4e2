"""Volume rendering of a radiance field along camera rays: stratified + importance sampling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rdiff.config import BACKGROUNDS


class FieldSample(NamedTuple):
    """A radiance field at points ``(B, P, 3)``: ``density (B, P)`` >= 0 and ``rgb (B, P, 3)`` in [0, 1]."""

    density: Tensor
    rgb: Tensor


# field(points (B, P, 3)) -> density (B, P), rgb (B, P, 3): a FieldSample or any (density, rgb) pair
FieldFn = Callable[[Tensor], tuple[Tensor, Tensor]]

# The chunking policy of the inference path (VolumeRenderer.render_inference and the inference field it
# renders through). It is the only one: the differentiable path renders every ray at once, since autograd
# would keep every chunk's intermediates anyway.
RAY_CHUNK = 1024  #: rays per coarse/fine pass, summed over the batch: the per-sample arrays stay in cache
POINT_CHUNK = 8192  #: points per MLP pass of an inference field: its activations stay in cache


@dataclass
class RenderOutput:
    """Per-ray results, shaped like the rays' leading dims: rgb ``(..., 3)``, depth and opacity ``(...)``."""

    rgb: Tensor
    depth: Tensor
    opacity: Tensor


def ray_box_intersection(origins: Tensor, dirs: Tensor, bound: float) -> tuple[Tensor, Tensor, Tensor]:
    """Entry/exit distances of rays with the cube ``[-bound, bound]^3`` and a hit mask.

    Rays that miss get ``near == far == 0``.
    """
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (-bound - origins) * inv
    t1 = (bound - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    hit = far > near
    zero = torch.zeros_like(near)
    return torch.where(hit, near, zero), torch.where(hit, far, zero), hit


def stratified_samples(
    near: Tensor, far: Tensor, n: int, perturb: bool, generator: torch.Generator | None = None
) -> Tensor:
    """``n`` sorted distances per ray in ``[near, far]``, one per equal bin (jittered when ``perturb``)."""
    steps = torch.arange(n, device=near.device, dtype=near.dtype)
    if perturb:
        u = torch.rand(*near.shape, n, device=near.device, dtype=near.dtype, generator=generator)
    else:
        u = torch.full((*near.shape, n), 0.5, device=near.device, dtype=near.dtype)
    return near[..., None] + (far - near)[..., None] * (steps + u) / n


def sample_pdf(
    bins: Tensor, weights: Tensor, n: int, perturb: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Inverse-transform sampling of ``n`` distances from the piecewise-constant pdf ``weights`` over ``bins``.

    Args:
        bins: ``(..., K + 1)`` bin edges; weights: ``(..., K)``.
    """
    weights = weights + 1e-5
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, -1)], -1)
    if perturb:
        u = torch.rand(*cdf.shape[:-1], n, device=cdf.device, dtype=cdf.dtype, generator=generator)
    else:
        u = (torch.arange(n, device=cdf.device, dtype=cdf.dtype) + 0.5) / n
        u = u.expand(*cdf.shape[:-1], n)
    u = u.contiguous()
    idx = torch.searchsorted(cdf.contiguous(), u, right=True)
    below = (idx - 1).clamp(0, cdf.shape[-1] - 1)
    above = idx.clamp(0, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_lo, bin_hi = bins.gather(-1, below), bins.gather(-1, above)
    denom = torch.where(cdf_hi - cdf_lo < 1e-5, torch.ones_like(cdf_lo), cdf_hi - cdf_lo)
    return bin_lo + (u - cdf_lo) / denom * (bin_hi - bin_lo)


def ray_weights(density: Tensor, t: Tensor, far: Tensor) -> Tensor:
    """Compositing weights ``(..., S)`` of samples at sorted distances ``t (..., S)`` (see :func:`composite`)."""
    deltas = torch.cat([t[..., 1:] - t[..., :-1], (far[..., None] - t[..., -1:]).clamp_min(0.0)], -1)
    alpha = 1.0 - torch.exp(-density * deltas)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1.0 - alpha + 1e-10], -1), -1)[..., :-1]
    return alpha * trans


def composite(density: Tensor, rgb: Tensor, t: Tensor, far: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Alpha-composite samples sorted along each ray.

    Args:
        density ``(..., S)``, rgb ``(..., S, 3)``, t ``(..., S)`` sorted distances, far ``(...)``.

    Returns:
        rgb ``(..., 3)`` (no background), expected depth ``(...)`` (normalised by opacity),
        opacity ``(...)`` and per-sample weights ``(..., S)``.
    """
    weights = ray_weights(density, t, far)
    opacity = weights.sum(-1)
    color = (weights[..., None] * rgb).sum(-2)
    depth = (weights * t).sum(-1) / opacity.clamp_min(1e-6)
    return color, depth, opacity, weights


class RayBackground(nn.Module):
    """A background colour per ray: a small MLP of the ray's unit direction and origin, shared by every scene.

    What lies outside the scene box is the same in every scene of a dataset (a floor to the horizon, a sky), but
    it is not one colour: it depends on where the ray goes. Starts as the constant ``init`` (zero last layer).
    """

    def __init__(self, init: tuple[float, float, float], hidden: int = 32, frequencies: int = 4) -> None:
        super().__init__()
        self.register_buffer("freqs", 2.0 ** torch.arange(frequencies, dtype=torch.float32), persistent=False)
        n_in = 6 + 2 * 3 * frequencies
        self.mlp = nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 3))
        self.set_constant(torch.tensor(init))

    @torch.no_grad()
    def set_constant(self, colour: Tensor) -> None:
        """Make this background the constant ``colour (3,)`` everywhere (zero last layer, its bias the logit)."""
        nn.init.zeros_(self.mlp[-1].weight)
        self.mlp[-1].bias.copy_(torch.logit(colour.clamp(1e-3, 1 - 1e-3)))

    def forward(self, origins: Tensor, dirs: Tensor) -> Tensor:
        """``origins, dirs (..., 3)`` -> colour ``(..., 3)`` in [0, 1]."""
        angles = dirs[..., None] * self.freqs.to(dirs.dtype) * torch.pi  # (..., 3, F)
        feats = [dirs, origins / 4.0, angles.sin().flatten(-2), angles.cos().flatten(-2)]
        return torch.sigmoid(self.mlp(torch.cat(feats, -1)))


class VolumeRenderer(nn.Module):
    """Renders rays through ``[-bound, bound]^3`` with a coarse stratified pass and an importance pass.

    The same field is used for both passes (as in EG3D); the importance pass re-uses the coarse
    evaluations and only evaluates the new samples, then composites all of them together.
    """

    def __init__(
        self,
        coarse_samples: int,
        fine_samples: int,
        bound: float = 1.0,
        background: str = "white",
        background_init: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__()
        self.coarse_samples = coarse_samples
        self.fine_samples = fine_samples
        self.bound = bound
        if background not in BACKGROUNDS:
            raise ValueError(f"unknown background {background!r}; expected one of {BACKGROUNDS}")
        self.background_mode = background
        if background == "learned":
            init = torch.tensor(background_init).clamp(1e-3, 1 - 1e-3)
            self.background_logit = nn.Parameter(torch.logit(init))
        else:
            self.register_buffer("background_logit", torch.empty(0), persistent=False)
        self.ray_background = RayBackground(background_init) if background == "ray" else None

    def background(self, origins: Tensor, dirs: Tensor) -> Tensor:
        """The colour behind the scene box for rays ``origins, dirs (..., 3)``: ``(..., 3)`` in [0, 1].

        ``white`` / ``black`` / ``learned`` are one colour (an expanded view); ``ray`` depends on the ray.
        """
        shape = (*origins.shape[:-1], 3)
        if self.ray_background is not None:
            return self.ray_background(origins, dirs).to(origins.dtype)
        if self.background_mode == "learned":
            colour = torch.sigmoid(self.background_logit).to(device=origins.device, dtype=origins.dtype)
        else:
            value = 1.0 if self.background_mode == "white" else 0.0
            colour = torch.full((3,), value, device=origins.device, dtype=origins.dtype)
        return colour.expand(shape)

    def forward(
        self,
        field: FieldFn,
        origins: Tensor,
        dirs: Tensor,
        perturb: bool = False,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        """Render rays ``origins, dirs (B, R, 3)`` (unit directions) through ``field``, differentiably.

        This is the training path (and the reference): every ray at once, with or without autograd.
        :meth:`render_inference` is the fast deterministic path for rendering without gradients.
        """
        near, far, hit = ray_box_intersection(origins, dirs, self.bound)
        bg = self.background(origins, dirs)
        color, depth, opacity = self._render_chunk(field, origins, dirs, near, far, hit, bg, perturb, generator)
        return RenderOutput(rgb=color, depth=depth, opacity=opacity)

    @torch.no_grad()
    def render_inference(
        self, field: FieldFn, origins: Tensor, dirs: Tensor, ray_chunk: int | None = None
    ) -> RenderOutput:
        """The deterministic (``perturb=False``) render of :meth:`forward` without autograd, organised for speed.

        Same result up to float rounding. Rays that miss the scene box are never evaluated (their result is
        the background, exactly as in :meth:`forward`), and the rest go through the coarse/fine passes
        ``ray_chunk`` rays at a time so the per-sample arrays stay in cache. ``field`` must be pointwise (any
        :data:`FieldFn` is); an :class:`~rdiff.decoder.InferenceField` is the fast one for triplanes.
        ``ray_chunk`` defaults to the field's own ``ray_chunk`` attribute where it has one (a field whose points
        are cheap renders faster in larger passes), else :data:`RAY_CHUNK`.
        """
        if ray_chunk is None:
            ray_chunk = int(getattr(field, "ray_chunk", RAY_CHUNK))
        b, r, _ = origins.shape
        near, far, hit = ray_box_intersection(origins, dirs, self.bound)
        bg = self.background(origins, dirs)
        rgb = bg.expand(b, r, 3).clone()
        depth = far.clone()  # misses: 0, as in forward()
        opacity = torch.zeros_like(far)
        counts = hit.sum(1)
        r_hit = int(counts.max()) if b else 0
        if r_hit == 0:
            return RenderOutput(rgb=rgb, depth=depth, opacity=opacity)
        # Hit rays first (stable), then misses; a batch shares one ray count, the extra misses are harmless.
        order = torch.argsort((~hit).to(torch.uint8), dim=1, stable=True)[:, :r_hit]
        pick3 = order[..., None].expand(-1, -1, 3)
        o_h, d_h = origins.gather(1, pick3), dirs.gather(1, pick3)
        n_h, f_h, hit_h = near.gather(1, order), far.gather(1, order), hit.gather(1, order)
        bg_h = bg.expand(b, r, 3).gather(1, pick3)
        outs = []
        ray_chunk = max(1, ray_chunk // b)  # rays per chunk summed over the batch
        for i in range(0, r_hit, ray_chunk):
            sl = slice(i, i + ray_chunk)
            rays = o_h[:, sl], d_h[:, sl], n_h[:, sl], f_h[:, sl], hit_h[:, sl]
            outs.append(self._render_chunk_inference(field, *rays, bg_h[:, sl]))
        rgb.scatter_(1, pick3, torch.cat([o[0] for o in outs], 1))
        depth.scatter_(1, order, torch.cat([o[1] for o in outs], 1))
        opacity.scatter_(1, order, torch.cat([o[2] for o in outs], 1))
        return RenderOutput(rgb=rgb, depth=depth, opacity=opacity)

    def _render_chunk(
        self,
        field: FieldFn,
        origins: Tensor,
        dirs: Tensor,
        near: Tensor,
        far: Tensor,
        hit: Tensor,
        bg: Tensor,
        perturb: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Coarse pass, importance pass (no gradient through the sample positions), compositing."""
        t_c = stratified_samples(near, far, self.coarse_samples, perturb, generator)  # (B,R,Sc)
        dens_c, rgb_c = self._query(field, origins, dirs, t_c)
        t_all, dens, rgb = t_c, dens_c, rgb_c
        if self.fine_samples > 0:
            t_f = self._importance_samples(t_c, dens_c, near, far, perturb, generator)
            dens_f, rgb_f = self._query(field, origins, dirs, t_f)
            t_all, order = torch.sort(torch.cat([t_c, t_f], -1), -1)
            dens = torch.cat([dens_c, dens_f], -1).gather(-1, order)
            rgb = torch.cat([rgb_c, rgb_f], -2).gather(-2, order[..., None].expand(*order.shape, 3))
        color, depth, opacity, _ = composite(dens, rgb, t_all, far)
        return self._over_background(color, depth, opacity, hit, far, bg)

    def _render_chunk_inference(
        self, field: FieldFn, origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor, hit: Tensor, bg: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`_render_chunk` without perturbation or autograd, with fewer and cheaper array passes.

        Same samples and weights; the colours are never re-ordered: the sorted weights are scattered
        back to the order the samples were evaluated in, and each pass's colours are summed in place
        (colour-major when the field returns them that way, as inference fields do).
        """
        t_c = stratified_samples(near, far, self.coarse_samples, False)  # (B,R,Sc)
        dens_c, rgb_c = self._query(field, origins, dirs, t_c)
        if self.fine_samples > 0:
            t_f = self._importance_samples(t_c, dens_c, near, far)
            dens_f, rgb_f = self._query(field, origins, dirs, t_f)
            t_all, order = torch.sort(torch.cat([t_c, t_f], -1), -1)
            weights = ray_weights(torch.cat([dens_c, dens_f], -1).gather(-1, order), t_all, far)
            unsorted = torch.empty_like(weights).scatter_(-1, order, weights)
            parts = [(unsorted[..., : self.coarse_samples], rgb_c), (unsorted[..., self.coarse_samples :], rgb_f)]
        else:
            t_all, weights = t_c, ray_weights(dens_c, t_c, far)
            parts = [(weights, rgb_c)]
        opacity = weights.sum(-1)
        depth = (weights * t_all).sum(-1) / opacity.clamp_min(1e-6)
        color = sum((rgb.movedim(-1, 0) * w).sum(-1) for w, rgb in parts).movedim(0, -1)  # (B,R,3)
        return self._over_background(color, depth, opacity, hit, far, bg)

    def _importance_samples(
        self, t_c: Tensor, dens_c: Tensor, near: Tensor, far: Tensor, perturb: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Fine-pass distances drawn from the coarse pass's weights (no gradient flows through them)."""
        with torch.no_grad():
            w_c = ray_weights(dens_c.detach(), t_c, far)
            mids = 0.5 * (t_c[..., 1:] + t_c[..., :-1])
            bins = torch.cat([near[..., None], mids, far[..., None]], -1)
            return sample_pdf(bins, w_c, self.fine_samples, perturb, generator)

    @staticmethod
    def _over_background(
        color: Tensor, depth: Tensor, opacity: Tensor, hit: Tensor, far: Tensor, bg: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Composite over the background; rays that miss the box get only the background (depth ``far``)."""
        hitf = hit.to(color.dtype)
        opacity = opacity * hitf
        color = color * hitf[..., None] + (1.0 - opacity[..., None]) * bg
        return color, torch.where(hit, depth, far), opacity

    @staticmethod
    def _query(field: FieldFn, origins: Tensor, dirs: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        b, r, s = t.shape
        points = origins[:, :, None, :] + dirs[:, :, None, :] * t[..., None]
        density, rgb = field(points.reshape(b, r * s, 3))
        return density.reshape(b, r, s), rgb.reshape(b, r, s, 3)
