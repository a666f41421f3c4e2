"""Writing turntable videos with imageio-ffmpeg (its bundled ffmpeg binary)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def write_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: int = 12, size: int | None = 256) -> Path:
    """Encode ``frames`` (H, W, 3) uint8 as H.264 mp4 (yuv420p, plays in browsers).

    Frames are resized (nearest-neighbour, keeping pixels crisp) so the longer side is ``size``.
    """
    import imageio_ffmpeg

    if not frames:
        raise ValueError("no frames to write")
    path = Path(path)
    h, w = frames[0].shape[:2]
    if size:
        scale = size / max(h, w)
        w, h = max(2, round(w * scale)), max(2, round(h * scale))
    w, h = w + w % 2, h + h % 2  # yuv420p needs even sizes
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1,
        output_params=["-movflags", "+faststart"], quality=8,
    )
    writer.send(None)
    for frame in frames:
        img = Image.fromarray(np.ascontiguousarray(frame[..., :3])).resize((w, h), Image.NEAREST)
        writer.send(np.ascontiguousarray(np.asarray(img)))
    writer.close()
    return path
