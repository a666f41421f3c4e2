"""3D Gaussian splats baked from a scene's density and colour field, for orbiting in any splat viewer.

One Gaussian per occupied cell of a regular grid over the scene box: centred on the cell, isotropic with a
standard deviation of ``sigma_cells`` cell widths, its colour the field's colour there and its opacity
``1 - exp(-density * cell)`` (the volume renderer's alpha for a step of one cell). Written as the vanilla
3DGS ``.ply`` (x y z, f_dc_0..2, opacity, scale_0..2, rot_0..3; opacity as a logit, scales as logs, colour
as degree-0 spherical harmonics), which ``gr.Model3D`` and other splat viewers open, so a result can be
spun in the browser with no server work per frame. Splat viewers follow 3DGS's COLMAP-style frame, in which
-Y is up: the file stores world ``(x, y, z)`` (+Z up) as ``(x, -z, y)`` so scenes stand upright in them,
scaled by ``VIEWER_SCALE`` (recorded in a header comment) so that the scene box fits the fixed default camera
of gsplat.js, the viewer inside ``gr.Model3D`` (5 units away with a narrow field of view).
:func:`render_splats` rasterises them for checking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from rdiff.cameras import Cameras

if TYPE_CHECKING:
    from rdiff.scene import Scene

#: Degree-0 spherical-harmonic constant: colour = 0.5 + SH_C0 * f_dc.
SH_C0 = 0.28209479177387814
#: World units -> file units (see the module doc).
VIEWER_SCALE = 0.3
PLY_FIELDS = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
              "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


@dataclass
class Splats:
    """Isotropic Gaussians in world space: means ``(N, 3)``, rgb ``(N, 3)`` in [0, 1], opacity ``(N,)`` in
    (0, 1), scale ``(N,)`` (standard deviation, scene units)."""

    means: np.ndarray
    rgb: np.ndarray
    opacity: np.ndarray
    scale: np.ndarray

    def __len__(self) -> int:
        return int(self.means.shape[0])


def bake_splats(scene: Scene, resolution: int = 64, min_opacity: float = 0.05, sigma_cells: float = 0.6,
                max_splats: int = 200_000) -> Splats:
    """Gaussians for the cells of a ``resolution^3`` grid whose one-cell opacity is at least ``min_opacity``.

    Raises ``ValueError`` when no cell is that opaque (an empty scene) or the resolution is out of range.
    """
    if not 8 <= resolution <= 256:
        raise ValueError("splat grid resolution must be between 8 and 256")
    samples = scene.cell_samples(resolution)
    local, alpha, rgb, cell = samples.points, samples.alpha, samples.rgb, samples.cell
    keep = alpha >= min_opacity
    if not keep.any():
        raise ValueError(f"no grid cell reaches opacity {min_opacity}: the scene is empty")
    local, alpha, rgb = local[keep], alpha[keep], rgb[keep].clamp(0, 1)
    if local.shape[0] > max_splats:  # keep the most opaque
        top = torch.topk(alpha, max_splats).indices
        local, alpha, rgb = local[top], alpha[top], rgb[top]
    world = local @ scene.triplane_rotation.T  # triplane frame -> world
    n = world.shape[0]
    return Splats(means=world.numpy().astype(np.float32), rgb=rgb.numpy().astype(np.float32),
                  opacity=alpha.clamp(1e-4, 1 - 1e-4).numpy().astype(np.float32),
                  scale=np.full(n, sigma_cells * cell, np.float32))


def write_splat_ply(splats: Splats, path: str | Path, scale: float = VIEWER_SCALE) -> Path:
    """Write the vanilla 3DGS binary little-endian ``.ply`` (world units times ``scale``, -Y up)."""
    path = Path(path)
    n = len(splats)
    data = np.zeros(n, dtype=[(name, "<f4") for name in PLY_FIELDS])
    x, y, z = splats.means.T * scale
    data["x"], data["y"], data["z"] = x, -z, y  # world +Z up -> the viewers' -Y up
    dc = (splats.rgb - 0.5) / SH_C0
    data["f_dc_0"], data["f_dc_1"], data["f_dc_2"] = dc.T
    op = np.clip(splats.opacity, 1e-6, 1 - 1e-6)
    data["opacity"] = np.log(op / (1 - op))
    log_s = np.log(splats.scale * scale)
    data["scale_0"] = data["scale_1"] = data["scale_2"] = log_s
    data["rot_0"] = 1.0  # identity quaternion (w, x, y, z)
    header = "\n".join(["ply", "format binary_little_endian 1.0", f"comment rdiff world_scale {scale!r}",
                        f"element vertex {n}",
                        *(f"property float {name}" for name in PLY_FIELDS), "end_header"]) + "\n"
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(data.tobytes())
    return path


def read_splat_ply(path: str | Path) -> Splats:
    """Read a ``.ply`` written by :func:`write_splat_ply` (or any 3DGS file with these float fields)."""
    raw = Path(path).read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    lines = raw[:end].decode("ascii").splitlines()
    if lines[0] != "ply" or "binary_little_endian" not in lines[1]:
        raise ValueError(f"{path}: not a binary little-endian PLY")
    n = int(next(ln.split()[2] for ln in lines if ln.startswith("element vertex")))
    names = [ln.split()[2] for ln in lines if ln.startswith("property float")]
    data = np.frombuffer(raw[end:], dtype=[(name, "<f4") for name in names], count=n)
    missing = [f for f in PLY_FIELDS if f not in names]
    if missing:
        raise ValueError(f"{path}: missing 3DGS fields {missing}")
    rgb = np.stack([data[f"f_dc_{i}"] for i in range(3)], -1) * SH_C0 + 0.5
    scale = next((float(ln.split()[3]) for ln in lines if ln.startswith("comment rdiff world_scale")), 1.0)
    means = np.stack([data["x"], data["z"], -data["y"]], -1) / scale  # back to world units, +Z up
    return Splats(means=means.astype(np.float32),
                  rgb=np.clip(rgb, 0, 1).astype(np.float32),
                  opacity=(1 / (1 + np.exp(-data["opacity"]))).astype(np.float32),
                  scale=(np.exp(data["scale_0"]) / scale).astype(np.float32))


#: Splats are cut off at this many standard deviations (as 3DGS viewers do: gsplat.js and the reference
#: rasteriser draw a Gaussian over its 3-sigma extent).
CUTOFF_SIGMAS = 3.0


def render_splats(splats: Splats, camera: Cameras, size: int, background: tuple[float, float, float] | Tensor,
                  max_pairs: int = 1 << 25) -> np.ndarray:
    """Rasterise isotropic splats from one camera: ``(size, size, 3)`` float in [0, 1], front-to-back alpha
    compositing (as 3DGS viewers draw them), for comparing a splat file with the volume renders.

    Each splat touches the pixels within :data:`CUTOFF_SIGMAS` of its projected centre; a pixel composites its
    splats nearest first. ``background``: one colour ``(3,)`` or one per pixel ``(size * size, 3)`` (row-major).
    Raises ``ValueError`` where the splats cover more than ``max_pairs`` (splat, pixel) pairs (a camera inside
    the splats: render smaller).
    """
    c2w = camera.c2w[0].double()
    w2c = torch.linalg.inv(c2w)
    means = torch.from_numpy(splats.means).double()
    cam = means @ w2c[:3, :3].T + w2c[:3, 3]
    depth = -cam[:, 2]  # the camera looks down -Z
    f = (size / 2) / math.tan(float(camera.fov_x[0]) / 2)
    front = (depth > 1e-3).nonzero().view(-1)
    front = front[torch.argsort(depth[front])]  # nearest first: a splat's rank is its position here
    d = depth[front]
    u = f * cam[front, 0] / d + size / 2  # pixel coordinates, x right
    v = -f * cam[front, 1] / d + size / 2  # y down
    sigma = f * torch.from_numpy(splats.scale).double()[front] / d
    reach = CUTOFF_SIGMAS * sigma
    # (splat, pixel) pairs: each splat's bounding square of pixel centres within its reach
    x0 = torch.ceil(u - reach - 0.5).clamp(0, size).long()
    x1 = torch.floor(u + reach - 0.5).clamp(-1, size - 1).long()
    y0 = torch.ceil(v - reach - 0.5).clamp(0, size).long()
    y1 = torch.floor(v + reach - 0.5).clamp(-1, size - 1).long()
    w, h = (x1 - x0 + 1).clamp_min(0), (y1 - y0 + 1).clamp_min(0)
    counts = w * h
    total = int(counts.sum())
    if total > max_pairs:
        raise ValueError(f"the splats cover {total} (splat, pixel) pairs (at most {max_pairs}): render smaller")
    rank = torch.repeat_interleave(torch.arange(len(front)), counts)
    local = torch.arange(total) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    px = x0[rank] + local % w[rank]
    py = y0[rank] + local // w[rank]
    d2 = (px + 0.5 - u[rank]) ** 2 + (py + 0.5 - v[rank]) ** 2
    inside = d2 <= reach[rank] ** 2
    rank, pixel, d2 = rank[inside], (py * size + px)[inside], d2[inside]
    op = torch.from_numpy(splats.opacity).double()[front]
    alpha = (op[rank] * torch.exp(-0.5 * d2 / sigma[rank] ** 2)).clamp(max=0.99)
    # per pixel, nearest first: the transmittance before each pair is exp(sum of log(1 - alpha) before it)
    order = torch.argsort(pixel * len(front) + rank)
    pixel, alpha, rank = pixel[order], alpha[order], rank[order]
    log_t = torch.log1p(-alpha)
    n = size * size
    per_pixel = torch.zeros(n, dtype=torch.float64).index_add_(0, pixel, log_t)  # log transmittance through all
    earlier = torch.cumsum(per_pixel, 0) - per_pixel  # ... of the pixels before each one in the sorted pairs
    before = torch.cumsum(log_t, 0) - log_t  # over every pair so far, less the earlier pixels' pairs below
    weight = torch.exp(before - earlier[pixel]) * alpha
    rgb = torch.from_numpy(splats.rgb).double()[front]
    colour = torch.zeros(n, 3, dtype=torch.float64).index_add_(0, pixel, weight[:, None] * rgb[rank])
    trans = torch.exp(per_pixel)
    bg = torch.as_tensor(background).detach().double().reshape(-1, 3)
    out = colour + trans[:, None] * bg
    return out.reshape(size, size, 3).clamp(0, 1).float().numpy()
