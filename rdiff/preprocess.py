"""Turning user-supplied images and masks into model inputs, with clear errors for bad input."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 120_000_000  # a 10k x 10k photo is accepted (then downsized); larger is refused


class InputError(ValueError):
    """User input that cannot be used; the message is meant to be shown to the user as is."""


def open_image(source: str | Path | bytes | np.ndarray | Image.Image) -> Image.Image:
    """Open a path, bytes, array or PIL image; refuse non-images, corrupt files and absurd sizes."""
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        arr = source
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or arr.size == 0:
            raise InputError(f"expected an image array (H, W[, 1|3|4]), got shape {arr.shape}")
        if arr.dtype == np.uint16:
            arr = (arr / 257).round().astype(np.uint8)
        elif arr.dtype.kind == "f":
            arr = (np.clip(np.nan_to_num(arr), 0, 1) * 255).round().astype(np.uint8)
        elif arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
    else:
        data = source if isinstance(source, bytes) else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data) if data is not None else Path(source))
                if img.width * img.height > MAX_PIXELS:
                    raise InputError(
                        f"image is {img.width}x{img.height} pixels; the limit is {MAX_PIXELS // 1_000_000} megapixels"
                    )
                img.load()
        except InputError:
            raise
        except FileNotFoundError as e:
            raise InputError(f"file not found: {source}") from e
        except Image.DecompressionBombError as e:
            raise InputError(f"image is too large to open safely ({e})") from e
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise InputError("this file is not a readable image (PNG, JPEG, WebP, ...) or it is corrupt") from e
    if img.width < 8 or img.height < 8:
        raise InputError(f"image is only {img.width}x{img.height} pixels; need at least 8x8")
    if img.width * img.height > MAX_PIXELS:
        raise InputError(f"image is {img.width}x{img.height} pixels; the limit is {MAX_PIXELS // 1_000_000} megapixels")
    return img


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any PIL mode (grayscale, 16-bit, palette, CMYK, with or without alpha) -> 8-bit RGB.

    An RGB image is returned as is (not copied: a 10k x 10k photo is 400 MB in memory).
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray((np.clip(arr / top, 0, 1) * 255).round().astype(np.uint8))
    elif img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        top = max(float(arr.max()), 1.0)
        img = Image.fromarray((np.clip(arr / top, 0, 1) * 255).round().astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return img.convert("RGB")


def center_square(img: Image.Image) -> Image.Image:
    """Crop the largest centred square."""
    return img.crop(square_box(img))


def square_box(img: Image.Image) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the largest centred square."""
    s = min(img.size)
    left, top = (img.width - s) // 2, (img.height - s) // 2
    return left, top, left + s, top + s


def prepare_image(source, size: int, background: tuple[int, int, int] = (255, 255, 255)) -> torch.Tensor:
    """User image -> ``(3, size, size)`` float tensor in [-1, 1] (centre-cropped, area-resized)."""
    img = to_rgb(open_image(source), background)
    box = square_box(img)
    side = box[2] - box[0]
    # Large images: crop and shrink by a whole factor in one pass (no full-size copy), then resize.
    img = img.reduce(max(1, side // (4 * size)), box=box) if side > 8 * size else img.crop(box)
    img = img.resize((size, size), Image.BOX if img.width >= size else Image.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous() * 2 - 1


def prepare_mask(mask, size: int, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Brush mask -> ``(size, size)`` float tensor, 1 where pixels are to be inpainted.

    Any non-zero (or, with an alpha channel, any painted) pixel counts as masked. ``image_size``
    (width, height) of the image the mask was drawn on is checked when given.
    """
    arr = np.asarray(mask) if not isinstance(mask, Image.Image) else None
    img = mask if isinstance(mask, Image.Image) else None
    if arr is not None:
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[..., 3]
        elif arr.ndim == 3:
            arr = arr.max(axis=2)
        if arr.ndim != 2 or arr.size == 0:
            raise InputError(f"mask must be a 2D array or an image, got shape {np.asarray(mask).shape}")
        painted = arr > (0 if arr.dtype == bool or arr.dtype.kind != "f" else 0.0)
    else:
        assert img is not None
        if img.mode in ("RGBA", "LA", "PA"):
            painted = np.asarray(img.convert("RGBA"))[..., 3] > 0
        else:
            painted = np.asarray(img.convert("L")) > 0
    h, w = painted.shape
    if image_size is not None and (w, h) != tuple(image_size):
        raise InputError(f"mask is {w}x{h} pixels but the image is {image_size[0]}x{image_size[1]}")
    sq = center_square(Image.fromarray(painted.astype(np.uint8) * 255))
    small = np.asarray(sq.resize((size, size), Image.BOX), dtype=np.float32) / 255.0
    binary = (small >= 0.5).astype(np.float32)
    if binary.sum() == 0:
        raise InputError("the mask is empty: paint over the part of the image to fill in (start each stroke on "
                         "the image: strokes that begin in the margin around it are ignored by the editor)")
    if binary.sum() == binary.size:
        raise InputError("the mask covers the whole image: leave some pixels unpainted (or use Generate)")
    return torch.from_numpy(binary)
