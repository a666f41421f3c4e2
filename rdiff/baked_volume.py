"""A scene baked into a small quantised voxel grid, for ray marching in the browser (no server work per frame).

The scene's density and colour are sampled once at the centres of a ``resolution^3`` grid over the scene box
(the triplane's frame). Density is stored as the opacity of a one-cell step, square-root coded in a byte
(fine steps near zero, where faint fog lives), colour as bytes, and the model's background (a constant or the
per-ray MLP, whose few weights travel along) is evaluated as the model does, on every ``BACKGROUND_STRIDE``-th
pixel corner and interpolated. The marcher samples both trilinearly (colour weighted by density, so empty
neighbours do not darken an edge), in fixed steps of ``step_cells`` cells, and composites front to back over the
background.

:func:`render_baked` is the reference implementation of that marcher, in numpy; ``demo/live_viewer.js`` is the
same algorithm in JavaScript (the app's live orbit viewer), tested against it. How close it is to the exact
volume render is measured in ``benchmarks/bench_live_viewer.py``.
"""

from __future__ import annotations

import base64
import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rdiff.cameras import orbit_cameras, to_triplane_frame

if TYPE_CHECKING:
    from rdiff.scene import Scene

#: Opacity of a one-cell step above which a cell counts as opaque (the byte code's top value).
MAX_CELL_ALPHA = 1.0 - 1e-4
#: The per-ray background MLP is evaluated at every this-many-th pixel corner and interpolated (it is smooth).
BACKGROUND_STRIDE = 4
#: Version of :meth:`BakedVolume.payload`'s layout; the viewer refuses other versions.
PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class BakedVolume:
    """A scene as a quantised grid: ``alpha (R, R, R)`` uint8 (sqrt-coded opacity of a one-cell step),
    ``rgb (R, R, R, 3)`` uint8, indexed ``[x, y, z]`` over ``[-bound, bound]^3`` in the triplane's frame;
    ``rotation (3, 3)`` world-from-triplane; ``background`` a JSON-able description (see :func:`background_spec`);
    the input camera's ``azimuth``, ``elevation`` (degrees), ``radius`` and ``fov_x`` (radians), and the model's
    ``image_size``."""

    alpha: np.ndarray
    rgb: np.ndarray
    bound: float
    rotation: np.ndarray
    background: dict[str, Any]
    azimuth: float
    elevation: float
    radius: float
    fov_x: float
    image_size: int

    @property
    def resolution(self) -> int:
        return int(self.alpha.shape[0])

    @property
    def cell(self) -> float:
        return 2.0 * self.bound / self.resolution

    def density(self) -> np.ndarray:
        """The decoded density ``(R, R, R)`` float32 (what the marcher interpolates)."""
        a = np.minimum((self.alpha.astype(np.float32) / 255.0) ** 2, MAX_CELL_ALPHA)
        return (-np.log1p(-a) / self.cell).astype(np.float32)

    def payload(self, size: int | None = None) -> dict[str, Any]:
        """JSON-able form for the browser: the grids zlib-compressed and base64-coded (``grid``: alpha bytes,
        then rgb bytes, both x-major), plus the frame, background, camera and the ``size`` to render at
        (default: the model's image size)."""
        raw = np.ascontiguousarray(self.alpha).tobytes() + np.ascontiguousarray(self.rgb).tobytes()
        return {"version": PAYLOAD_VERSION, "resolution": self.resolution, "bound": self.bound,
                "rotation": [float(v) for v in self.rotation.reshape(-1)], "background": self.background,
                "azimuth": self.azimuth, "elevation": self.elevation, "radius": self.radius, "fov_x": self.fov_x,
                "image_size": self.image_size, "size": int(size or self.image_size),
                "background_stride": BACKGROUND_STRIDE,
                "grid": base64.b64encode(zlib.compress(raw, 6)).decode("ascii")}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> BakedVolume:
        if payload.get("version") != PAYLOAD_VERSION:
            raise ValueError(f"unsupported baked-volume payload version {payload.get('version')!r}")
        n = int(payload["resolution"])
        raw = np.frombuffer(zlib.decompress(base64.b64decode(payload["grid"])), np.uint8)
        if raw.size != 4 * n**3:
            raise ValueError("baked-volume payload: grid size does not match its resolution")
        return cls(alpha=raw[: n**3].reshape(n, n, n), rgb=raw[n**3 :].reshape(n, n, n, 3),
                   bound=float(payload["bound"]), rotation=np.asarray(payload["rotation"], np.float32).reshape(3, 3),
                   background=payload["background"], azimuth=float(payload["azimuth"]),
                   elevation=float(payload["elevation"]), radius=float(payload["radius"]),
                   fov_x=float(payload["fov_x"]), image_size=int(payload["image_size"]))


def background_spec(renderer: Any) -> dict[str, Any]:
    """The model's background as data: ``{"kind": "constant", "rgb": [r, g, b]}`` or ``{"kind": "mlp",
    "freqs": [...], "layers": [{"weight": [[...]], "bias": [...]}, ...]}`` (SiLU between layers, a sigmoid at
    the end; inputs: unit direction, origin / 4, then sin and cos of pi * direction * each frequency, per axis)."""
    bg = renderer.ray_background
    if bg is not None:
        linears = [m for m in bg.mlp if isinstance(m, torch.nn.Linear)]
        return {"kind": "mlp", "freqs": [float(f) for f in bg.freqs],
                "layers": [{"weight": m.weight.detach().float().cpu().tolist(),
                            "bias": m.bias.detach().float().cpu().tolist()} for m in linears]}
    with torch.no_grad():
        colour = renderer.background(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]]))
    return {"kind": "constant", "rgb": [float(v) for v in colour.reshape(-1)[:3]]}


def bake_volume(scene: Scene, resolution: int = 64, min_alpha: float = 1e-3) -> BakedVolume:
    """Sample ``scene``'s field at the cell centres of a ``resolution^3`` grid and quantise it; cells whose
    one-cell opacity is below ``min_alpha`` are stored empty (faint fog: invisible, but it would not compress)."""
    if not 8 <= resolution <= 128:
        raise ValueError("baked volume resolution must be between 8 and 128")
    bound = float(scene.model.config.scene_bound)
    samples = scene.cell_samples(resolution)
    alpha, rgb = np.minimum(samples.alpha.numpy(), MAX_CELL_ALPHA), samples.rgb
    code = np.round(255.0 * np.sqrt(np.clip(alpha, 0.0, 1.0))).astype(np.uint8)
    code[alpha < min_alpha] = 0
    colour = np.round(255.0 * np.clip(rgb.numpy(), 0.0, 1.0)).astype(np.uint8)
    colour[code == 0] = 0  # never seen through: zeros compress
    shape = (resolution,) * 3
    az, el, radius = scene.input_view
    return BakedVolume(alpha=code.reshape(shape), rgb=colour.reshape(*shape, 3), bound=bound,
                       rotation=scene.triplane_rotation.numpy().astype(np.float32),
                       background=background_spec(scene.model.renderer), azimuth=az, elevation=el, radius=radius,
                       fov_x=float(scene.camera.fov_x[0]), image_size=int(scene.model.config.image_size))


def background_colour(spec: dict[str, Any], origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """The background of rays ``origins, dirs (N, 3)`` (triplane frame, unit directions): ``(N, 3)``."""
    if spec["kind"] == "constant":
        return np.broadcast_to(np.asarray(spec["rgb"], np.float32), dirs.shape).copy()
    freqs = np.asarray(spec["freqs"], np.float32)
    angles = dirs[..., None] * freqs * math.pi  # (N, 3, F)
    x = np.concatenate([dirs, origins / 4.0, np.sin(angles).reshape(len(dirs), -1),
                        np.cos(angles).reshape(len(dirs), -1)], -1)
    layers = spec["layers"]
    for i, layer in enumerate(layers):
        x = x @ np.asarray(layer["weight"], np.float32).T + np.asarray(layer["bias"], np.float32)
        if i < len(layers) - 1:
            x = x / (1.0 + np.exp(-x))  # SiLU
    return 1.0 / (1.0 + np.exp(-x))


def _trilinear(volume: BakedVolume, sigma: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Density and density-weighted colour at ``points (N, 3)`` (inside the box)."""
    n = volume.resolution
    g = np.clip((points + volume.bound) / volume.cell - 0.5, 0.0, n - 1.0)
    i0 = np.minimum(np.floor(g).astype(np.int64), n - 2)
    f = g - i0
    rgb = volume.rgb.astype(np.float32) / 255.0
    dens = np.zeros(len(points), np.float32)
    col = np.zeros((len(points), 3), np.float32)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = ((f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1])
                     * (f[:, 2] if dz else 1 - f[:, 2]))
                ix, iy, iz = i0[:, 0] + dx, i0[:, 1] + dy, i0[:, 2] + dz
                s = sigma[ix, iy, iz] * w
                dens += s
                col += s[:, None] * rgb[ix, iy, iz]
    return dens, col


def _camera_rays(local_c2w: np.ndarray, fov_x: float, size: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unit directions ``(N, 3)`` of the rays through image points ``(u, v)`` (pixels, from the top-left corner)."""
    f = 0.5 * size / math.tan(0.5 * fov_x)
    cam = np.stack([(u - 0.5 * size) / f, -(v - 0.5 * size) / f, -np.ones_like(u)], -1)
    d = cam @ local_c2w[:3, :3].T
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def background_image(volume: BakedVolume, local_c2w: np.ndarray, size: int) -> np.ndarray:
    """The background behind every pixel ``(size * size, 3)``: exact for a constant one; the per-ray MLP evaluated
    on the rays through every :data:`BACKGROUND_STRIDE`-th pixel corner and interpolated bilinearly."""
    if volume.background["kind"] == "constant":
        return np.broadcast_to(np.asarray(volume.background["rgb"], np.float64), (size * size, 3))
    m = -(-size // BACKGROUND_STRIDE) + 1
    jj, ii = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    d = _camera_rays(local_c2w, volume.fov_x, size, (BACKGROUND_STRIDE * ii).reshape(-1).astype(np.float64),
                     (BACKGROUND_STRIDE * jj).reshape(-1).astype(np.float64))
    o = np.broadcast_to(local_c2w[:3, 3], d.shape)
    grid = background_colour(volume.background, o.astype(np.float32), d.astype(np.float32)).reshape(m, m, 3)
    py, px = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    u, w = (px.reshape(-1) + 0.5) / BACKGROUND_STRIDE, (py.reshape(-1) + 0.5) / BACKGROUND_STRIDE
    i0, j0 = np.floor(u).astype(int), np.floor(w).astype(int)
    fu, fw = (u - i0)[:, None], (w - j0)[:, None]
    return ((1 - fw) * ((1 - fu) * grid[j0, i0] + fu * grid[j0, i0 + 1])
            + fw * ((1 - fu) * grid[j0 + 1, i0] + fu * grid[j0 + 1, i0 + 1]))


def render_baked(volume: BakedVolume, azimuth_deg: float, elevation_deg: float, size: int,
                 radius: float | None = None, step_cells: float = 1.0) -> np.ndarray:
    """Ray-march ``volume`` from (azimuth, elevation) on the input camera's sphere: ``(size, size, 3)`` in [0, 1].

    The reference of the browser viewer: steps of ``step_cells`` cells from the box entry, each sample's
    opacity ``1 - exp(-density * step)`` (the last step ends at the box exit), colour interpolated by density,
    over :func:`background_image`.
    """
    cams = orbit_cameras(azimuth_deg, elevation_deg, volume.radius if radius is None else radius, volume.fov_x)
    local = to_triplane_frame(cams, torch.from_numpy(np.asarray(volume.rotation, np.float32)))
    o, d = (t.reshape(-1, 3).double().numpy() for t in local.pixel_rays(size, size))
    b = volume.bound
    inv = 1.0 / np.where(np.abs(d) < 1e-9, 1e-9, d)
    t0, t1 = (-b - o) * inv, (b - o) * inv
    near = np.maximum(np.minimum(t0, t1).max(-1), 0.0)
    far = np.maximum(t0, t1).min(-1)
    hit = far > near
    sigma = volume.density()
    step = volume.cell * step_cells
    colour = np.zeros((len(o), 3))
    trans = np.ones(len(o))
    k = 0
    while True:
        start = near + k * step
        live = hit & (start < far)
        if not live.any():
            break
        idx = np.nonzero(live)[0]
        delta = np.minimum(step, far[idx] - start[idx])
        pts = o[idx] + d[idx] * (start[idx] + 0.5 * delta)[:, None]
        dens, col = _trilinear(volume, sigma, pts.astype(np.float32))
        a = 1.0 - np.exp(-dens * delta)
        c = col / np.maximum(dens, 1e-12)[:, None]
        colour[idx] += (trans[idx] * a)[:, None] * c
        trans[idx] *= 1.0 - a
        k += 1
    out = colour + trans[:, None] * background_image(volume, local.c2w[0].double().numpy(), size)
    return np.clip(out, 0.0, 1.0).reshape(size, size, 3).astype(np.float32)
