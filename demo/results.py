"""Turning a :class:`rdiff.sampling.SampleResult` into what the result panel shows.

Per scene: the result image (PNG: the scene rendered from its input camera; inpainting also saves the
composite), a colour-mapped depth image (PNG), an orbit preview rendered from
the cached triplane, an mp4 turntable, a GLB mesh (for ``gr.Model3D`` and download) and an interactive
plotly figure of the same mesh. Files go to a fresh per-request folder under one temporary root owned
by the app (:class:`OutputStore`); folders older than ``max_age_s`` are removed as new ones are made.

The scenes themselves (triplane + its world rotation + camera + model) are kept in a :class:`ResultState`, which
the app stores in a ``gr.State``: moving the orbit sliders or picking another generated sample re-renders
from it without re-running diffusion.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from demo.live_viewer import live_payload
from rdiff.sampling import SampleResult
from rdiff.scene import Scene, write_mesh
from rdiff.splats import bake_splats, write_splat_ply
from rdiff.visualize import depth_image, mesh_figure, to_uint8

TURNTABLE_FRAMES = 36
TURNTABLE_FPS = 12
MESH_RESOLUTION = 64
SPLAT_RESOLUTION = 64  # one Gaussian per occupied cell of this grid
FALLBACK_SPLATS = 20_000  # splats kept when no cell is opaque enough
PREVIEW_SCALE = 2  # the orbit preview renders at this multiple of the model's image size
DISPLAY_SIZE = 256  # small images are enlarged (nearest neighbour, whole factor) to about this size for display
BAKED_SCENES = 8  # scenes whose baked field (~70 MB each at 64^2 triplanes) the app keeps for fast renders
FALLBACK_QUANTILE = 0.9  # iso-level used when the density never reaches the default threshold

Progress = Callable[[int, int, str], None]


class OutputStore:
    """A temporary root folder with one sub-folder per request, pruned by age, and a folder of preview frames.

    Preview frames (orbit re-renders, noise previews, live x0 estimates) are handed to Gradio as files with a
    unique name, written completely before they are named: Gradio's own caching of arrays writes to a path
    named by the image's hash in place, so two sessions showing the same image at once could serve each other
    a half-written file. Gradio copies each frame into its cache at once; frames are kept ``frame_age_s``.
    """

    def __init__(self, root: str | Path | None = None, max_age_s: float = 7200.0, frame_age_s: float = 120.0) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="rdiff-app-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s
        self.frame_age_s = frame_age_s
        self.frames = self.root / "frames"
        self.frames.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._frames_pruned = time.monotonic()

    def frame_file(self, image: np.ndarray) -> str:
        """Write ``image`` (uint8 ``(H, W, 3)``, shown as is) as a PNG with a unique name; returns its path."""
        self.frames.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        tmp, final = self.frames / f".{name}.tmp.png", self.frames / f"{name}.png"
        Image.fromarray(image).save(tmp, compress_level=1)
        os.replace(tmp, final)
        if time.monotonic() - self._frames_pruned > self.frame_age_s / 4:
            self._frames_pruned = time.monotonic()
            self._prune_frames()
        return str(final)

    def _prune_frames(self) -> None:
        _remove_older(self.frames, self.frame_age_s, Path.is_file, Path.unlink)

    def request_dir(self, task: str) -> Path:
        """A new empty folder for one request's files."""
        with self._lock:
            self.prune()
            path = self.root / f"{time.strftime('%Y%m%d-%H%M%S')}-{task}-{uuid.uuid4().hex[:8]}"
            path.mkdir(parents=True)
            return path

    def prune(self) -> None:
        _remove_older(self.root, self.max_age_s, lambda c: c != self.frames and c.is_dir(),
                      lambda c: shutil.rmtree(c, ignore_errors=True))


def _remove_older(folder: Path, max_age_s: float, selected, remove) -> None:
    """``remove(child)`` for each child of ``folder`` that passes ``selected`` and is older than ``max_age_s``."""
    cutoff = time.time() - max_age_s
    for child in folder.iterdir():
        try:
            if selected(child) and child.stat().st_mtime < cutoff:
                remove(child)
        except OSError:
            pass


@dataclass
class SceneFiles:
    """The rendered outputs of one scene."""

    depth: Path
    video: Path
    mesh: Path | None
    figure: Any  # plotly Figure
    notes: list[str] = field(default_factory=list)
    splat: Path | None = None  # 3D Gaussian splat .ply (orbited in the browser, no server work per frame)
    live: str | None = None  # the live viewer's baked volume (JSON, demo.live_viewer): ray-marched in the browser


@dataclass
class ResultState:
    """Everything needed to re-render a finished run: kept in ``gr.State`` (one per browser session)."""

    task: str
    scenes: list[Scene]
    images: list[Path]  # each scene rendered from its input camera (SampleResult.images)
    workdir: Path
    notes: list[str] = field(default_factory=list)
    selected: int = 0
    files: dict[int, SceneFiles] = field(default_factory=dict)
    composites: list[Path] | None = None  # inpainting: known pixels + the fill (SampleResult.composites)
    scene_id: str | None = None  # its key in the app's SceneStore (API: orbit or pick a sample from any client)

    @property
    def scene(self) -> Scene:
        return self.scenes[self.selected]


class BakedScenes:
    """The scenes the app renders through their baked fields (``Scene(acceleration="baked")``), a bounded few.

    A baked field makes every later view of its scene 3-4x faster (the turntable, orbit previews) but costs a
    bake (~1-3 s, during the turntable) and ~70 MB; so only the ``max_scenes`` most recently shown scenes keep
    theirs, and older ones go back to exact rendering. Thread-safe.
    """

    def __init__(self, max_scenes: int = BAKED_SCENES) -> None:
        self.max_scenes = max_scenes
        self._scenes: OrderedDict[int, Scene] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, scene: Scene) -> None:
        """Render ``scene`` through its baked field from now on (baked on its next render); evicts the oldest."""
        with self._lock:
            self._scenes[id(scene)] = scene
            self._scenes.move_to_end(id(scene))
            scene.set_acceleration("baked")
            while len(self._scenes) > self.max_scenes:
                _, old = self._scenes.popitem(last=False)
                old.set_acceleration("exact")

    def __len__(self) -> int:
        with self._lock:
            return len(self._scenes)


class SceneStore:
    """The latest results by scene id, for the API: bounded (least recently used first out) and thread-safe.

    A run's :class:`ResultState` is stored under a fresh random id (returned as the run's ``scene_id``), so
    that any client, not only the session that ran it, can orbit it or fetch another sample of its batch.
    The id is unguessable (a uuid4): knowing it is what gives access to the scene. At most ``max_items``
    results are kept (each holds a few triplanes: a few MB), each for ``max_age_s`` after its last use.
    """

    def __init__(self, max_items: int = 64, max_age_s: float = 7200.0) -> None:
        self.max_items = max_items
        self.max_age_s = max_age_s
        self._items: OrderedDict[str, tuple[float, ResultState]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, state: ResultState) -> str:
        """Store ``state`` under a new id (also set as ``state.scene_id``); returns the id."""
        scene_id = uuid.uuid4().hex
        state.scene_id = scene_id
        with self._lock:
            self._items[scene_id] = (time.monotonic(), state)
            self._prune()
        return scene_id

    def get(self, scene_id: str) -> ResultState:
        """The result stored under ``scene_id`` (KeyError if unknown or expired); counts as a use."""
        with self._lock:
            self._prune()
            _, state = self._items[scene_id]
            self._items[scene_id] = (time.monotonic(), state)
            self._items.move_to_end(scene_id)
            return state

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _prune(self) -> None:
        cutoff = time.monotonic() - self.max_age_s
        while self._items and (len(self._items) > self.max_items or next(iter(self._items.values()))[0] < cutoff):
            self._items.popitem(last=False)


# ------------------------------------------------------------------------------------ images


def enlarge(image: np.ndarray, size: int = DISPLAY_SIZE) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor so the longer side is at least ~``size`` pixels.

    Browsers show small images at their natural size (a 32 px result would be a speck) and smooth
    them when scaling; enlarging here keeps the pixels crisp and the layout the same on every browser.
    """
    factor = max(1, size // max(image.shape[:2]))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def save_png(image: np.ndarray, path: Path) -> Path:
    """Save ``image`` enlarged for display (see :func:`enlarge`)."""
    Image.fromarray(enlarge(image)).save(path)
    return path


def orbit_image(scene: Scene, azimuth: float, elevation: float, scale: int = PREVIEW_SCALE) -> np.ndarray:
    """Render the cached triplane from (azimuth, elevation) on the input camera's sphere; no diffusion."""
    size = scene.model.config.image_size * max(1, int(scale))
    return enlarge(scene.view(float(azimuth), float(elevation), size=size).rgb)


# -------------------------------------------------------------------------------------- mesh


def scene_mesh(scene: Scene, resolution: int = MESH_RESOLUTION):
    """Marching-cubes mesh of the scene and a note when the default iso-level had to be replaced.

    A barely trained model (or an empty scene) may never reach the default density; then the surface
    enclosing the densest 10% of the volume is used instead, so there is still something to look at.
    Returns ``(mesh or None, note or None)``.
    """
    try:
        return scene.mesh(resolution), None
    except ValueError:
        density, _ = scene.density_grid(resolution)
    lo, hi = float(density.min()), float(density.max())
    if not np.isfinite([lo, hi]).all() or hi - lo < 1e-6:
        return None, "No mesh: the scene's density is constant (nothing to extract)."
    level = float(np.quantile(density, FALLBACK_QUANTILE))
    if not lo < level < hi:
        level = 0.5 * (lo + hi)
    mesh = scene.mesh(resolution, level=level)
    return mesh, (
        "The scene's density never reaches the usual surface threshold (under-trained model or an empty "
        f"scene): the mesh shows the densest {100 * (1 - FALLBACK_QUANTILE):.0f}% of the volume instead."
    )


def empty_figure(message: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(xaxis=dict(visible=False), yaxis=dict(visible=False), margin=dict(l=0, r=0, t=0, b=0))
    return fig


# ---------------------------------------------------------------------------------- per scene


def scene_files(scene: Scene, out_dir: Path, stem: str, progress: Progress | None = None,
                frames: int = TURNTABLE_FRAMES, mesh_resolution: int = MESH_RESOLUTION) -> SceneFiles:
    """Depth PNG, mp4 turntable, GLB mesh and plotly figure of one scene, written to ``out_dir``."""

    def report(i: int, what: str) -> None:
        if progress is not None:
            progress(i, 3, what)

    report(0, "Rendering depth")
    depth = save_png(depth_image(scene), out_dir / f"{stem}_depth.png")
    report(1, "Rendering the turntable video")
    video = scene.save_video(out_dir / f"{stem}_turntable.mp4", n=frames, fps=TURNTABLE_FPS)
    report(2, "Extracting the mesh and the splats")
    mesh, note = scene_mesh(scene, mesh_resolution)
    notes = [note] if note else []
    splat_path = out_dir / f"{stem}_splats.ply"
    try:
        splat = write_splat_ply(bake_splats(scene, SPLAT_RESOLUTION), splat_path)
    except ValueError:  # a nearly transparent scene (e.g. an under-trained model): show its most opaque cells
        splat = write_splat_ply(bake_splats(scene, SPLAT_RESOLUTION, min_opacity=0.0, max_splats=FALLBACK_SPLATS),
                                splat_path)
        notes.append("The scene is nearly transparent everywhere: the Gaussian splats show its "
                     f"{FALLBACK_SPLATS} most opaque cells.")
    live = live_payload(scene)
    if mesh is None:
        return SceneFiles(depth, video, None, empty_figure(note or "No mesh"), notes, splat, live)
    path = out_dir / f"{stem}_mesh.glb"
    write_mesh(mesh, path)
    report(3, "Done")
    return SceneFiles(depth, video, path, mesh_figure(mesh), notes, splat, live)


def make_state(task: str, result: SampleResult, out_dir: Path, notes: list[str]) -> ResultState:
    """Save the result's images (and composites) and wrap its scenes for ``gr.State``."""

    def save(images: torch.Tensor, suffix: str = "") -> list[Path]:
        return [save_png(to_uint8(images[i].cpu()), out_dir / f"{task}_{i:02d}{suffix}.png")
                for i in range(images.shape[0])]

    composites = None if result.composites is None else save(result.composites, "_composite")
    return ResultState(task=task, scenes=result.scenes, images=save(result.images), workdir=out_dir,
                       notes=list(notes), composites=composites)


def ensure_files(state: ResultState, progress: Progress | None = None, baked: BakedScenes | None = None) -> SceneFiles:
    """The selected scene's files, rendered on first use and then reused.

    With ``baked``, the scene is rendered through its baked field from its turntable on (see :class:`BakedScenes`).
    """
    i = state.selected
    if baked is not None:
        baked.add(state.scenes[i])
    if i not in state.files or not state.files[i].depth.exists():  # pruned during a long session: again
        state.workdir.mkdir(parents=True, exist_ok=True)
        state.files[i] = scene_files(state.scenes[i], state.workdir, f"{state.task}_{i:02d}", progress)
    return state.files[i]


def notes_markdown(state: ResultState, files: SceneFiles) -> str:
    scene = state.scene
    az, el, r = scene.input_view
    lines = [f"**Input view:** azimuth {az % 360:.0f}°, elevation {el:.0f}°, radius {r:.2f}."]
    if len(state.scenes) > 1:
        lines.insert(0, f"**Sample {state.selected + 1} of {len(state.scenes)}.**")
    lines += [f"⚠️ {n}" for n in state.notes + files.notes]
    return "\n\n".join(lines)
