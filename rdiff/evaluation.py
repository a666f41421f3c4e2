"""Novel-view evaluation: reconstruct each test scene from one view, score the other views."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from rdiff.cameras import Cameras
from rdiff.metrics import load_lpips, psnr, ssim
from rdiff.model import RenderDiffusion
from rdiff.sampling import reconstruct


@dataclass
class EvalResult:
    """Mean metrics per reconstruction timestep ``t_r`` (keys are str(t_r)) and per-scene details."""

    scenes: int
    views: int
    metrics: dict[str, dict[str, float]]
    per_scene: list[dict] = field(default_factory=list)

    def table(self) -> str:
        """A plain-text table of the mean metrics."""
        names = sorted({k for m in self.metrics.values() for k in m})
        rows = [["t_r", *names]] + [[t, *(f"{m.get(k, float('nan')):.4f}" for k in names)] for t, m in self.metrics.items()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
        return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def evaluate(
    model: RenderDiffusion,
    data: str | Path,
    t_rs: Sequence[int] = (0,),
    steps: int = 10,
    max_scenes: int | None = None,
    input_view: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> EvalResult:
    """For every scene in ``data`` (transforms.json), reconstruct from view ``input_view`` at each ``t_r``
    and compute PSNR/SSIM (and LPIPS when available offline) on all its other views."""
    from rdiff.data import group_by_scene, load_transforms

    frames = load_transforms(data, size=model.config.image_size)
    groups = [g for g in group_by_scene(frames).values() if len(g) > 1]
    if not groups:
        raise ValueError(f"{data} has no scene with two or more views: nothing to evaluate novel views on")
    groups = groups[:max_scenes] if max_scenes else groups
    lpips_fn = load_lpips()
    sums: dict[str, dict[str, list[float]]] = {str(t): {} for t in t_rs}
    per_scene = []
    n_views = 0
    for group in tqdm(groups, desc="eval", disable=not progress):
        src = group[input_view % len(group)]
        others = [f for f in group if f is not src]
        n_views += len(others)
        image = torch.from_numpy(src.image).permute(2, 0, 1)[None] * 2 - 1
        cam = Cameras(torch.from_numpy(src.c2w)[None], torch.tensor([src.fov_x]))
        targets = Cameras(torch.from_numpy(np.stack([f.c2w for f in others])), torch.tensor([f.fov_x for f in others]))
        for t_r in t_rs:
            result = reconstruct(model, image, cam, t_r=t_r, steps=steps, seed=seed)
            views = result.scenes[0].render(targets)
            scores: dict[str, list[float]] = {"psnr": [], "ssim": []}
            if lpips_fn is not None:
                scores["lpips"] = []
            for view, frame in zip(views, others):
                pred = view.rgb.astype(np.float32) / 255
                scores["psnr"].append(psnr(pred, frame.image))
                scores["ssim"].append(ssim(pred, frame.image))
                if lpips_fn is not None:
                    scores["lpips"].append(lpips_fn(pred, frame.image))
            for k, v in scores.items():
                sums[str(t_r)].setdefault(k, []).extend(v)
            per_scene.append({"scene": src.scene, "t_r": t_r, **{k: float(np.mean(v)) for k, v in scores.items()}})
    metrics = {t: {k: float(np.mean([x for x in v if math.isfinite(x)])) for k, v in m.items()} for t, m in sums.items()}
    return EvalResult(scenes=len(groups), views=n_views, metrics=metrics, per_scene=per_scene)


def save_result(result: EvalResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(result), indent=2))
    return path
