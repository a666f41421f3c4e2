"""Contact sheets of a rendered dataset: one view of each of many distinct scenes, plus a row of masks
(object white, shadow grey) under the views they belong to. PIL only.

Usage: ``python -m rdiff.data.blender.sheet DATASET_DIR OUT.png [--n 32] [--cols 8] [--masks 8]``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def _png(path: Path) -> Path:
    return path if path.suffix.lower() == ".png" else path.with_name(path.name + ".png")


def _scene_first_views(split_dir: Path) -> list[tuple[Path, Path | None]]:
    meta = json.loads((split_dir / "transforms.json").read_text())
    seen, out = set(), []
    for fr in meta["frames"]:
        if fr.get("scene") in seen:
            continue
        seen.add(fr.get("scene"))
        mask = _png(split_dir / fr["mask_path"]) if "mask_path" in fr else None
        out.append((_png(split_dir / fr["file_path"]), mask))
    return out


def contact_sheet(dataset: str | Path, out: str | Path, n: int = 32, cols: int = 8, masks: int = 8,
                  scale: int = 2, gap: int = 2) -> Path:
    """Write a grid of ``n`` views of distinct scenes (train then test scenes, evenly spread) and a row of
    ``masks`` masks of the first views, each tile upscaled ``scale`` x (nearest). Returns ``out``."""
    dataset = Path(dataset)
    views = []
    for split in ("train", "test"):
        if (dataset / split / "transforms.json").is_file():
            views += _scene_first_views(dataset / split)
    if not views:
        raise FileNotFoundError(f"no train/ or test/ transforms.json in {dataset}")
    pick = [views[int(i)] for i in np.linspace(0, len(views) - 1, min(n, len(views))).round()]
    tiles = [Image.open(p).convert("RGB") for p, _ in pick]
    size = tiles[0].size[0] * scale
    mask_tiles = [Image.open(m).convert("RGB") for _, m in pick[:masks] if m is not None]
    rows = -(-len(tiles) // cols) + (1 if mask_tiles else 0)
    sheet = Image.new("RGB", (cols * (size + gap) + gap, rows * (size + gap) + gap), (255, 255, 255))
    for k, tile in enumerate(tiles + mask_tiles):
        r, c = (k // cols, k % cols) if k < len(tiles) else (rows - 1, k - len(tiles))
        xy = (gap + c * (size + gap), gap + r * (size + gap))
        sheet.paste(tile.resize((size, size), Image.Resampling.NEAREST), xy)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rdiff.data.blender.sheet", description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("out")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--masks", type=int, default=8)
    p.add_argument("--scale", type=int, default=2)
    a = p.parse_args(argv)
    print(contact_sheet(a.dataset, a.out, a.n, a.cols, a.masks, a.scale))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
