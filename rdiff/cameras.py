"""Pinhole cameras in the NeRF-synthetic / Blender convention.

A camera is a 4x4 camera-to-world matrix (camera looks down -Z, +Y is up in the
image) plus a horizontal field of view. World +Z is up; scenes live in [-1, 1]^3.
All functions are batched: ``Cameras`` holds ``B`` cameras.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

WORLD_UP = (0.0, 0.0, 1.0)


@dataclass
class Cameras:
    """A batch of pinhole cameras.

    Attributes:
        c2w: ``(B, 4, 4)`` camera-to-world matrices (OpenGL axes).
        fov_x: ``(B,)`` horizontal field of view in radians.
    """

    c2w: Tensor
    fov_x: Tensor

    def __post_init__(self) -> None:
        if self.c2w.ndim == 2:
            self.c2w = self.c2w[None]
        self.fov_x = torch.as_tensor(self.fov_x, dtype=self.c2w.dtype, device=self.c2w.device)
        if self.fov_x.ndim == 0:
            self.fov_x = self.fov_x.expand(self.c2w.shape[0]).clone()
        if self.c2w.shape[-2:] != (4, 4):
            raise ValueError(f"c2w must be (B, 4, 4), got {tuple(self.c2w.shape)}")
        if self.fov_x.shape != (self.c2w.shape[0],):
            raise ValueError("fov_x must hold one value per camera")
        if not bool(torch.all((self.fov_x > 0) & (self.fov_x < math.pi))):
            raise ValueError("fov_x must be in (0, pi) radians")

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index: int | slice | Tensor) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Cameras(self.c2w[index], self.fov_x[index])

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def position(self) -> Tensor:
        """``(B, 3)`` camera centres in world space."""
        return self.c2w[:, :3, 3]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Cameras:
        return Cameras(self.c2w.to(device=device, dtype=dtype), self.fov_x.to(device=device, dtype=dtype))

    @staticmethod
    def cat(cameras: Sequence[Cameras]) -> Cameras:
        return Cameras(torch.cat([c.c2w for c in cameras]), torch.cat([c.fov_x for c in cameras]))

    def focal(self, width: int) -> Tensor:
        """``(B,)`` focal length in pixels for an image ``width`` pixels wide."""
        return 0.5 * width / torch.tan(0.5 * self.fov_x)

    def conditioning(self) -> Tensor:
        """``(B, 13)`` flat camera description fed to the encoder: rotation, position, fov."""
        return torch.cat([self.c2w[:, :3, :4].reshape(len(self), 12), self.fov_x[:, None]], dim=1)

    def pixel_rays(self, height: int, width: int) -> tuple[Tensor, Tensor]:
        """Rays through pixel centres.

        Returns:
            origins and unit directions, each ``(B, H, W, 3)`` in world space.
        """
        dev, dt = self.c2w.device, self.c2w.dtype
        v, u = torch.meshgrid(
            torch.arange(height, device=dev, dtype=dt) + 0.5,
            torch.arange(width, device=dev, dtype=dt) + 0.5,
            indexing="ij",
        )
        f = self.focal(width)[:, None, None]
        x = (u[None] - 0.5 * width) / f
        y = -(v[None] - 0.5 * height) / f
        dirs_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # (B,H,W,3)
        dirs = torch.einsum("bij,bhwj->bhwi", self.c2w[:, :3, :3], dirs_cam)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        origins = self.position[:, None, None, :].expand_as(dirs)
        return origins, dirs

    def project(self, points: Tensor, height: int, width: int) -> Tensor:
        """Project world points ``(B, P, 3)`` to pixel coordinates ``(B, P, 2)`` (u right, v down)."""
        w2c = torch.linalg.inv(self.c2w)
        p = torch.einsum("bij,bpj->bpi", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
        f = self.focal(width)[:, None]
        u = f * p[..., 0] / -p[..., 2] + 0.5 * width
        v = -f * p[..., 1] / -p[..., 2] + 0.5 * height
        return torch.stack([u, v], dim=-1)


def look_at(eye: Tensor, target: Tensor | None = None, up: Sequence[float] = WORLD_UP) -> Tensor:
    """Camera-to-world matrices ``(B, 4, 4)`` for cameras at ``eye (B, 3)`` looking at ``target``."""
    eye = torch.as_tensor(eye, dtype=torch.float32) if not isinstance(eye, Tensor) else eye
    if eye.ndim == 1:
        eye = eye[None]
    target = torch.zeros_like(eye) if target is None else torch.as_tensor(target, dtype=eye.dtype).expand_as(eye)
    forward = target - eye
    forward = forward / forward.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    up_t = torch.as_tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    right = torch.linalg.cross(forward, up_t)
    # Looking straight along `up`: pick any perpendicular right vector.
    degenerate = right.norm(dim=-1) < 1e-6
    if bool(degenerate.any()):
        alt = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device).expand_as(eye)
        right = torch.where(degenerate[:, None], torch.linalg.cross(forward, alt), right)
    right = right / right.norm(dim=-1, keepdim=True)
    cam_up = torch.linalg.cross(right, forward)
    c2w = torch.zeros(eye.shape[0], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = cam_up
    c2w[:, :3, 2] = -forward
    c2w[:, :3, 3] = eye
    c2w[:, 3, 3] = 1.0
    return c2w


def spherical_to_position(azimuth_deg: Tensor, elevation_deg: Tensor, radius: Tensor) -> Tensor:
    """World positions ``(B, 3)`` from azimuth (about +Z, from +X), elevation and radius."""
    az = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float32))
    el = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float32))
    r = torch.as_tensor(radius, dtype=torch.float32)
    az, el, r = torch.broadcast_tensors(az, el, r)
    return torch.stack([r * torch.cos(el) * torch.cos(az), r * torch.cos(el) * torch.sin(az), r * torch.sin(el)], -1)


def position_to_spherical(position: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of :func:`spherical_to_position`: (azimuth_deg, elevation_deg, radius)."""
    r = position.norm(dim=-1)
    el = torch.rad2deg(torch.asin((position[..., 2] / r.clamp_min(1e-8)).clamp(-1, 1)))
    az = torch.rad2deg(torch.atan2(position[..., 1], position[..., 0]))
    return az, el, r


def orbit_cameras(
    azimuth_deg: float | Sequence[float] | Tensor,
    elevation_deg: float | Sequence[float] | Tensor,
    radius: float | Sequence[float] | Tensor,
    fov_x: float,
) -> Cameras:
    """Cameras on a sphere around the origin, looking at it (broadcasts its arguments)."""
    eye = spherical_to_position(azimuth_deg, elevation_deg, radius).reshape(-1, 3)
    return Cameras(look_at(eye), torch.full((eye.shape[0],), float(fov_x)))


def turntable(n: int, elevation_deg: float, radius: float, fov_x: float, start_azimuth_deg: float = 0.0) -> Cameras:
    """``n`` cameras evenly spaced in azimuth at a fixed elevation (an orbit video)."""
    if n < 1:
        raise ValueError("an orbit needs at least one frame")
    az = start_azimuth_deg + torch.arange(n, dtype=torch.float32) * (360.0 / n)
    return orbit_cameras(az, torch.full_like(az, elevation_deg), torch.full_like(az, radius), fov_x)


def yaw_rotations(cameras: Cameras) -> Tensor:
    """``(B, 3, 3)`` world-from-triplane rotations about world +Z that put each camera at azimuth 0.

    A triplane expressed in this frame is aligned with the input view (up to elevation), which
    makes the image -> triplane mapping nearly pixel-aligned for the encoder.
    """
    pos = cameras.position
    az = torch.atan2(pos[:, 1], pos[:, 0])
    c, s = torch.cos(az), torch.sin(az)
    rot = torch.zeros(len(cameras), 3, 3, dtype=pos.dtype, device=pos.device)
    rot[:, 0, 0], rot[:, 0, 1] = c, -s
    rot[:, 1, 0], rot[:, 1, 1] = s, c
    rot[:, 2, 2] = 1.0
    return rot


def to_triplane_frame(cameras: Cameras, triplane_rotations: Tensor) -> Cameras:
    """Express world-space cameras in triplane frames given by their world-from-triplane rotations
    ``(B, 3, 3)`` (or one ``(3, 3)`` for all); the result is what :meth:`RenderDiffusion.render` takes."""
    if triplane_rotations.ndim == 2:
        triplane_rotations = triplane_rotations[None].expand(len(cameras), 3, 3)
    w2f = torch.eye(4, dtype=cameras.c2w.dtype, device=cameras.device).repeat(len(cameras), 1, 1)
    w2f[:, :3, :3] = triplane_rotations.transpose(1, 2).to(cameras.c2w)
    return Cameras(w2f @ cameras.c2w, cameras.fov_x)
