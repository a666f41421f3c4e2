"""Triplane feature sampling: project 3D points onto the xy, xz and yz planes and bilinearly sample."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Which world axes span each plane, in the order planes are stored: (u axis, v axis).
PLANE_AXES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))


def project_to_planes(points: Tensor, bound: float = 1.0) -> Tensor:
    """Plane coordinates in [-1, 1] for ``points (B, P, 3)`` inside ``[-bound, bound]^3``: ``(B, 3, P, 2)``."""
    p = points / bound
    return torch.stack([p[..., [u, v]] for u, v in PLANE_AXES], dim=1)


def sample_triplane(planes: Tensor, points: Tensor, bound: float = 1.0, aggregate: str = "sum") -> Tensor:
    """Sample triplane features at 3D points.

    Args:
        planes: ``(B, 3, C, N, N)`` features; plane ``k`` spans the axes ``PLANE_AXES[k]``,
            with the first axis along the width and the second along the height.
        points: ``(B, P, 3)`` world points; points outside the bound read zero-padded features.
        aggregate: ``"sum"``, ``"mean"`` or ``"concat"`` over the three planes.

    Returns:
        ``(B, P, C)`` features (``(B, P, 3C)`` for ``"concat"``).
    """
    if planes.ndim != 5 or planes.shape[1] != 3:
        raise ValueError(f"planes must be (B, 3, C, N, N), got {tuple(planes.shape)}")
    b, _, c, h, w = planes.shape
    grid = project_to_planes(points, bound).reshape(b * 3, 1, -1, 2).to(planes.dtype)
    feats = F.grid_sample(
        planes.reshape(b * 3, c, h, w), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (B*3, C, 1, P)
    feats = feats.reshape(b, 3, c, -1)
    if aggregate == "sum":
        out = feats.sum(1)
    elif aggregate == "mean":
        out = feats.mean(1)
    elif aggregate == "concat":
        out = feats.reshape(b, 3 * c, -1)
    else:
        raise ValueError(f"unknown aggregate {aggregate!r}")
    return out.transpose(1, 2)


def feature_dim(channels: int, aggregate: str) -> int:
    """Width of the aggregated feature for ``channels`` per plane."""
    return 3 * channels if aggregate == "concat" else channels


class TriplaneTable:
    """Triplanes re-laid out for fast, autograd-free lookups (the inference rendering path).

    The three planes become one ``(rows, C)`` table with one row per texel (channels contiguous) and
    a zero border, so a point's bilinear lookups are weighted ``embedding_bag`` sums over table rows.
    Results match :func:`sample_triplane` (``grid_sample``, zero padding, ``align_corners=False``) up to
    float rounding. A batch of identical planes (``planes.expand(B, ...)``, as when rendering several
    views of one scene) shares a single table.

    A lookup is two steps, :meth:`taps` (which rows, with which weights) and :meth:`gather`, so callers
    can compute the taps of many points at once and gather them in cache-sized slices.
    """

    def __init__(self, planes: Tensor, bound: float = 1.0, aggregate: str = "sum") -> None:
        if planes.ndim != 5 or planes.shape[1] != 3 or planes.shape[-1] != planes.shape[-2]:
            raise ValueError(f"planes must be (B, 3, C, N, N) with square planes, got {tuple(planes.shape)}")
        if aggregate not in ("sum", "mean", "concat"):
            raise ValueError(f"unknown aggregate {aggregate!r}")
        b, _, c, n, _ = planes.shape
        self.batch = b
        self.shared = b == 1 or planes.stride(0) == 0
        src = planes[:1] if self.shared else planes
        # Zero border, one texel before and two after: clamped taps never leave the table and read zeros.
        self.side = side = n + 3
        table = torch.empty(src.shape[0], 3, side, side, c, dtype=planes.dtype, device=planes.device)
        table[:, :, :1].zero_()
        table[:, :, n + 1 :].zero_()
        table[:, :, :, :1].zero_()
        table[:, :, :, n + 1 :].zero_()
        table[:, :, 1 : n + 1, 1 : n + 1] = src.detach().permute(0, 1, 3, 4, 2)
        self.table = table.view(-1, c)
        self._index_dtype = torch.int32 if self.table.shape[0] < 2**31 else torch.int64
        self.size, self.channels, self.bound, self.aggregate = n, c, float(bound), aggregate
        #: bags (rows of :meth:`taps`) per point: one per plane for "concat", else one for all three planes
        self.bags_per_point = 3 if aggregate == "concat" else 1
        # index maths in at least float32: table rows must be exact integers (< 2^24)
        dev, dt = planes.device, torch.promote_types(planes.dtype, torch.float32)
        self._coord_dtype = dt
        # Homogeneous (x, y, z, 1) @ _to_texels = grid_sample's texel coordinates (and the 1).
        to_texels = torch.eye(4, dtype=dt) * (0.5 * n / float(bound))
        to_texels[3] = torch.tensor([0.5 * (n - 1)] * 3 + [1.0], dtype=dt)
        self._to_texels = to_texels.to(dev)
        # Columns (plane k, tap (dv, du)), plane-major. For floor(texel coordinates) with the 1, @ _tap_rows
        # gives each tap's table row; for (1 - f, 1), @ _u_weights gives each tap's weight along the
        # plane's u axis (1 - f_u or f_u = 1 - (1 - f_u)), @ _v_weights along v.
        tap_rows = torch.zeros(4, 12, dtype=dt)
        u_weights, v_weights = torch.zeros(4, 12, dtype=dt), torch.zeros(4, 12, dtype=dt)
        for k, (u, v) in enumerate(PLANE_AXES):
            for tap, (dv, du) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                col = 4 * k + tap
                tap_rows[u, col], tap_rows[v, col] = 1.0, float(side)
                # plane k's first row, shifted by the border (+1 texel in both directions), plus the tap
                tap_rows[3, col] = k * side * side + (1 + dv) * side + 1 + du
                u_weights[u, col], u_weights[3, col] = (-1.0, 1.0) if du else (1.0, 0.0)
                v_weights[v, col], v_weights[3, col] = (-1.0, 1.0) if dv else (1.0, 0.0)
        self._tap_rows, self._u_weights, self._v_weights = tap_rows.to(dev), u_weights.to(dev), v_weights.to(dev)

    @property
    def out_features(self) -> int:
        return feature_dim(self.channels, self.aggregate)

    def __call__(self, points: Tensor, batch_index: Tensor | None = None) -> Tensor:
        """Features ``(Q, F)`` at points ``(Q, 3)``; ``batch_index (Q,)`` picks each point's planes when not shared."""
        idx, weights = self.taps(points, batch_index)
        return self.gather(idx, weights).view(points.shape[0], self.out_features)

    def taps(self, points: Tensor, batch_index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Table rows and bilinear weights for points ``(Q, 3)``: two ``(Q * bags_per_point, taps)`` tensors.

        12 taps per point (4 per plane) summed into one bag, or 4 taps in each of 3 bags for "concat".
        """
        if not self.shared and batch_index is None:
            raise ValueError(f"these triplanes hold {self.batch} scenes: pass batch_index to pick one per point")
        n, q = self.size, points.shape[0]
        # Homogeneous coordinates (x, y, z, 1) let small exact matrix products do the affine maps and
        # spread per-axis values to the 12 (plane, tap) columns, so every op is on contiguous arrays.
        x = torch.ones(q, 4, dtype=self._coord_dtype, device=self.table.device)
        x[:, :3] = points
        # grid_sample's unnormalisation (align_corners=False): texel centres at integer coordinates.
        x = torch.mm(x, self._to_texels)
        torch.nan_to_num_(x, nan=-1.0).clamp_(-1.0, float(n))  # from here on every tap reads zero; 1 stays 1
        x0 = torch.floor(x)
        idx = torch.mm(x0, self._tap_rows).to(self._index_dtype)  # (Q, 12) rows; exact: integers < 2^24
        lower = x0.sub_(x).add_(1.0)  # (1 - f_x, 1 - f_y, 1 - f_z, 1): weights of the lower texels
        weights = torch.mm(lower, self._u_weights).mul_(torch.mm(lower, self._v_weights))
        if self.aggregate == "mean":
            weights *= 1.0 / 3.0
        weights = weights.to(self.table.dtype)
        if not self.shared:
            idx += (batch_index[:, None] * (3 * self.side * self.side)).to(self._index_dtype)
        if self.aggregate == "concat":  # one bag of 4 taps per plane
            return idx.view(q * 3, 4), weights.view(q * 3, 4)
        return idx, weights

    def gather(self, idx: Tensor, weights: Tensor) -> Tensor:
        """Weighted sums of table rows for the bags of :meth:`taps`: ``(bags, C)``."""
        return F.embedding_bag(idx, self.table, per_sample_weights=weights, mode="sum")
