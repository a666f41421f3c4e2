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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--scale", type=int, default=3, help="nearest-neighbour enlargement")
    args = p.parse_args()
    model = RenderDiffusion.from_pretrained(args.checkpoint)
    images = []
    for start in range(0, args.n, args.batch):
        count = min(args.batch, args.n - start)
        result = generate(model, count, steps=args.steps, seed=args.seed + start)
        images += [to_uint8(img) for img in result.images]
    cols = int(np.ceil(np.sqrt(args.n)))
    m = images[0].shape[0]
    sheet = np.full((cols * m, cols * m, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * m:(r + 1) * m, c * m:(c + 1) * m] = img
    Image.fromarray(sheet).resize((cols * m * args.scale,) * 2, Image.NEAREST).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
