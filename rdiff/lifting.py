"""Geometry-aware encoder options: projective lifting of image features onto the triplane, and per-pixel
Plücker ray embeddings of the input camera.

Both connect image regions to the triplane regions they see (the paper's own future-work note) without changing
the 3D representation: the encoder still emits a plain triplane, so rendering, scenes, meshes and splats are
untouched. Both start as exact no-ops (zero-initialised output layers), so they can be switched on for a model
that was trained without them and fine-tuned from its weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rdiff.cameras import Cameras
from rdiff.triplane import PLANE_AXES

#: Channels of the Plücker ray embedding: unit direction d and moment o x d.
RAY_CHANNELS = 6


def plane_points(size: int, depths: int, bound: float = 1.0) -> Tensor:
    """3D points ``(3, N, N, K, 3)`` behind each triplane texel: for plane ``k`` (spanning ``PLANE_AXES[k]``,
    first axis along the width), texel ``(i, j)``'s centre at ``K`` evenly spaced depths along the third axis.

    Texel centres follow :func:`rdiff.triplane.sample_triplane` (``align_corners=False``): a point sampled there
    reads exactly that texel.
    """
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    depth = (torch.arange(depths, dtype=torch.float32) + 0.5) / depths * 2 - 1
    rows, cols, ks = torch.meshgrid(centres, centres, depth, indexing="ij")  # (N, N, K): height, width, depth
    out = torch.zeros(3, size, size, depths, 3)
    for k, (u, v) in enumerate(PLANE_AXES):
        w = 3 - u - v  # the axis the plane does not span
        out[k, ..., u] = cols
        out[k, ..., v] = rows
        out[k, ..., w] = ks
    return out * bound


def plucker_rays(cameras: Cameras, height: int, width: int) -> Tensor:
    """Per-pixel Plücker embeddings ``(B, 6, H, W)`` of ``cameras``' rays: direction d and moment o x d."""
    origins, dirs = cameras.pixel_rays(height, width)
    moment = torch.linalg.cross(origins, dirs, dim=-1)
    return torch.cat([dirs, moment], dim=-1).permute(0, 3, 1, 2)


def image_grid(cameras: Cameras, points: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Where ``cameras`` see ``points (B, P, 3)``: ``grid_sample`` coordinates ``(B, P, 2)`` in an image of this
    size (``align_corners=False``), and whether each point is in front of its camera ``(B, P)``."""
    pixels = cameras.project(points, height, width)
    grid = torch.stack([pixels[..., 0] / width, pixels[..., 1] / height], dim=-1) * 2 - 1
    offset = points - cameras.position[:, None, :]
    in_front = torch.einsum("bpi,bi->bp", offset, -cameras.c2w[:, :3, 2]) > 1e-6  # along the viewing axis
    return grid, in_front


def sample_image(features: Tensor, cameras: Cameras, points: Tensor) -> Tensor:
    """Bilinear features ``(B, C, 1, P)`` of ``features (B, C, H, W)`` where ``cameras`` see ``points (B, P, 3)``;
    zeros for points outside the image or behind the camera. The geometry runs in the cameras' and points' dtype
    (float32 for the encoder: half precision would misplace the samples), the lookup in the features'."""
    grid, in_front = image_grid(cameras, points, features.shape[-2], features.shape[-1])  # in the cameras' dtype
    grid = torch.where(in_front[..., None], grid, torch.full_like(grid, 2.0))  # off the image: zero padding
    return F.grid_sample(features, grid[:, None].to(features.dtype), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


class ProjectiveLift(nn.Module):
    """Image features -> a triplane residual: each texel reads the feature map where the input camera sees
    the points behind it (``K`` depths through the scene box), and a zero-initialised 1x1 convolution maps
    those ``K x C`` features to the texel's ``n_f`` channels.

    ``forward(features (B, c, M, M), cameras)`` with ``cameras`` in the triplane frame returns
    ``(B, 3, n_f, N, N)``. Points the camera cannot see (behind it or outside the image) read zeros.
    """

    def __init__(self, in_channels: int, features: int, depths: int, triplane_channels: int, triplane_size: int,
                 bound: float) -> None:
        super().__init__()
        self.features, self.depths, self.size = features, depths, triplane_size
        norm = nn.GroupNorm(math.gcd(32, in_channels), in_channels)
        self.head = nn.Sequential(norm, nn.SiLU(), nn.Conv2d(in_channels, features, 1))
        self.out = nn.Conv2d(features * depths, triplane_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.bound = bound
        self._points: Tensor | None = None  # (3 N^2 K, 3), float32; not a buffer (DDP would broadcast it every step)

    def points(self, device: torch.device) -> Tensor:
        """The texel points :func:`plane_points`, flattened ``(3 N^2 K, 3)``, float32 on ``device``."""
        if self._points is None or self._points.device != device:
            self._points = plane_points(self.size, self.depths, self.bound).reshape(-1, 3).to(device)
        return self._points

    def forward(self, features: Tensor, cameras: Cameras) -> Tensor:
        b = features.shape[0]
        points = self.points(features.device)[None].expand(b, -1, -1)
        sampled = sample_image(self.head(features), cameras.to(features.device, torch.float32), points)
        n, k, c = self.size, self.depths, self.features
        sampled = sampled.reshape(b, c, 3, n, n, k).permute(0, 2, 1, 5, 3, 4).reshape(b * 3, c * k, n, n)
        return self.out(sampled).reshape(b, 3, -1, n, n)


class RayEmbedding(nn.Module):
    """Plücker rays of the input camera -> a zero-initialised residual on the U-Net's stem ``(B, ch, M, M)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(RAY_CHANNELS, channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, cameras: Cameras, height: int, width: int) -> Tensor:
        rays = plucker_rays(cameras.to(cameras.device, torch.float32), height, width)  # geometry in float32
        return self.conv(rays.to(self.conv.weight.dtype))
