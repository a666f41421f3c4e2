"""A contact sheet of unconditional samples: ``python scripts/sample_sheet.py weights/clevr1-32 out.png --n 64``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np
from PIL import Image

from rdiff import RenderDiffusion
from rdiff.sampling import generate
from rdiff.visualize import to_uint8

SHEET_BATCH = 16  # samples per generate() call; each batch's noise comes from one seed


def batch_seeds(n: int, seed: int = 0, batch: int = SHEET_BATCH) -> list[int]:
    """The seed of each batch of a sheet of ``n`` samples (``seed``, ``seed + batch``, ...)."""
    return list(range(seed, seed + n, batch))


def sample_sheet(model: RenderDiffusion, n: int = 64, steps: int = 50, seed: int = 0, batch: int = SHEET_BATCH,
                 scale: int = 3) -> Image.Image:
    """A square grid of ``n`` unconditional samples (the default camera) in batches of ``batch``, each batch's
    noise drawn from its seed in :func:`batch_seeds`, enlarged ``scale`` times with nearest-neighbour."""
    images = []
    for batch_seed in batch_seeds(n, seed, batch):
        count = min(batch, seed + n - batch_seed)
        result = generate(model, count, steps=steps, seed=batch_seed)
        images += [to_uint8(img) for img in result.images]
    cols = int(np.ceil(np.sqrt(n)))
    m = images[0].shape[0]
    sheet = np.full((cols * m, cols * m, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * m:(r + 1) * m, c * m:(c + 1) * m] = img
    return Image.fromarray(sheet).resize((cols * m * scale,) * 2, Image.NEAREST)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=SHEET_BATCH)
    p.add_argument("--scale", type=int, default=3, help="nearest-neighbour enlargement")
    args = p.parse_args()
    model = RenderDiffusion.from_pretrained(args.checkpoint)
    sample_sheet(model, args.n, args.steps, args.seed, args.batch, args.scale).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
