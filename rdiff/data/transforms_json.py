"""Reader and writer for the NeRF-synthetic ``transforms.json`` posed-image format.

A dataset folder holds ``transforms.json``::

    {"camera_angle_x": <horizontal fov, radians>,
     "frames": [{"file_path": "images/00000.png",      # relative, ".png" optional
                 "transform_matrix": [[...4x4 c2w...]],  # OpenGL axes, camera looks down -Z
                 "scene": "scene_00012",                 # optional: groups views of one scene
                 "mask_path": "masks/00000.png",         # optional: object / shadow label mask
                 "camera_angle_x": 0.8}, ...]}           # optional per-frame override

Masks are 8-bit grey PNGs of the image's size: ``MASK_OBJECT`` (255) on the object, ``MASK_SHADOW`` (128)
where the object changes the rest of the scene (its cast shadow, reflections), 0 elsewhere. The
"foreground" of an image is object + shadow; evaluation scores whole frame, foreground and object.

Images may be RGB, RGBA (composited onto a background colour), grayscale, palette or 16-bit PNGs.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rdiff.cameras import Cameras

TRANSFORMS_FILE = "transforms.json"
#: Mask label of object pixels.
MASK_OBJECT = 255
#: Mask label of pixels the object changes without covering them (its shadow).
MASK_SHADOW = 128


@dataclass
class PosedImage:
    """One image with its camera.

    Attributes:
        image: ``(H, W, 3)`` float32 RGB in [0, 1].
        c2w: ``(4, 4)`` float32 camera-to-world matrix (OpenGL axes).
        fov_x: horizontal field of view in radians.
        scene: id of the scene the view belongs to.
        file_path: image path as written in ``transforms.json`` (relative to the folder).
        mask: optional ``(H, W)`` uint8 label mask (``MASK_OBJECT``, ``MASK_SHADOW`` or 0).
    """

    image: np.ndarray
    c2w: np.ndarray
    fov_x: float
    scene: str
    file_path: str
    mask: np.ndarray | None = None

    @property
    def object_mask(self) -> np.ndarray | None:
        """Boolean ``(H, W)``: object pixels (None without a mask)."""
        return None if self.mask is None else self.mask >= MASK_OBJECT

    @property
    def foreground_mask(self) -> np.ndarray | None:
        """Boolean ``(H, W)``: object or shadow pixels (None without a mask)."""
        return None if self.mask is None else self.mask >= MASK_SHADOW


# --------------------------------------------------------------------------------------------------
# Image decoding


def _to_rgb_float(img: Image.Image, background: Sequence[float]) -> np.ndarray:
    """Decode a PIL image to ``(H, W, 3)`` float32 in [0, 1], compositing alpha onto ``background``."""
    mode = img.mode
    alpha = None
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit (or 32-bit integer) grayscale: PNG 16-bit grey decodes to one of these.
        arr = np.asarray(img).astype(np.float64)
        # Mode "I" is what older Pillow gives for 16-bit grey PNGs; if it only holds 8-bit values keep that scale.
        scale = 255.0 if mode == "I" and arr.max(initial=0) <= 255 else 65535.0
        rgb = np.repeat((arr / scale)[..., None], 3, axis=-1)
    elif mode == "F":
        rgb = np.repeat(np.asarray(img, dtype=np.float64)[..., None], 3, axis=-1)
    else:
        if mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
            img = img.convert("RGB")
        elif mode == "PA":
            img = img.convert("RGBA")
        elif mode == "La":
            img = img.convert("LA")
        elif mode == "RGBa":
            img = img.convert("RGBA")
        elif mode == "RGBX":
            img = img.convert("RGB")
        mode = img.mode
        arr = np.asarray(img)
        maxval = 65535.0 if arr.dtype == np.uint16 else 255.0
        arr = arr.astype(np.float64) / maxval
        if mode == "L":
            rgb = np.repeat(arr[..., None], 3, axis=-1)
        elif mode == "LA":
            rgb = np.repeat(arr[..., :1], 3, axis=-1)
            alpha = arr[..., 1:2]
        elif mode == "RGB":
            rgb = arr
        elif mode == "RGBA":
            rgb = arr[..., :3]
            alpha = arr[..., 3:4]
        else:  # pragma: no cover - exotic modes
            rgb = np.asarray(img.convert("RGB")).astype(np.float64) / 255.0
    if alpha is not None:
        bg = np.asarray(background, dtype=np.float64).reshape(1, 1, 3)
        rgb = rgb * alpha + bg * (1.0 - alpha)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``(H, W, C)`` float image to ``size x size`` (area filter when shrinking, Lanczos otherwise)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    shrinking = size <= h and size <= w
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.LANCZOS
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F").resize((size, size), resample))
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def center_square(shape: tuple[int, int]) -> tuple[slice, slice]:
    """Row and column slices of the centred square crop of an ``(H, W)`` image."""
    h, w = shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return slice(top, top + side), slice(left, left + side)


def cropped_fov_x(fov_x: float, shape: tuple[int, int]) -> float:
    """Horizontal fov after :func:`center_square` of an ``(H, W)`` image with square pixels."""
    h, w = shape
    return fov_x if w <= h else 2.0 * math.atan(math.tan(fov_x / 2.0) * h / w)


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """An ``(H, W, C)`` float image cropped to its centred square (never squashed) and resized to ``size``."""
    rows, cols = center_square(image.shape[:2])
    return _resize(np.ascontiguousarray(image[rows, cols]), int(size))


def load_image(path: str | os.PathLike, size: int | None = None, background=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Load one image file as ``(H, W, 3)`` float32 in [0, 1].

    With ``size``, see :func:`square_resize`; :func:`cropped_fov_x` gives the matching field of view.
    """
    with Image.open(path) as img:
        img.load()
        rgb = _to_rgb_float(img, background)
    return rgb if size is None else square_resize(rgb, size)


def load_mask(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Load a label mask as ``(H, W)`` uint8 in {0, MASK_SHADOW, MASK_OBJECT}, optionally resized.

    Resizing keeps a label where at least half of the covered area carries it (object before shadow).
    """
    with Image.open(path) as img:
        arr = np.asarray(img.convert("L"))
    if size is not None:
        rows, cols = center_square(arr.shape)
        arr = arr[rows, cols]
    labels = np.where(arr >= (MASK_OBJECT + MASK_SHADOW) // 2, MASK_OBJECT,
                      np.where(arr >= MASK_SHADOW // 2, MASK_SHADOW, 0)).astype(np.uint8)
    if size is None or labels.shape == (size, size):
        return labels
    obj = _resize((labels == MASK_OBJECT).astype(np.float32)[..., None], int(size))[..., 0]
    fg = _resize((labels > 0).astype(np.float32)[..., None], int(size))[..., 0]
    return np.where(obj >= 0.5, MASK_OBJECT, np.where(fg >= 0.5, MASK_SHADOW, 0)).astype(np.uint8)


def resolve_image(folder: Path, file_path: str) -> Path:
    """The image file of a frame's ``file_path`` (relative to ``folder``; ".png" may be left out)."""
    rel = file_path[2:] if file_path.startswith("./") else file_path
    candidates = [folder / rel]
    if not rel.lower().endswith(".png"):
        candidates.append(folder / (rel + ".png"))
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"image for frame file_path={file_path!r} not found (tried {', '.join(str(c) for c in candidates)})"
    )


def _parse_matrix(value, where: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: transform_matrix is not a numeric matrix") from e
    if m.shape != (4, 4):
        raise ValueError(f"{where}: transform_matrix must be 4x4, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{where}: transform_matrix has non-finite entries")
    return m.astype(np.float32)


def _parse_fov(value, where: str) -> float:
    try:
        fov = float(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: camera_angle_x must be a number, got {value!r}") from e
    if not (0.0 < fov < math.pi):
        raise ValueError(f"{where}: camera_angle_x must be in (0, pi) radians, got {fov}")
    return fov


def load_transforms(
    folder: str | os.PathLike, size: int | None = None, background=(1.0, 1.0, 1.0)
) -> list[PosedImage]:
    """Read a ``transforms.json`` folder.

    Args:
        folder: directory holding ``transforms.json``, or the path of a json file itself (e.g. a
            NeRF-synthetic ``transforms_train.json``).
        size: if given, crop every image to its centred square and resize it to ``size x size``; the
            frame's ``fov_x`` is that of the crop.
        background: RGB in [0, 1] that transparent pixels are composited onto.

    Raises:
        FileNotFoundError: no ``transforms.json`` or a missing image file.
        ValueError: malformed json, missing keys, bad matrices or fov.
    """
    folder = Path(folder)
    json_path = folder if folder.is_file() else folder / TRANSFORMS_FILE
    folder = json_path.parent
    if not json_path.is_file():
        raise FileNotFoundError(f"no {TRANSFORMS_FILE} in {folder}")
    try:
        meta = json.loads(json_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_path} is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise ValueError(f"{json_path}: top level must be an object")
    if "frames" not in meta:
        raise ValueError(f"{json_path}: missing key 'frames'")
    records = meta["frames"]  # the format's name for its list of posed images
    if not isinstance(records, list):
        raise ValueError(f"{json_path}: 'frames' must be a list")
    top_fov = _parse_fov(meta["camera_angle_x"], str(json_path)) if "camera_angle_x" in meta else None

    out: list[PosedImage] = []
    for i, fr in enumerate(records):
        where = f"{json_path} frame {i}"
        if not isinstance(fr, dict):
            raise ValueError(f"{where}: a frame must be an object")
        for key in ("file_path", "transform_matrix"):
            if key not in fr:
                raise ValueError(f"{where}: missing key {key!r}")
        if "camera_angle_x" in fr:
            fov = _parse_fov(fr["camera_angle_x"], where)
        elif top_fov is not None:
            fov = top_fov
        else:
            raise ValueError(f"{where}: missing key 'camera_angle_x' (neither top-level nor per frame)")
        c2w = _parse_matrix(fr["transform_matrix"], where)
        file_path = str(fr["file_path"])
        image = load_image(resolve_image(folder, file_path), background=background)
        if size is not None:
            fov = cropped_fov_x(fov, image.shape[:2])
            image = square_resize(image, size)
        scene = str(fr["scene"]) if "scene" in fr else Path(file_path).stem
        mask = load_mask(resolve_image(folder, str(fr["mask_path"])), size=size) if "mask_path" in fr else None
        if mask is not None and mask.shape != image.shape[:2]:
            raise ValueError(f"{where}: mask shape {mask.shape} differs from image shape {image.shape[:2]}")
        out.append(PosedImage(image=image, c2w=c2w, fov_x=fov, scene=scene, file_path=file_path, mask=mask))
    return out


def _to_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


#: Split folder names that also get a NeRF-synthetic ``transforms_<split>.json`` index in their parent.
SPLIT_NAMES = ("train", "val", "test")


def write_transforms(folder: str | os.PathLike, views: Iterable[PosedImage], image_dir: str = "images",
                     mask_dir: str = "masks") -> Path:
    """Write posed images as ``folder/image_dir/NNNNN.png`` plus ``folder/transforms.json`` (one entry of its
    ``frames`` list each).

    Views with a ``mask`` also get ``folder/mask_dir/NNNNN.png`` and a ``mask_path`` entry.
    ``file_path`` entries carry no extension (``./images/00000``), as NeRF-synthetic loaders expect. When
    ``folder`` is named ``train``, ``val`` or ``test``, its parent also gets ``transforms_<split>.json``
    with paths relative to the parent (the NeRF-synthetic layout), so both forms load.
    ``views`` may be any iterable (a generator is consumed once, so views can be rendered lazily).
    Top-level ``camera_angle_x`` is the first view's fov; every entry also records its own
    ``camera_angle_x`` (used as an override by :func:`load_transforms`). Returns the json path.
    """
    folder = Path(folder)
    (folder / image_dir).mkdir(parents=True, exist_ok=True)
    records = []
    top_fov = None
    for i, fr in enumerate(views):
        rel = f"{image_dir}/{i:05d}" if image_dir else f"{i:05d}"
        Image.fromarray(_to_uint8(fr.image), mode="RGB").save(folder / f"{rel}.png")
        mask_rel = None
        if fr.mask is not None:
            mask = np.asarray(fr.mask, dtype=np.uint8)
            if mask.shape != fr.image.shape[:2]:
                raise ValueError(f"frame {i}: mask shape {mask.shape} differs from image shape {fr.image.shape[:2]}")
            mask_rel = f"{mask_dir}/{i:05d}.png"
            (folder / mask_dir).mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask, mode="L").save(folder / mask_rel)
        c2w = np.asarray(fr.c2w, dtype=np.float32)
        if c2w.shape != (4, 4):
            raise ValueError(f"frame {i}: c2w must be 4x4, got {c2w.shape}")
        fov = float(fr.fov_x)
        if top_fov is None:
            top_fov = fov
        record = {
            "file_path": f"./{rel}",
            "transform_matrix": [[float(v) for v in row] for row in c2w],
            "camera_angle_x": fov,
            "scene": str(fr.scene),
        }
        if mask_rel is not None:
            record["mask_path"] = f"./{mask_rel}"
        records.append(record)
    if top_fov is None:
        raise ValueError("write_transforms needs at least one frame")
    json_path = folder / TRANSFORMS_FILE
    json_path.write_text(json.dumps({"camera_angle_x": top_fov, "frames": records}, indent=1) + "\n")
    if folder.name in SPLIT_NAMES:
        prefix = f"./{folder.name}/"
        rooted = [{**r, "file_path": prefix + r["file_path"][2:],
                   **({"mask_path": prefix + r["mask_path"][2:]} if "mask_path" in r else {})} for r in records]
        index = folder.parent / f"transforms_{folder.name}.json"
        index.write_text(json.dumps({"camera_angle_x": top_fov, "frames": rooted}, indent=1) + "\n")
    return json_path


# --------------------------------------------------------------------------------------------------
# Helpers


def views_to_tensors(views: Sequence[PosedImage]) -> tuple[torch.Tensor, Cameras]:
    """Stack posed images: images ``(B, 3, H, W)`` float32 in [-1, 1] and their :class:`Cameras`."""
    if len(views) == 0:
        raise ValueError("views_to_tensors needs at least one view")
    shapes = {f.image.shape for f in views}
    if len(shapes) != 1:
        raise ValueError(f"all images must have the same shape, got {sorted(shapes)}")
    images = torch.from_numpy(np.stack([f.image for f in views]).astype(np.float32)).permute(0, 3, 1, 2)
    images = images.contiguous() * 2.0 - 1.0
    c2w = torch.from_numpy(np.stack([np.asarray(f.c2w, dtype=np.float32) for f in views]))
    fov = torch.tensor([float(f.fov_x) for f in views], dtype=torch.float32)
    return images, Cameras(c2w, fov)


def group_by_scene(views: Iterable[PosedImage]) -> dict[str, list[PosedImage]]:
    """Posed images grouped by ``scene`` id (order of first appearance; view order kept)."""
    groups: dict[str, list[PosedImage]] = {}
    for f in views:
        groups.setdefault(f.scene, []).append(f)
    return groups


class PosedImageDataset(torch.utils.data.Dataset):
    """All posed images (``views``) of a ``transforms.json`` folder, loaded into memory once (no augmentation).

    Items are dicts: ``image`` ``(3, H, W)`` float32 in [-1, 1], ``c2w`` ``(4, 4)``,
    ``fov_x`` scalar tensor, ``index`` int, ``mask`` ``(H, W)`` uint8 label mask (all 0 for views without
    one; ``has_masks`` says whether every view has one). ``scenes[index]`` gives the scene id of an item.
    With ``paired=True`` every item also carries another view of the same scene, drawn at random each
    time (``other_image``, ``other_c2w``, ``other_fov_x``, ``other_index``; the item's own view when its
    scene has only one), for training with an unseen-view loss.
    """

    def __init__(self, folder: str | os.PathLike, size: int | None = None, background=(1.0, 1.0, 1.0),
                 paired: bool = False):
        self.folder = Path(folder)
        self.views = load_transforms(folder, size=size, background=background)
        if not self.views:
            raise ValueError(f"{self.folder}: transforms.json has no frames")
        images, cams = views_to_tensors(self.views)
        self.images = images
        self.c2w = cams.c2w
        self.fov_x = cams.fov_x
        self.scenes = [f.scene for f in self.views]
        h, w = images.shape[-2:]
        self.has_masks = all(f.mask is not None for f in self.views)
        self.masks = torch.from_numpy(np.stack([f.mask if f.mask is not None else np.zeros((h, w), np.uint8)
                                                for f in self.views]))
        self.paired = paired
        members: dict[str, list[int]] = {}
        for i, scene in enumerate(self.scenes):
            members.setdefault(scene, []).append(i)
        self._views_of = [members[scene] for scene in self.scenes]

    def __len__(self) -> int:
        return len(self.views)

    def other_view(self, index: int, generator: torch.Generator | None = None) -> int:
        """A random view of ``index``'s scene other than ``index`` itself (itself if it is the only one)."""
        views = self._views_of[index]
        if len(views) == 1:
            return index
        pick = int(torch.randint(len(views) - 1, (), generator=generator))
        others = [v for v in views if v != index]
        return others[pick]

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        item = {"image": self.images[index], "c2w": self.c2w[index], "fov_x": self.fov_x[index], "index": index,
                "mask": self.masks[index]}
        if self.paired:
            j = self.other_view(index)
            item.update(other_image=self.images[j], other_c2w=self.c2w[j], other_fov_x=self.fov_x[j], other_index=j,
                        other_mask=self.masks[j])
        return item
