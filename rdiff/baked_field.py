"""A scene's field baked on a grid aligned with its triplane: renders that match the exact path, several times faster.

A triplane's features are bilinear between texel centres, so on a grid whose knots are the texel centres and
``subdivision - 1`` evenly spaced points between neighbours, trilinear interpolation of the knots reproduces the
features exactly: only the decoder MLP and its output activations bend between knots. :class:`BakedField` evaluates
the decoder at every knot once, and then answers a point by interpolating the 8 knots around it: 8 table values of
4 numbers instead of 12 rows of ``n_f`` numbers and the MLP. The table holds the colour after its sigmoid (flat where
colours saturate, and no activation per point) and the density *before* its softplus (a surface is a ramp there, a
kink after the softplus), so a lookup applies the density activation alone.

Where the MLP bends too much for that (sharp surfaces), a cell is marked *exact* and its points go through the exact
field. The interpolation error of a cell is estimated from the second differences of the table at the knots along
each axis (linear interpolation misses ``h^2 f'' / 8`` at a cell's middle): colour error directly, raw density error
times the softplus' slope and the cell's diagonal (the optical depth a ray can pick up crossing it). A cell is exact
where either exceeds ``tolerance``. These are estimates, not bounds: :func:`bake_field` checks a probe render
against the exact path and tightens the tolerance until the probe agrees (or gives up and bakes nothing).
``benchmarks/bench_accel.py`` times it and measures the pixel error on trained scenes; ``tests/test_baked_field.py``
checks it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from rdiff.decoder import InferenceField
from rdiff.renderer import FieldSample

#: Knots per triplane texel along each axis.
SUBDIVISION = 2
#: Default estimated colour / optical-depth error above which a cell is evaluated exactly (0.77/255).
TOLERANCE = 3e-3
#: Largest colour difference (float, 0..1) a probe render may show against the exact path (0.75/255).
PROBE_TOLERANCE = 0.75 / 255
#: Largest table a bake may allocate (bytes): 64^2 triplanes need 72 MB; 128^2 ones 0.56 GB and 256^2 ones 4.4 GB,
#: which are refused (their scenes render exactly).
MAX_TABLE_BYTES = 256 << 20
#: Points per knot-evaluation pass while baking.
BAKE_CHUNK = 1 << 18


class BakedField:
    """A scene's :class:`~rdiff.decoder.InferenceField` baked on a knot grid: a fast :data:`~rdiff.renderer.FieldFn`.

    ``field(points (B, P, 3)) -> FieldSample``: trilinear interpolation of the table (raw density, colour) at the
    knots, then the density activation; points in cells marked exact (see :meth:`mark_exact`) are evaluated by
    ``field`` itself.
    The grid covers the triplane's sampled extent (``bound * (1 + 1/N)``: the outermost texel centres and the zero
    border); points outside it are clamped onto it. One scene only (a shared or single-scene field).
    """

    #: Rays per renderer pass (``VolumeRenderer.render_inference`` reads it): a lookup is a few cheap array passes,
    #: so passes larger than the exact field's spread their fixed costs (a 64x64 frame of a trained chairs-64
    #: scene, 2 threads: ~48 ms in passes of 1024 rays, ~35 ms in one of 4096).
    ray_chunk = 4096

    def __init__(self, field: InferenceField, subdivision: int = SUBDIVISION, tolerance: float = TOLERANCE) -> None:
        table = field.table
        if not table.shared:  # (one scene's planes, or one scene's expanded over a batch of views)
            raise ValueError("a baked field holds one scene: bake each scene's field on its own")
        if subdivision < 2:
            raise ValueError("subdivision must be at least 2 (the error estimate needs a knot inside each texel)")
        if table_bytes(table.size, subdivision) > MAX_TABLE_BYTES:
            raise ValueError(f"a {table.size}^2 triplane's baked table would take "
                             f"{table_bytes(table.size, subdivision) / 2**20:.0f} MB (at most "
                             f"{MAX_TABLE_BYTES / 2**20:.0f} MB): render it exactly")
        self.field = field
        n, bound = table.size, table.bound
        self.extent = bound * (1.0 + 1.0 / n)  # knots at the texel centres from the zero border's to the other's
        self.subdivision = subdivision
        self.knots = k = (n + 1) * subdivision + 1
        self.spacing = 2.0 * self.extent / (k - 1)
        dev, dt = field.device, table.table.dtype
        raw = self._bake(k, dev, dt)  # (K^3, 4) raw density and rgb; row (z * K + y) * K + x
        # Each row holds a knot and its +x neighbour, so a lookup gathers the 4 (y, z) corners of its cell and
        # interpolates along x itself: half the gathered rows of 8 single corners (the last x knot never starts a
        # cell, so what its row pairs with is never read).
        self.table = torch.cat([raw, torch.cat([raw[1:], raw[-1:]])], 1)  # (K^3, 8)
        self._strides = torch.tensor([[1.0], [k], [k * k]], device=dev)  # knot coordinates -> table row
        self._offsets = torch.tensor([0, k, k * k, k * k + k], dtype=torch.int32, device=dev)  # (y, z) corners
        self.tolerance = tolerance
        self.exact_cells = self.mark_exact(tolerance)
        self.points_seen = 0  #: points looked up so far
        self.points_exact = 0  #: ... of which evaluated by the exact field

    @torch.no_grad()
    def _bake(self, k: int, dev: torch.device, dt: torch.dtype) -> Tensor:
        axis = torch.linspace(-self.extent, self.extent, k, device=dev, dtype=dt)
        z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
        knots = torch.stack([x, y, z], -1).reshape(1, -1, 3)
        raw = torch.empty(k**3, 4, dtype=dt, device=dev)
        for i in range(0, k**3, BAKE_CHUNK):
            raw[i : i + BAKE_CHUNK] = self._table_rows(knots[:, i : i + BAKE_CHUNK])
        return raw

    def _table_rows(self, points: Tensor) -> Tensor:
        """The table's entries ``(P, 4)`` at ``points (1, P, 3)``: the raw density and the (activated) colour."""
        raw = self.field.raw(points).t()
        return torch.cat([raw[:, :1], self.field.activate(raw).rgb], 1)

    @torch.no_grad()
    def mark_exact(self, tolerance: float) -> Tensor:
        """Cells whose estimated interpolation error exceeds ``tolerance``: a ``(K^3,)`` bool table by lower corner.

        Also sets :attr:`exact_cells` and :attr:`tolerance`. Cheap (no field evaluations): tighten and re-mark freely.
        """
        k, s = self.knots, self.subdivision
        raw = self.table[:, :4].reshape(k, k, k, 4)
        eps = 1e-3
        act = self.field.activate_density
        slope = (act(raw[..., 0] + eps) - act(raw[..., 0] - eps)) / (2 * eps)  # the softplus' slope at each knot
        scale = torch.ones_like(raw)
        scale[..., 0] = slope * (self.spacing * math.sqrt(3.0))
        cell_error = torch.zeros(k - 1, k - 1, k - 1, dtype=raw.dtype, device=raw.device)
        for axis in range(3):
            # Second differences at the knots inside each texel interval (features are linear there along this
            # axis, so they see only the MLP's bending, not the features' kinks at the texel centres) ...
            along, intervals = raw.movedim(axis, 0), (k - 1) // s
            r = along[:-1].unflatten(0, (intervals, s))  # each interval's knots but its closing one ...
            nxt = torch.cat([r[1:, :1], along[-1:][None]], 0)  # ... which opens the next
            seg = torch.cat([r, nxt], 1)  # (intervals, s + 1, K, K, 4)
            second = (seg[:, :-2] - 2 * seg[:, 1:-1] + seg[:, 2:]).abs()
            sc = scale.movedim(axis, 0)[:-1].unflatten(0, (intervals, s))[:, 1:]
            err = (second * sc).amax((1, -1)) / 8.0  # (intervals, K, K): the worst channel, activated
            err = err.repeat_interleave(s, 0)  # ... for each of the interval's cells, along the other axes' knots
            err = F.max_pool2d(err[:, None], kernel_size=2, stride=1)[:, 0]  # the cell's four edges on this axis
            torch.maximum(cell_error, err.movedim(0, axis), out=cell_error)
        exact = torch.zeros(k, k, k, dtype=torch.bool, device=raw.device)
        exact[:-1, :-1, :-1] = cell_error > tolerance
        self.exact_cells, self.tolerance = exact.view(-1), float(tolerance)
        return self.exact_cells

    @property
    def exact_fraction(self) -> float:
        """Fraction of the grid's cells evaluated exactly."""
        k = self.knots
        return float(self.exact_cells.sum()) / (k - 1) ** 3

    @property
    def device(self) -> torch.device:
        return self.field.device

    def __call__(self, points: Tensor) -> FieldSample:
        """Density ``(B, P)`` and rgb ``(B, P, 3)`` at ``points (B, P, 3)``."""
        b, p, _ = points.shape
        q = b * p
        flat = points.reshape(q, 3)
        x = flat.add(self.extent).mul_(1.0 / self.spacing)  # knot coordinates
        torch.nan_to_num_(x, nan=0.0).clamp_(0.0, self.knots - 1.001)
        x0 = torch.floor(x)
        cell = torch.mm(x0, self._strides).view(q).to(torch.int32)  # lower corner's row (< 2^24: exact)
        frac = x.sub_(x0)
        pairs = F.embedding_bag(cell[:, None] + self._offsets, self.table, per_sample_weights=_yz_weights(frac),
                                mode="sum")  # (Q, 8): interpolated in y and z at the lower and upper x
        lower = pairs[:, :4]
        # written colour-major (as the exact field's outputs): density a contiguous row, rgb a (Q, 3) view
        out = torch.empty(4, q, dtype=lower.dtype, device=lower.device).t()
        torch.addcmul(lower, pairs[:, 4:] - lower, frac[:, :1], out=out)
        exact = self.exact_cells.index_select(0, cell).nonzero().view(-1)  # (faster than [cell])
        if exact.numel():
            out[exact] = self._table_rows(flat[exact][None])
        self.points_seen += q
        self.points_exact += int(exact.numel())
        density = self.field.activate_density(out[:, 0])  # a contiguous row
        return FieldSample(density.view(b, p), out[:, 1:].view(b, p, 3))


def _yz_weights(frac: Tensor) -> Tensor:
    """Bilinear weights ``(Q, 4)`` of a cell's (y, z) corners (0, 0), (1, 0), (0, 1), (1, 1) from the fractional
    positions ``frac (Q, 3)``: four cheap column passes (a (Q, 3) x (3, 8) product and a product of its halves
    took ~5x as long)."""
    fy, fz = frac[:, 1:2], frac[:, 2:3]
    w = torch.empty(frac.shape[0], 4, dtype=frac.dtype, device=frac.device)
    torch.mul(fy, fz, out=w[:, 3:])  # fy fz
    torch.sub(fz, w[:, 3:], out=w[:, 2:3])  # (1 - fy) fz
    torch.sub(fy, w[:, 3:], out=w[:, 1:2])  # fy (1 - fz)
    torch.add(fz, w[:, 1:2], out=w[:, :1]).neg_().add_(1.0)  # 1 - fz - fy (1 - fz) = (1 - fy)(1 - fz)
    return w


def table_bytes(triplane_size: int, subdivision: int = SUBDIVISION) -> int:
    """Bytes of the baked table of an ``N x N`` triplane: ``K^3`` rows of 8 float32, ``K = (N + 1) s + 1``."""
    k = (triplane_size + 1) * subdivision + 1
    return k**3 * 8 * 4


RenderFn = Callable[[Callable[[Tensor], FieldSample]], Tensor]


@torch.no_grad()
def bake_field(field: InferenceField, probe: RenderFn, subdivision: int = SUBDIVISION, tolerance: float = TOLERANCE,
               probe_tolerance: float = PROBE_TOLERANCE, attempts: int = 3) -> BakedField | None:
    """Bake ``field`` and check it: ``probe(fn)`` renders probe views through a field and returns their colours.

    Where the baked probe differs from the exact one by more than ``probe_tolerance`` anywhere, the cells are
    re-marked with a 4x tighter tolerance, up to ``attempts`` times; ``None`` if it still differs, or if the table
    would exceed :data:`MAX_TABLE_BYTES` (render exactly).
    """
    if table_bytes(field.table.size, subdivision) > MAX_TABLE_BYTES:
        return None
    baked = BakedField(field, subdivision, tolerance)
    reference = probe(field)
    for attempt in range(attempts):
        if attempt:
            baked.mark_exact(baked.tolerance / 4.0)
        if float((probe(baked) - reference).abs().max()) <= probe_tolerance:
            return baked
    return None
