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
        self.size, self.channels, self.bound, self.aggregate = n, c, float(bound), aggregate
        dev = planes.device
        self._u_axes = torch.tensor([u for u, _ in PLANE_AXES], device=dev)
        self._v_axes = torch.tensor([v for _, v in PLANE_AXES], device=dev)
        # First row of each plane, shifted by the border (+1 texel in both directions).
        self._base = torch.arange(3, device=dev) * side * side + side + 1

    @property
    def out_features(self) -> int:
        return feature_dim(self.channels, self.aggregate)

    def __call__(self, points: Tensor, batch_index: Tensor | None = None) -> Tensor:
        """Features ``(Q, F)`` at points ``(Q, 3)``; ``batch_index (Q,)`` picks each point's planes when not shared."""
        n, side, table = self.size, self.side, self.table
        if not self.shared and batch_index is None:
            raise ValueError(f"these triplanes hold {self.batch} scenes: pass batch_index to pick one per point")
        points = points.to(table.dtype)
        parts = []
        for axes in (self._u_axes, self._v_axes):
            x = points.index_select(1, axes)  # (Q, 3) coordinates along this plane axis, one column per plane
            # grid_sample's unnormalisation (align_corners=False): texel centres at integer coordinates.
            x = ((x / self.bound + 1) * n - 1) * 0.5
            torch.nan_to_num_(x, nan=-1.0).clamp_(-1.0, float(n))  # from here on every tap reads zero
            x0 = torch.floor(x)
            parts += [x - x0, x0.long()]
        fu, iu, fv, iv = parts
        rows = iv * side + iu + self._base  # (Q, 3): top-left tap of each plane
        if not self.shared:
            rows += batch_index[:, None] * (3 * side * side)
        gu, gv = 1 - fu, 1 - fv
        idx = torch.cat([rows, rows + 1, rows + side, rows + (side + 1)], 1)  # (Q, 12): 4 taps x 3 planes
        w = torch.cat([gv * gu, gv * fu, fv * gu, fv * fu], 1)
        if self.aggregate == "concat":
            q = points.shape[0]
            idx = idx.view(q, 4, 3).transpose(1, 2).reshape(q * 3, 4)
            w = w.view(q, 4, 3).transpose(1, 2).reshape(q * 3, 4)
            return F.embedding_bag(idx, table, per_sample_weights=w, mode="sum").view(q, 3 * self.channels)
        out = F.embedding_bag(idx, table, per_sample_weights=w, mode="sum")
        return out / 3 if self.aggregate == "mean" else out
