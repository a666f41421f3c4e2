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
