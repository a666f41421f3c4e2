"""A reconstructed/generated 3D scene: one triplane plus the model's decoder and renderer."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from rdiff.acceleration import SceneAccelerator
from rdiff.baked_field import BakedField, bake_field
from rdiff.cameras import Cameras, orbit_cameras, position_to_spherical, turntable

if TYPE_CHECKING:
    import trimesh

    from rdiff.decoder import InferenceField
    from rdiff.model import RenderDiffusion

MESH_FORMATS = (".glb", ".obj", ".ply")
#: How a :class:`Scene` renders (``Scene(acceleration=...)``): the exact inference path; skipping negligible samples
#: (:mod:`rdiff.acceleration`); or through the field baked on a grid (:mod:`rdiff.baked_field`).
ACCELERATIONS = ("exact", "skip", "baked")
#: Probe views that check a baked field against the exact path (pixels, and azimuths from the input view).
BAKE_PROBE_SIZE = 24
BAKE_PROBE_AZIMUTHS = (0.0, 135.0, 225.0)
#: Default iso-density for meshes: 1 - exp(-2.5 * 0.1) ~ 22% opacity through 0.1 scene units of
#: material, which is where trained models put their (soft) surfaces.
DEFAULT_MESH_DENSITY = 2.5


def write_mesh(mesh: trimesh.Trimesh, path: str | Path) -> Path:
    """Write a +Z-up mesh as GLB, OBJ or PLY. GLB (glTF) is +Y up by specification, so it is rotated.

    Vertex colours are sRGB, as PLY/OBJ readers expect; the GLB gets them converted to linear, as glTF requires.
    """
    import trimesh

    path = Path(path)
    if path.suffix.lower() not in MESH_FORMATS:
        raise ValueError(f"mesh format must be one of {MESH_FORMATS}, got {path.suffix!r}")
    if path.suffix.lower() == ".glb":  # also: sRGB vertex colours -> glTF's linear COLOR_0 (rdiff.mesh)
        from rdiff.mesh import write_glb

        mesh = mesh.copy()
        mesh.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
        return write_glb(mesh, path)
    mesh.export(path)
    return path


@dataclass
class View:
    """One rendered view as numpy arrays: rgb ``(H, W, 3)`` uint8, depth and opacity ``(H, W)`` float32."""

    rgb: np.ndarray
    depth: np.ndarray
    opacity: np.ndarray


def _check_acceleration(acceleration: str) -> None:
    if acceleration not in ACCELERATIONS:
        raise ValueError(f"acceleration must be one of {ACCELERATIONS}, got {acceleration!r}")


@dataclass
class CellSamples:
    """A scene's field at cell centres (:meth:`Scene.cell_samples`), in ``ij`` grid order (x slowest)."""

    points: Tensor  #: (R^3, 3) cell centres, triplane frame
    alpha: Tensor  #: (R^3,) one-cell opacity ``1 - exp(-density * cell)`` (the renderer's alpha for that step)
    rgb: Tensor  #: (R^3, 3) colour
    cell: float  #: cell width (scene units)


class Scene:
    """The 3D result of a denoising run. Rendering re-uses the cached triplane: no diffusion is re-run.

    ``acceleration`` (one of :data:`ACCELERATIONS`) chooses how views are rendered; every choice keeps the exact
    path's samples and stays within 1/255 of it on trained scenes (``benchmarks/bench_accel.py``):

    * ``"exact"`` (default): the exact inference path.
    * ``"baked"``: through the scene's field baked on a knot grid (:class:`~rdiff.baked_field.BakedField`), 3-4x
      faster per frame; the bake (~2-3 s, ~70 MB at 64^2 triplanes) runs on the first render and is checked there
      against exact probe renders (where it fails, renders stay exact). Pays from a few frames on: orbits, videos.
    * ``"skip"``: a :class:`~rdiff.acceleration.SceneAccelerator` (empty-space skipping, early termination), which
      pays only on opaque scenes in clean empty space and renders exactly where its probe finds it does not.
    """

    def __init__(self, model: RenderDiffusion, planes: Tensor, camera: Cameras, triplane_rotation: Tensor | None = None,
                 acceleration: str = "exact") -> None:
        if planes.ndim != 4 or planes.shape[0] != 3:
            raise ValueError(f"planes must be (3, n_f, N, N), got {tuple(planes.shape)}")
        _check_acceleration(acceleration)
        self.model = model
        self.planes = planes.detach()
        self.camera = camera  # the input view's camera, world space
        # world-from-triplane rotation (3, 3)
        rotation = torch.eye(3) if triplane_rotation is None else triplane_rotation.detach()
        self.triplane_rotation = rotation.float().cpu()
        # the triplane prepared for inference rendering on first render, on the model's device
        self._field: InferenceField | None = None
        self.acceleration = acceleration
        self._accelerator: SceneAccelerator | None = None  # built from _field on the first "skip" render
        self._baked: BakedField | None = None  # baked from _field on the first "baked" render ...
        self._bake_failed = False  # ... unless its probes disagreed with the exact path (then renders stay exact)
        self._bake_lock = threading.Lock()  # one bake at a time; renders meanwhile take the exact path

    def set_acceleration(self, acceleration: str) -> None:
        """Switch how views render (one of :data:`ACCELERATIONS`), dropping the caches the new choice does not use
        (a baked field holds ~70 MB at 64^2 triplanes: set ``"exact"`` to free it)."""
        _check_acceleration(acceleration)
        self.acceleration = acceleration
        if acceleration != "skip":
            self._accelerator = None
        if acceleration != "baked":
            self._baked, self._bake_failed = None, False

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_field"] = None  # a lookup table and per-thread buffers: rebuilt on demand, not pickled or copied
        state["_accelerator"] = None
        state["_baked"], state["_bake_failed"] = None, False
        del state["_bake_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bake_lock = threading.Lock()

    @property
    def input_view(self) -> tuple[float, float, float]:
        """(azimuth_deg, elevation_deg, radius) of the input camera."""
        az, el, r = position_to_spherical(self.camera.position[0])
        return float(az), float(el), float(r)

    @torch.inference_mode()
    def render(self, cameras: Cameras, size: int | None = None) -> list[View]:
        """Render the scene from world-space ``cameras`` at ``size`` x ``size`` pixels (default: the model's image
        size)."""
        size = self.model.config.image_size if size is None else size
        if not 1 <= size <= 1024:
            raise ValueError("render size must be between 1 and 1024 pixels")
        dev = self.model.device
        planes = self.planes.to(dev)[None].expand(len(cameras), -1, -1, -1, -1)
        rotations = self.triplane_rotation.to(dev)[None].expand(len(cameras), 3, 3)
        exact = self._inference_field(dev)
        if self.acceleration == "skip":
            if self._accelerator is None or self._accelerator.field is not exact:
                self._accelerator = SceneAccelerator(self.model.renderer, exact)
            out = self._accelerator.render_world(rotations, cameras.to(dev), size, size)
        else:
            baked = self.baked_field(wait=False) if self.acceleration == "baked" else None
            out = self.model.render_world(planes, rotations, cameras.to(dev), size, size,
                                          field=exact if baked is None else baked)
        rgb = (out.rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        depth, opacity = out.depth.float().cpu().numpy(), out.opacity.float().cpu().numpy()
        return [View(rgb[i], depth[i], opacity[i]) for i in range(len(cameras))]

    def _inference_field(self, dev: torch.device) -> InferenceField:
        """The triplane prepared for inference rendering on ``dev`` (made once, shared by every view)."""
        if self._field is None or self._field.device != dev:
            self._field = self.model.inference_field(self.planes.to(dev)[None])
        return self._field

    @torch.inference_mode()
    def baked_field(self, wait: bool = True) -> BakedField | None:
        """This scene's baked field (made on first use and kept), or ``None`` where its probes failed.

        With ``wait=False``, also ``None`` while another thread is baking it (renders then take the exact path
        instead of waiting ~2 s or baking it twice).
        """
        dev = self.model.device
        if self._baked is not None or self._bake_failed:
            return self._baked
        if not self._bake_lock.acquire(blocking=wait):
            return None
        try:
            self._bake(dev)
        finally:
            self._bake_lock.release()
        return self._baked

    def _bake(self, dev: torch.device) -> None:
        if self._baked is None and not self._bake_failed:  # (not baked by the thread this one waited for)
            az, el, r = self.input_view
            cams = orbit_cameras([az + a for a in BAKE_PROBE_AZIMUTHS], [el] * len(BAKE_PROBE_AZIMUTHS), r,
                                 float(self.camera.fov_x[0])).to(dev)
            n = len(cams)
            planes = self.planes.to(dev)[None].expand(n, -1, -1, -1, -1)
            rotations = self.triplane_rotation.to(dev)[None].expand(n, 3, 3)

            def probe(field) -> Tensor:
                return self.model.render_world(planes, rotations, cams, BAKE_PROBE_SIZE, BAKE_PROBE_SIZE,
                                               field=field).rgb

            self._baked = bake_field(self._inference_field(dev), probe)
            self._bake_failed = self._baked is None

    def view(
        self, azimuth_deg: float, elevation_deg: float, radius: float | None = None, size: int | None = None
    ) -> View:
        """Render from a viewpoint on a sphere around the origin (radius/fov default to the input camera's)."""
        radius = self.input_view[2] if radius is None else radius
        cams = orbit_cameras(azimuth_deg, elevation_deg, radius, float(self.camera.fov_x[0]))
        return self.render(cams, size)[0]

    def orbit(
        self, n: int = 36, elevation_deg: float | None = None, size: int | None = None, batch: int = 12
    ) -> list[View]:
        """``n`` views evenly spaced in azimuth, starting from the input view."""
        az, el, r = self.input_view
        cams = turntable(n, el if elevation_deg is None else elevation_deg, r, float(self.camera.fov_x[0]), az)
        views: list[View] = []
        for i in range(0, n, batch):
            views += self.render(cams[i : i + batch], size)
        return views

    @torch.inference_mode()
    def field_at(self, points: Tensor, chunk: int = 65536) -> tuple[Tensor, Tensor]:
        """Density ``(P,)`` and rgb ``(P, 3)`` of the field at ``points (P, 3)`` in the triplane's frame."""
        points = points.to(self.model.device, torch.float32)[None]
        planes = self.planes.to(self.model.device)[None]
        dens, rgbs = [], []
        for i in range(0, points.shape[1], chunk):
            d, c = self.model.field(planes, points[:, i : i + chunk])
            dens.append(d[0])
            rgbs.append(c[0])
        return torch.cat(dens), torch.cat(rgbs)

    def cell_samples(self, resolution: int) -> CellSamples:
        """The field at the centres of the cells of a ``resolution^3`` grid over the scene box (triplane frame),
        with each cell's one-cell opacity: what the baked volume and the splats are made of."""
        b = float(self.model.config.scene_bound)
        cell = 2 * b / resolution
        axis = torch.linspace(-b + cell / 2, b - cell / 2, resolution)
        points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
        density, rgb = self.field_at(points)
        alpha = (1 - torch.exp(-density.float() * cell)).cpu()
        return CellSamples(points=points, alpha=alpha, rgb=rgb.float().cpu(), cell=cell)

    def density_grid(self, resolution: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Density and rgb on a ``resolution^3`` grid spanning the scene bound (x, y, z index order).

        The grid is axis-aligned in the triplane's frame (see :attr:`triplane_rotation` for its world rotation).
        """
        if not 2 <= resolution <= 256:
            raise ValueError("grid resolution must be between 2 and 256")
        b = self.model.config.scene_bound
        axis = torch.linspace(-b, b, resolution)
        density, rgb = self.field_at(torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3))
        shape = (resolution,) * 3
        return density.reshape(shape).float().cpu().numpy(), rgb.reshape(*shape, 3).float().cpu().numpy()

    def mesh(self, resolution: int = 64, level: float | None = None, *,
             min_component: float | None = None, target_faces: int | None = None) -> trimesh.Trimesh:
        """Marching cubes on the density grid, cleaned and coloured (see :mod:`rdiff.mesh`).

        ``level`` defaults to :data:`DEFAULT_MESH_DENSITY`. Components with fewer than ``min_component``
        (default :data:`rdiff.mesh.MIN_COMPONENT_FRACTION`; 0 keeps all) of the largest one's faces are
        dropped; ``target_faces`` reduces the face count (needs ``fast-simplification``). Vertex colours (sRGB)
        are those of the opaque material under the surface (:func:`rdiff.mesh.surface_colours`).
        """
        import trimesh
        from skimage.measure import marching_cubes

        from rdiff import mesh as meshing

        density, _ = self.density_grid(resolution)
        b = self.model.config.scene_bound
        spacing = 2 * b / (resolution - 1)
        if level is None:
            level = DEFAULT_MESH_DENSITY
        if not density.min() < level < density.max():
            raise ValueError(
                f"no surface at density {level:.3g} (scene densities span {density.min():.3g}..{density.max():.3g})"
            )
        verts, faces, _, _ = marching_cubes(density, level=level, spacing=(spacing,) * 3)
        # marching_cubes winds faces for increasing values inward; flip so normals point out of the object.
        local = trimesh.Trimesh((verts - b).astype(np.float32), faces[:, ::-1], process=False)
        local = meshing.drop_small_components(
            local, meshing.MIN_COMPONENT_FRACTION if min_component is None else min_component)
        if target_faces is not None:
            local = meshing.simplify(local, target_faces)

        def field(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            d, c = self.field_at(torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)))
            return d.float().cpu().numpy(), c.float().clamp(0, 1).cpu().numpy()

        colours = meshing.surface_colours(field, local.vertices, local.vertex_normals,
                                          depth=meshing.COLOUR_DEPTH_FRACTION * 2 * b)
        # triplane frame -> world
        world = np.asarray(local.vertices, dtype=np.float32) @ self.triplane_rotation.numpy().T
        return trimesh.Trimesh(world, local.faces, vertex_colors=meshing.to_uint8(colours), process=False)

    def export_mesh(self, path: str | Path, resolution: int = 64, level: float | None = None,
                    target_faces: int | None = None) -> Path:
        """Write the mesh as GLB (+Y up, as glTF requires), OBJ or PLY (+Z up), chosen by the file extension."""
        if Path(path).suffix.lower() not in MESH_FORMATS:
            raise ValueError(f"mesh format must be one of {MESH_FORMATS}, got {Path(path).suffix!r}")
        return write_mesh(self.mesh(resolution, level, target_faces=target_faces), path)

    def save_video(
        self, path: str | Path, n: int = 36, fps: int = 12, size: int | None = None, upscale: int = 256
    ) -> Path:
        """Write an mp4 turntable (frames upscaled to ``upscale`` pixels for viewing)."""
        from rdiff.video import write_mp4

        frames = [v.rgb for v in self.orbit(n, size=size)]
        return write_mp4(path, frames, fps=fps, size=upscale)
