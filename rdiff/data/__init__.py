"""Posed-image datasets: the NeRF-synthetic ``transforms.json`` format and the CLEVR1 generator."""

from rdiff.data.transforms_json import (
    PosedImage,
    PosedImageDataset,
    group_by_scene,
    load_image,
    load_transforms,
    views_to_tensors,
    write_transforms,
)

# CLEVR1 names are imported lazily so that ``python -m rdiff.data.clevr1`` runs cleanly.
_CLEVR1_NAMES = ("BACKGROUND", "Clevr1Scene", "generate_clevr1", "render_view", "sample_camera", "sample_scene")


def __getattr__(name: str):
    if name in _CLEVR1_NAMES:
        from rdiff.data import clevr1

        return getattr(clevr1, name)
    raise AttributeError(f"module 'rdiff.data' has no attribute {name!r}")


__all__ = [
    "PosedImage",
    "PosedImageDataset",
    "views_to_tensors",
    "group_by_scene",
    "load_image",
    "load_transforms",
    "write_transforms",
    "BACKGROUND",
    "Clevr1Scene",
    "generate_clevr1",
    "render_view",
    "sample_camera",
    "sample_scene",
]
