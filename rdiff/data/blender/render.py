"""Render posed views of the current bpy scene: RGB, the object mask and the object's cast shadow.

Each view is rendered twice with the same Cycles seed: once as it is, once with the object hidden (the floor
and world alone, direct light only, not denoised). The object mask is the object's pixel coverage (an AOV that
the object's materials write 1 into, averaged over all samples; ``>= 0.5`` is object). Cycles' object-index
pass keeps only the first sample of a pixel, so its edges are random at low sample counts; the coverage is
the anti-aliased equivalent (the index pass is still set, ``pass_index = 1``). A non-object pixel whose
diffuse direct light (luminance, summed over its 3x3 neighbourhood) the object lowers by at least
``shadow_threshold`` is shadow: the light the object blocks (lamps and sky), without the noise of indirect
bounces. With the same seed, light samples that the object does not block are identical in both renders, so
the comparison is noise-free away from the shadow. Light that the object bounces onto the floor (brighter
pixels) is not labelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rdiff.data.blender import import_bpy, quiet_stdout
from rdiff.data.blender.config import RenderSettings
from rdiff.data.blender.scene import DIRECT_OUTPUT, RGBA_OUTPUT, SceneHandles
from rdiff.data.transforms_json import MASK_OBJECT, MASK_SHADOW, PosedImage

#: Rec. 709 luminance weights of linear RGB.
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


@dataclass
class RenderedView:
    """Linear RGB ``(H, W, 3)``, object coverage ``(H, W)`` in [0, 1], diffuse direct light ``(H, W, 3)``
    and the diffuse direct light of the object-free reference render."""

    linear: np.ndarray
    coverage: np.ndarray
    direct: np.ndarray
    reference: np.ndarray | None = None


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """sRGB encoding of clamped linear RGB (Blender's "Standard" view transform)."""
    x = np.clip(np.asarray(linear, np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)


def srgb_to_linear(srgb) -> np.ndarray:
    """Inverse of :func:`linear_to_srgb` (for colours given as display values)."""
    x = np.clip(np.asarray(srgb, np.float64), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def read_exr(path: Path) -> np.ndarray:
    """Read an RGBA EXR with bpy as ``(H, W, 4)`` float32, top row first."""
    bpy = import_bpy()
    img = bpy.data.images.load(str(path), check_existing=False)
    try:
        w, h = img.size
        buf = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(buf)
    finally:
        bpy.data.images.remove(img)
    return buf.reshape(h, w, 4)[::-1].copy()


def render_once(handles: SceneHandles, c2w: np.ndarray, fov_x: float, seed: int) -> RenderedView:
    """One Cycles render from camera ``c2w`` (OpenGL axes, as Blender's camera)."""
    from mathutils import Matrix

    bpy = import_bpy()
    scene = handles.scene
    m = np.array(c2w, dtype=np.float64)
    m[:3, 3] = handles.scene_scale * m[:3, 3] + np.asarray(handles.scene_offset, np.float64)
    handles.camera.matrix_world = Matrix(m.tolist())
    handles.camera.data.angle = float(fov_x)
    scene.cycles.seed = int(seed)
    paths = [handles.output_dir / f"{name}{scene.frame_current:04d}.exr" for name in (RGBA_OUTPUT, DIRECT_OUTPUT)]
    for path in paths:
        if path.exists():
            path.unlink()
    with quiet_stdout():
        bpy.ops.render.render(write_still=False)
    for path in paths:
        if not path.exists():
            raise RuntimeError(f"Blender did not write {path}")
    rgba, direct = (read_exr(p) for p in paths)
    return RenderedView(linear=rgba[..., :3], coverage=np.clip(rgba[..., 3], 0.0, 1.0), direct=direct[..., :3])


def box3(x: np.ndarray) -> np.ndarray:
    """3x3 box sum of a 2-D array (edges replicated): the shadow test compares local light, not single noisy
    pixels."""
    p = np.pad(np.asarray(x, np.float64), 1, mode="edge")
    h, w = x.shape
    return sum(p[i:i + h, j:j + w] for i in range(3) for j in range(3))


def label_mask(view: RenderedView, shadow_threshold: float) -> np.ndarray:
    """``(H, W)`` uint8: ``MASK_OBJECT`` where coverage >= 0.5, ``MASK_SHADOW`` where the object lowers the
    diffuse direct light of the reference by at least ``shadow_threshold`` (relative luminance), else 0."""
    obj = view.coverage >= 0.5
    mask = np.where(obj, MASK_OBJECT, 0).astype(np.uint8)
    if view.reference is not None:
        lum = box3(view.direct @ LUMA)
        ref = box3(view.reference @ LUMA)
        shadow = (lum < ref * (1.0 - shadow_threshold)) & ~obj
        mask[shadow] = MASK_SHADOW
    return mask


def render_views(handles: SceneHandles, views, objects, settings: RenderSettings, scene_id: str,
                 seed: int = 0, shadows: bool = True) -> list[PosedImage]:
    """Render ``views`` (``[(c2w, fov_x), ...]``) of the scene; ``objects`` are hidden for the shadow reference.

    View ``k`` uses Cycles seed ``seed + k`` in both of its renders, so results are deterministic.
    """
    rendered = [render_once(handles, c2w, fov, seed + k) for k, (c2w, fov) in enumerate(views)]
    if shadows:
        # The reference only serves its direct-light pass: no denoiser, no bounces beyond the first hit.
        cyc = handles.scene.cycles
        hidden = [(o, o.hide_render) for o in objects]
        saved = cyc.use_denoising, cyc.max_bounces
        for o, _ in hidden:
            o.hide_render = True
        cyc.use_denoising, cyc.max_bounces = False, 0
        try:
            for k, (c2w, fov) in enumerate(views):
                rendered[k].reference = render_once(handles, c2w, fov, seed + k).direct
        finally:
            cyc.use_denoising, cyc.max_bounces = saved
            for o, state in hidden:
                o.hide_render = state
    return [
        PosedImage(image=linear_to_srgb(r.linear), c2w=np.asarray(c2w, np.float32), fov_x=float(fov), scene=scene_id,
                   file_path="", mask=label_mask(r, settings.shadow_threshold))
        for r, (c2w, fov) in zip(rendered, views)
    ]
