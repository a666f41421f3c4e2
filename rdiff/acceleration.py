"""Per-scene render acceleration: empty-space skipping and early ray termination on the exact samples.

A :class:`SceneAccelerator` is built once from a scene's triplane (its :class:`~rdiff.decoder.InferenceField`)
and renders like :meth:`VolumeRenderer.render_inference <rdiff.renderer.VolumeRenderer.render_inference>`: the
*same sample positions* (the same stratified coarse samples, importance samples drawn from the coarse weights by
the same code, the same compositing, background, depth and opacity), but it does not evaluate the field where a
sample's contribution is negligible; such samples get density 0.

* **Empty space** (:class:`DensityBoundGrid`): the density is evaluated once on a grid over the scene box, and
  each cell gets a bound: ``safety`` x the largest density at the corners of the cells around it. Along each ray,
  the samples with the smallest ``bound x spacing`` (the optical depth they can carry) are skipped while their sum
  stays within ``budget``; so a ray's opacity, and its colour, change by at most ``budget``.
* **Early ray termination**: samples are evaluated front to back, and a ray stops being evaluated once its
  transmittance is below ``epsilon``: every later sample's weight is then below ``epsilon`` in total, so the
  colour changes by at most ``epsilon``. Where the grid's bounds show a ray cannot have reached ``epsilon`` yet,
  its samples are evaluated in one go; the rest in windows of a few samples, after each of which the rays'
  transmittance is checked. The coarse pass stops on the coarse transmittance; the final pass (coarse + importance
  samples) stops on its own, and evaluates coarse samples the coarse pass left out where it still sees them.

Together the colour changes by at most ``budget + epsilon`` (3e-3, 0.77/255, by default) *if* the grid bounds the
density. That is not proven: the grid only sees the density at its corners (hence the dilation and the safety
factor), and the densities set to 0 move the importance samples slightly. ``tests/test_acceleration.py`` checks
the result against the exact path on a trained scene; ``benchmarks/bench_accel.py`` times both.

Skipping has a cost: its bookkeeping (grid lookups, per-ray budgets, compaction) is ~30 % of an exact render's
field evaluations on CPU, so it pays only where it leaves out more than that. A probe render at build time decides
once per scene (``max_fraction``); where it does not pay, renders take the exact path. :class:`~rdiff.scene.Scene`
renders through a ``SceneAccelerator`` when made with ``acceleration="skip"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rdiff.cameras import Cameras, orbit_cameras, to_triplane_frame
from rdiff.renderer import (
    FieldFn,
    RenderOutput,
    VolumeRenderer,
    ray_box_intersection,
    ray_weights,
    stratified_samples,
)

#: Default optical depth a ray may skip (sum of density bound x spacing over its skipped samples): its opacity,
#: and so its colour, change by at most this much (0.51/255).
SKIP_BUDGET = 2e-3
#: Default transmittance below which a ray stops being evaluated: at most this much colour error (0.26/255).
TERMINATION_EPSILON = 1e-3
#: Default resolution of the density-bound grid (cells per axis).
GRID_RESOLUTION = 64
#: Default evaluated fraction (of a probe render) above which skipping does not pay and renders take the exact
#: path (see ``SceneAccelerator``). Break-even measured on CPU (``benchmarks/bench_accel.py``, under load): ~0.65 with
#: 24+24 samples (clevr1-32), ~0.6 with 32+32 (chairs-64); below it the saving must also pay for the grid and probes.
MAX_FRACTION = 0.5
#: ... and above which a probe with a half-resolution grid gives up before the full grid is built
PRE_PROBE_FRACTION = 0.9

# Density bounds are stored as levels: level k < LEVELS stands for LEVEL_BASE * LEVEL_STEP**k, the bound rounded
# up; level NEVER for bounds above the top level (never skipped), and EXCLUDED marks samples evaluated anyway.
LEVEL_BASE = 1e-7
LEVEL_STEP = 2**0.5
LEVELS = 74  # top level: 1e-7 * 2^36.5 ~ 1e4
NEVER, EXCLUDED = LEVELS, LEVELS + 1


class DensityBoundGrid:
    """An estimated upper bound on the density in each cell of a ``G^3`` grid over ``[-bound, bound]^3``.

    ``cell_bound (G, G, G)``, indexed (x, y, z) in the triplane's frame (see :meth:`from_field`). Lookups return
    the bound rounded up to a level (:data:`LEVEL_BASE` x :data:`LEVEL_STEP` ^ level).
    """

    def __init__(self, cell_bound: Tensor, bound: float) -> None:
        if cell_bound.ndim != 3 or len(set(cell_bound.shape)) != 1:
            raise ValueError(f"cell_bound must be (G, G, G), got {tuple(cell_bound.shape)}")
        self.cell_bound = cell_bound.float().contiguous()
        self.resolution = g = cell_bound.shape[0]
        self.bound = float(bound)
        level = torch.log(self.cell_bound.clamp_min(LEVEL_BASE) / LEVEL_BASE) / math.log(LEVEL_STEP)
        level = torch.ceil(level - 1e-4).clamp_(0, NEVER)  # rounded up (the 1e-4: float noise at exact levels)
        self.levels = level.to(torch.int64).view(-1)  # int64: lookups index with it directly
        #: the density bound of each level: NEVER's is too large to skip, EXCLUDED's counts nothing
        self.level_density = LEVEL_BASE * LEVEL_STEP ** torch.arange(EXCLUDED + 1, dtype=torch.float32,
                                                                     device=cell_bound.device)
        self.level_density[NEVER], self.level_density[EXCLUDED] = 1e30, 0.0
        # cell coordinates (x, y, z) . _strides = the cell's row (exact in float32: G^3 <= 2^24)
        self._strides = torch.tensor([g * g, g, 1], dtype=torch.float32, device=cell_bound.device)

    @classmethod
    def from_field(cls, field: FieldFn, bound: float, resolution: int = GRID_RESOLUTION, dilation: int = 1,
                   safety: float = 2.0, chunk: int = 1 << 15) -> DensityBoundGrid:
        """Evaluate ``field`` at the ``(G + 1)^3`` cell corners; a cell's bound is ``safety`` x the largest corner
        density of the ``(2 dilation + 1)^3`` cells around it."""
        if not 1 <= resolution <= 256:
            raise ValueError("grid resolution must be between 1 and 256")
        density = cls.corner_densities(field, bound, resolution, chunk)
        return cls.from_corner_densities(density, bound, dilation, safety)

    @staticmethod
    def corner_densities(field: FieldFn, bound: float, resolution: int, chunk: int = 1 << 15) -> Tensor:
        """Density ``(G + 1, G + 1, G + 1)`` at the grid's cell corners (``field`` is called without autograd)."""
        device = getattr(field, "device", torch.device("cpu"))
        axis = torch.linspace(-bound, bound, resolution + 1, device=device)
        points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(1, -1, 3)
        out = []
        with torch.no_grad():
            for i in range(0, points.shape[1], chunk):
                out.append(field(points[:, i : i + chunk])[0][0].float())
        return torch.cat(out).reshape((resolution + 1,) * 3)

    @classmethod
    def from_corner_densities(cls, density: Tensor, bound: float, dilation: int = 1,
                              safety: float = 2.0) -> DensityBoundGrid:
        """The grid from corner densities ``(G + 1,) * 3`` (see :meth:`from_field`)."""
        cell_max = F.max_pool3d(density[None, None].float(), kernel_size=2, stride=1)  # (1, 1, G, G, G)
        if dilation > 0:
            cell_max = F.max_pool3d(cell_max, kernel_size=2 * dilation + 1, stride=1, padding=dilation)
        return cls(cell_max[0, 0] * safety, bound)

    def fraction_below(self, density: float) -> float:
        """Fraction of cells whose bound is below ``density``."""
        return float((self.cell_bound < density).float().mean())

    def level(self, points: Tensor) -> Tensor:
        """The bound's level at ``points (N, 3)`` (outside the box: the nearest cell): int64 ``(N,)``."""
        g = self.resolution
        cell = (points + self.bound).mul_(g / (2 * self.bound)).clamp_(0.0, g - 0.5).trunc_()
        return self.levels.index_select(0, torch.mv(cell, self._strides).to(torch.int32))

    def __call__(self, points: Tensor) -> Tensor:
        """The density bound (rounded up to its level) at ``points (..., 3)``: ``(...)``."""
        level = self.level(points.reshape(-1, 3))
        return self.level_density[level].reshape(points.shape[:-1])


def skippable(levels: Tensor, deltas: Tensor, level_density: Tensor, budget: float,
              exclude: Tensor | None = None) -> Tensor:
    """Which samples a ray may skip: the most samples, lowest density-bound levels first (whole levels), whose
    optical-depth bounds (level density x spacing) sum to at most ``budget``.

    ``levels (R, S)`` (int64, see :class:`DensityBoundGrid`), ``deltas (R, S)``; ``exclude (R, S)`` marks samples
    that are evaluated anyway: neither skipped nor counted. Returns bool ``(R, S)``.
    """
    levels, depth = _depth_bounds(levels, deltas, level_density, exclude)
    return _skippable(levels, depth, level_density.shape[0], budget)


def _depth_bounds(levels: Tensor, deltas: Tensor, level_density: Tensor,
                  exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Levels (``EXCLUDED`` where ``exclude``) and optical-depth bounds ``(R, S)`` (0 where ``exclude``)."""
    if exclude is not None:
        levels = levels.masked_fill(exclude, EXCLUDED)
    return levels, level_density.index_select(0, levels.view(-1)).view_as(deltas).mul_(deltas)


def _skippable(levels: Tensor, depth: Tensor, n_levels: int, budget: float) -> Tensor:
    if budget <= 0:
        return torch.zeros_like(levels, dtype=torch.bool)
    per_level = torch.zeros(levels.shape[0], n_levels, dtype=depth.dtype, device=depth.device)
    per_level.scatter_add_(1, levels, depth)
    # levels 0, 1, ... are skipped while their cumulative optical depth stays within the budget
    n_skipped = (per_level.cumsum_(1) <= budget).sum(1, keepdim=True).clamp_(max=NEVER)
    return levels < n_skipped


@dataclass
class AccelStats:
    """Field evaluations of the last render: what the exact path would evaluate and what was evaluated."""

    rays_hit: int = 0
    points_exact: int = 0  #: hit rays x (coarse + fine samples): the exact path's evaluations
    points_evaluated: int = 0
    coarse_evaluated: int = 0
    final_evaluated: int = 0
    field_calls: int = 0
    exact_path: bool = False  #: rendered on the exact path (see ``SceneAccelerator.max_fraction``)

    @property
    def fraction(self) -> float:
        """Evaluated / exact (0 when no ray hit the box)."""
        return self.points_evaluated / self.points_exact if self.points_exact else 0.0


class SceneAccelerator:
    """Renders one scene's field like ``renderer.render_inference(field, ...)``, skipping negligible samples.

    Args:
        renderer: the model's :class:`VolumeRenderer` (sample counts, bound, background).
        field: the scene's inference field (one triplane; every view of the scene shares it).
        grid: its :class:`DensityBoundGrid` (default: built from ``field`` with ``grid_resolution``, ``dilation``
            and ``safety``).
        budget: optical depth each ray may skip (see the module doc); 0 skips no empty space.
        epsilon: transmittance below which a ray stops being evaluated; 0 never stops.
        window: samples per ray evaluated at a time where a ray might already be behind ``epsilon`` (default: an
            eighth of the pass's samples, at least 2); see :meth:`_march`.
        ray_chunk: rays per pass (all views together).
        max_fraction: skipping pays only where it leaves out enough: its bookkeeping costs about a third of an exact
            render's field evaluations on CPU. So a probe render (:meth:`probe`: 24x24 rays from a fixed viewpoint)
            is made when the accelerator is built (first with a half-resolution grid, given up on above
            :data:`PRE_PROBE_FRACTION`), and if it evaluated more than this fraction of the exact path's
            points, every render takes the exact path (``renderer.render_inference``) instead (:attr:`enabled`).
            One decision per scene, so a view renders the same every time. ``None``: always accelerate.
    """

    def __init__(
        self,
        renderer: VolumeRenderer,
        field: FieldFn,
        grid: DensityBoundGrid | None = None,
        *,
        grid_resolution: int = GRID_RESOLUTION,
        dilation: int = 1,
        safety: float = 2.0,
        budget: float = SKIP_BUDGET,
        epsilon: float = TERMINATION_EPSILON,
        window: int | None = None,
        ray_chunk: int = 2048,
        max_fraction: float | None = MAX_FRACTION,
    ) -> None:
        self.renderer = renderer
        self.field = field
        self.grid = grid
        build = grid is None
        if build and max_fraction is not None:
            # a grid at half the resolution first (an eighth of the evaluations, more conservative): where its probe
            # skips next to nothing, the full grid would not pay either
            self.grid = DensityBoundGrid.from_field(field, renderer.bound, max(1, grid_resolution // 2), dilation,
                                                    safety)
        elif build:
            self.grid = DensityBoundGrid.from_field(field, renderer.bound, grid_resolution, dilation, safety)
        self.budget = float(budget)
        self.epsilon = float(epsilon)
        self.window = None if window is None else max(1, int(window))
        self.ray_chunk = max(1, int(ray_chunk))
        self.max_fraction = max_fraction
        self.last_stats = AccelStats()
        #: whether renders are accelerated (else they take the exact path); see ``max_fraction``
        self.enabled = True
        #: evaluated fraction of the probe render (None: no probe made)
        self.probe_fraction: float | None = None
        if max_fraction is not None:
            self.probe_fraction = self.probe()
            if build and self.probe_fraction <= PRE_PROBE_FRACTION:
                self.grid = DensityBoundGrid.from_field(field, renderer.bound, grid_resolution, dilation, safety)
                self.probe_fraction = self.probe()
            self.enabled = self.probe_fraction <= max_fraction

    @property
    def device(self) -> torch.device:
        return self.grid.cell_bound.device

    @property
    def max_error(self) -> float:
        """The colour change per ray the skipping allows, if the grid bounds the density (see the module doc)."""
        return self.budget + self.epsilon

    # ------------------------------------------------------------------------------------------ API
    @torch.no_grad()
    def render(self, origins: Tensor, dirs: Tensor) -> RenderOutput:
        """Render rays ``origins, dirs (..., 3)`` (unit directions, triplane frame), as ``render_inference``.

        Accelerated, or on the exact path while skipping does not pay (see ``max_fraction``).
        """
        shape = origins.shape[:-1]
        o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        if not self.enabled:
            out = self.renderer.render_inference(self.field, o[None], d[None])
            n = int(ray_box_intersection(o, d, self.renderer.bound)[2].sum())
            s = self.renderer.coarse_samples + self.renderer.fine_samples
            self.last_stats = AccelStats(rays_hit=n, points_exact=n * s, points_evaluated=n * s, exact_path=True)
            return RenderOutput(rgb=out.rgb.reshape(*shape, 3), depth=out.depth.reshape(shape),
                                opacity=out.opacity.reshape(shape))
        near, far, hit = ray_box_intersection(o, d, self.renderer.bound)
        bg = self.renderer.background(o, d).expand(o.shape[0], 3)
        rgb = bg.clone()
        depth = far.clone()  # misses: 0, as in the exact path
        opacity = torch.zeros_like(far)
        stats = AccelStats()
        idx = hit.nonzero().squeeze(1)
        for i in range(0, idx.shape[0], self.ray_chunk):
            sel = idx[i : i + self.ray_chunk]
            c, dep, op = self._render_hit(o[sel], d[sel], near[sel], far[sel], bg[sel], stats)
            rgb[sel], depth[sel], opacity[sel] = c, dep, op
        self.last_stats = stats
        return RenderOutput(rgb=rgb.reshape(*shape, 3), depth=depth.reshape(shape), opacity=opacity.reshape(shape))

    def probe(self, size: int = 24) -> float:
        """The evaluated fraction of an accelerated ``size`` x ``size`` render from a fixed viewpoint (azimuth 45,
        elevation 30 degrees, 3 box half-widths from the centre, 45 degree field of view)."""
        cams = orbit_cameras(45.0, 30.0, 3.0 * self.renderer.bound, math.radians(45.0)).to(self.device)
        enabled, self.enabled = self.enabled, True
        try:
            self.render(*cams.pixel_rays(size, size))
        finally:
            self.enabled = enabled
        return self.last_stats.fraction

    def render_cameras(self, triplane_cameras: Cameras, height: int, width: int) -> RenderOutput:
        """Full images from cameras expressed in the triplane's frame (not world space), as ``model.render``:
        rgb ``(B, 3, H, W)``."""
        origins, dirs = triplane_cameras.pixel_rays(height, width)
        out = self.render(origins, dirs)
        return RenderOutput(rgb=out.rgb.permute(0, 3, 1, 2), depth=out.depth, opacity=out.opacity)

    def render_world(self, triplane_rotations: Tensor, cameras: Cameras, height: int, width: int) -> RenderOutput:
        """As ``model.render_world``: world-space ``cameras``, world-from-triplane rotations ``(B, 3, 3)``."""
        return self.render_cameras(to_triplane_frame(cameras, triplane_rotations.to(cameras.c2w)), height, width)

    # ------------------------------------------------------------------------------------- internals
    def _march(self, points: Tensor, need: Tensor, deltas: Tensor, dens: Tensor, rgb: Tensor,
               depth: Tensor, stats: AccelStats, done: Tensor) -> int:
        """Evaluate the samples where ``need (R, S)`` front to back, leaving out those behind ``epsilon``.

        ``points (R, S, 3)``: samples sorted along each ray, with spacings ``deltas (R, S)``; writes ``dens (R, S)``,
        ``rgb (R, S, 3)`` and marks ``done (R, S)`` where evaluated (``dens`` already holds the densities where
        ``done``). ``depth``: the grid's optical-depth bounds of the samples not done (0 where done).

        The density bounds (known densities where ``done``) bound each sample's optical depth from above, so
        wherever their sum in front of a sample is below ``log(1 / epsilon)``, the ray is surely still visible:
        those samples are evaluated at once. The rest go in windows of a few samples per ray, each after the rays'
        transmittance in front of it is known (with the exact path's factors ``1 - alpha + 1e-10``), and rays
        below ``epsilon`` drop out. Returns the number of evaluations.
        """
        r, s = need.shape
        eps = self.epsilon
        flat_pts, flat_dens, flat_rgb, flat_done = points.view(-1, 3), dens.view(-1), rgb.view(-1, 3), done.view(-1)

        def evaluate(mask: Tensor) -> int:
            flat = mask.view(-1).nonzero().squeeze(1)
            if flat.numel():
                d, c = self.field(flat_pts.index_select(0, flat)[None])
                flat_dens.index_copy_(0, flat, d[0].to(dens.dtype))
                flat_rgb.index_copy_(0, flat, c[0].to(rgb.dtype))
                flat_done[flat] = True
                stats.field_calls += 1
            return flat.numel()

        if eps <= 0:
            return evaluate(need)
        bound = torch.addcmul(depth, dens, deltas)  # known densities where done, the grid's bounds elsewhere
        before = bound.cumsum_(1).sub_(bound)  # bound on the optical depth in front of each sample
        surely_live = before < math.log(1.0 / eps)
        count = evaluate(need & surely_live)
        pending = need & ~surely_live
        if not bool(pending.any()):
            return count
        # windows of `width` samples per ray, from the first sample that might lie behind epsilon
        width = self.window or max(2, s // 8)
        start = surely_live.sum(1, keepdim=True)  # the bound's cumulative sum is non-decreasing
        index = torch.arange(s, device=need.device)[None, :] - start  # position relative to the window start
        seen = index < 0  # samples in front of the current window
        trans = torch.where(seen, torch.exp(-dens * deltas) + 1e-10, torch.ones_like(dens)).prod(1)
        for lo in range(0, s, width):
            live = trans >= eps
            window = (index >= lo) & (index < lo + width)
            mask = pending & window & live[:, None]
            if not bool(mask.any()):
                if not bool((pending & (index >= lo) & live[:, None]).any()):
                    break
            else:
                count += evaluate(mask)
            trans = trans * torch.where(window, torch.exp(-dens * deltas) + 1e-10, torch.ones_like(dens)).prod(1)
        return count

    def _render_hit(self, o: Tensor, d: Tensor, near: Tensor, far: Tensor, bg: Tensor,
                    stats: AccelStats) -> tuple[Tensor, Tensor, Tensor]:
        """Rays ``(R,)`` that hit the box -> colour over the background, depth, opacity (as the exact path)."""
        ren, grid = self.renderer, self.grid
        sc, sf = ren.coarse_samples, ren.fine_samples
        r = o.shape[0]
        stats.rays_hit += r
        stats.points_exact += r * (sc + sf)
        o3, d3 = o[:, None, :], d[:, None, :]

        # Coarse pass: the exact path's stratified samples, front to back, skipping what the budget allows.
        t_c = stratified_samples(near, far, sc, False)  # (R, Sc)
        pts_c = o3 + d3 * t_c[..., None]  # computed as the exact path does
        level_c = grid.level(pts_c.view(-1, 3)).view(r, sc)
        deltas_c = _deltas(t_c, far)
        _, depth_c = _depth_bounds(level_c, deltas_c, grid.level_density)
        need_c = ~_skippable(level_c, depth_c, grid.level_density.shape[0], self.budget)
        dens_c = torch.zeros_like(t_c)
        rgb_c = torch.zeros_like(pts_c)
        done_c = torch.zeros_like(need_c)
        n_c = self._march(pts_c, need_c, deltas_c, dens_c, rgb_c, depth_c, stats, done_c)
        stats.coarse_evaluated += n_c
        stats.points_evaluated += n_c
        if sf == 0:
            weights = ray_weights(dens_c, t_c, far)
            opacity = weights.sum(-1)
            depth = (weights * t_c).sum(-1) / opacity.clamp_min(1e-6)
            color = torch.bmm(weights[:, None, :], rgb_c).squeeze(1)
            return ren._over_background(color, depth, opacity, torch.ones_like(far, dtype=torch.bool), far, bg)

        # Final pass, in sorted order: the importance samples are drawn from the coarse weights (skipped samples:
        # density 0) by the exact path's code; coarse samples the coarse pass evaluated are reused, and every other
        # sample (importance samples, coarse samples left out so far) is evaluated unless skipped.
        t_f = ren._importance_samples(t_c, dens_c, near, far)
        level_f = grid.level((o3 + d3 * t_f[..., None]).view(-1, 3)).view(r, sf)
        t_all, order = torch.sort(torch.cat([t_c, t_f], -1), -1)
        pts = o3 + d3 * t_all[..., None]
        pad = torch.zeros(r, sf, dtype=t_c.dtype, device=t_c.device)
        dens = torch.cat([dens_c, pad], -1).gather(1, order)
        done = torch.cat([done_c, pad.bool()], -1).gather(1, order)
        level = torch.cat([level_c, level_f], -1).gather(1, order)
        deltas = _deltas(t_all, far)
        level, depth = _depth_bounds(level, deltas, grid.level_density, exclude=done)
        skip = _skippable(level, depth, grid.level_density.shape[0], self.budget)
        rgb = torch.zeros_like(pts)  # colours evaluated in this pass (sorted); the coarse pass's stay in rgb_c
        n_f = self._march(pts, ~(done | skip), deltas, dens, rgb, depth, stats, done.clone())
        stats.final_evaluated += n_f
        stats.points_evaluated += n_f
        weights = ray_weights(dens, t_all, far)
        opacity = weights.sum(-1)
        depth = (weights * t_all).sum(-1) / opacity.clamp_min(1e-6)
        w_coarse = torch.empty_like(weights).scatter_(1, order, weights)[:, :sc]  # in the coarse pass's order
        color = torch.bmm(weights[:, None, :], rgb).squeeze(1) + torch.bmm(w_coarse[:, None, :], rgb_c).squeeze(1)
        return ren._over_background(color, depth, opacity, torch.ones_like(far, dtype=torch.bool), far, bg)


def _deltas(t: Tensor, far: Tensor) -> Tensor:
    """Spacings of sorted samples ``t (R, S)`` as in :func:`rdiff.renderer.ray_weights` (the last: to ``far``)."""
    return torch.cat([t[..., 1:] - t[..., :-1], (far[..., None] - t[..., -1:]).clamp_min(0.0)], -1)
