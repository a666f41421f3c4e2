"""Inpainting evaluation: a square hole over the object in each test scene's input view.

For each scene the input view gets a square hole (a third of the image width, centred on the object's mask
centroid). Scores, over the hole and over the visible rest of the image:

* the inpainted image (known pixels kept, the hole filled by the model) against the truth, in the hole;
* a plain 2D fill (``skimage.restoration.inpaint_biharmonic``) in the hole, the baseline to beat;
* the final 3D scene rendered at the input view, in the hole and on the visible pixels (does the 3D scene
  agree with what was visible?).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rdiff.cameras import Cameras
from rdiff.metrics import masked_psnr
from rdiff.model import RenderDiffusion
from rdiff.sampling import InpaintSettings, biharmonic_fill, inpaint


def square_hole(mask: np.ndarray | None, size: int, fraction: float = 1 / 3) -> np.ndarray:
    """Boolean ``(size, size)`` hole: a square of side ``fraction * size`` centred on the object mask's centroid
    (the image centre without a mask), kept inside the image."""
    side = max(1, int(round(size * fraction)))
    if mask is not None and (mask >= 255).any():
        rows, cols = np.nonzero(mask >= 255)
        cy, cx = float(rows.mean()), float(cols.mean())
    else:
        cy = cx = (size - 1) / 2
    top = int(np.clip(round(cy - (side - 1) / 2), 0, size - side))
    left = int(np.clip(round(cx - (side - 1) / 2), 0, size - side))
    hole = np.zeros((size, size), bool)
    hole[top : top + side, left : left + side] = True
    return hole


def biharmonic_baseline(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The 2D baseline: :func:`rdiff.sampling.biharmonic_fill` of ``hole`` in an ``(H, W, 3)`` image in [0, 1]."""
    return np.clip(biharmonic_fill(image, hole), 0, 1).astype(np.float32)


@dataclass
class InpaintEvalResult:
    """Mean PSNRs (dB) over scenes, per-scene rows and the settings used."""

    scenes: int
    metrics: dict[str, float]
    per_scene: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def table(self) -> str:
        rows = [
            ("hole: inpainted image", self.metrics["hole_image_psnr"]),
            ("hole: 3D scene at the input view", self.metrics["hole_render_psnr"]),
            ("hole: 2D biharmonic fill (baseline)", self.metrics["hole_biharmonic_psnr"]),
            ("visible: 3D scene at the input view", self.metrics["visible_render_psnr"]),
        ]
        width = max(len(r[0]) for r in rows)
        return "\n".join(f"{name.ljust(width)}  {value:7.3f} dB" for name, value in rows)


def evaluate_inpainting(
    model: RenderDiffusion,
    data: str | Path,
    settings: InpaintSettings | None = None,
    max_scenes: int | None = 30,
    hole_fraction: float = 1 / 3,
    seed: int = 0,
    batch: int = 10,
    progress: bool = True,
) -> InpaintEvalResult:
    """Inpaint a square hole over the object in the first view of each scene of ``data``; see the module doc."""
    from rdiff.data import group_by_scene, load_transforms

    settings = settings or InpaintSettings()
    m = model.config.image_size
    views = [g[0] for g in group_by_scene(load_transforms(data, size=m)).values()]  # one view per scene
    views = views[:max_scenes] if max_scenes else views
    if not views:
        raise ValueError(f"{data} has no frames")
    rows = []
    for start in tqdm(range(0, len(views), batch), desc="inpaint eval", disable=not progress):
        chunk = views[start : start + batch]
        holes = np.stack([square_hole(f.mask, m, hole_fraction) for f in chunk])
        images = torch.from_numpy(np.stack([f.image for f in chunk])).permute(0, 3, 1, 2) * 2 - 1
        cams = Cameras(torch.from_numpy(np.stack([f.c2w for f in chunk])), torch.tensor([f.fov_x for f in chunk]))
        result = inpaint(model, images, torch.from_numpy(holes).float(), cams, settings=settings,
                         seed=seed * 1_000_003 + start)
        for i, f in enumerate(chunk):
            filled = result.composites[i].permute(1, 2, 0).cpu().numpy()  # the 2D inpainted image
            render = result.scenes[i].render(cams[i])[0].rgb.astype(np.float32) / 255
            hole = holes[i]
            rows.append({
                "scene": f.scene,
                "hole_image_psnr": masked_psnr(filled, f.image, hole),
                "hole_render_psnr": masked_psnr(render, f.image, hole),
                "hole_biharmonic_psnr": masked_psnr(biharmonic_baseline(f.image, hole), f.image, hole),
                "visible_render_psnr": masked_psnr(render, f.image, ~hole),
            })
    keys = ("hole_image_psnr", "hole_render_psnr", "hole_biharmonic_psnr", "visible_render_psnr")
    metrics = {k: float(np.mean([r[k] for r in rows if math.isfinite(r[k])])) for k in keys}
    return InpaintEvalResult(scenes=len(rows), metrics=metrics, per_scene=rows,
                             settings={"data": str(data), "hole_fraction": hole_fraction, "seed": seed,
                                       **asdict(settings)})
