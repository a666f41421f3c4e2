"""A small CNN that estimates the input camera of an image: elevation, distance and field of view.

RenderDiffusion needs the input view's camera. Azimuth is free (the model works in a view-aligned frame: any
azimuth gives the same reconstruction, turned), but elevation, distance and FOV must match the photo. The
estimator is trained on the posed training images of a model (:mod:`rdiff.training.camera`) and ships beside
its checkpoint as ``camera_estimator.json`` (config, trained ranges, test error) and
``camera_estimator.safetensors``. The app fills its camera sliders from it on upload; the CLI uses it with
``--estimate-camera``.

Only cameras that look at the scene centre from a sphere (every rdiff dataset) are described by these three
numbers; the estimate is clamped to the ranges seen in training and ``in_range`` says whether it had to be.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from rdiff.checkpoint_io import CheckpointError, looks_like_local_path

ESTIMATOR_CONFIG = "camera_estimator.json"
ESTIMATOR_WEIGHTS = "camera_estimator.safetensors"
#: The estimated quantities, in the order of the network's outputs.
QUANTITIES = ("elevation_deg", "radius", "fov_deg")
UNITS = {"elevation_deg": ("elevation", "°"), "radius": ("distance", ""), "fov_deg": ("FOV", "°")}


@dataclass
class CameraEstimatorConfig:
    """Architecture and the camera ranges of the training data (outputs are normalised to these)."""

    image_size: int
    elevation_deg: tuple[float, float]
    radius: tuple[float, float]
    fov_deg: tuple[float, float]
    channels: tuple[int, ...] = (32, 64, 128, 128)
    hidden: int = 128
    #: Mean absolute test error per quantity (and the predict-the-training-mean baseline's), set by training.
    test_error: dict[str, float] = field(default_factory=dict)
    #: How it was trained (the command line), for the model card.
    command: str = ""

    def __post_init__(self) -> None:
        for name in QUANTITIES:
            lo, hi = getattr(self, name)
            setattr(self, name, (float(lo), float(hi)))
            if not hi >= lo:
                raise ValueError(f"camera range {name} = {(lo, hi)} is empty")
        self.channels = tuple(int(c) for c in self.channels)

    def ranges(self) -> Tensor:
        """``(3, 2)``: the [low, high] training range of each quantity."""
        return torch.tensor([getattr(self, q) for q in QUANTITIES], dtype=torch.float32)

    def outside(self, values: Sequence[float], margin: float = 0.05) -> list[str]:
        """Which of ``(elevation degrees, distance, FOV degrees)`` lie outside the training ranges (by more than
        ``margin`` of each range), as readable phrases, e.g. ``"elevation 75° (trained 10-60°)"``."""
        out = []
        for q, v in zip(QUANTITIES, values):
            lo, hi = getattr(self, q)
            if v < lo - margin * (hi - lo) or v > hi + margin * (hi - lo):
                name, unit = UNITS[q]
                out.append(f"{name} {v:.3g}{unit} (trained {lo:.3g}-{hi:.3g}{unit})")
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CameraEstimatorConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class CameraEstimate:
    """An estimated input camera, clamped to the training ranges; ``in_range``: every raw estimate lay within
    its range or less than 5% of the range outside it (a margin a network fitted to the range often needs)."""

    elevation_deg: float
    radius: float
    fov_deg: float
    in_range: bool
    #: What was out of range, e.g. ``["elevation 75° (trained 10-60°)"]``.
    outside: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"elevation {self.elevation_deg:.0f}°, distance {self.radius:.2f}, FOV {self.fov_deg:.1f}°"
        if self.outside:
            text += " (outside the trained cameras: " + "; ".join(self.outside) + ")"
        return text


class CameraEstimator(nn.Module):
    """Image ``(B, 3, S, S)`` in [-1, 1] -> normalised camera ``(B, 3)`` (-1..1 spans each training range)."""

    def __init__(self, config: CameraEstimatorConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in = 3
        for c in config.channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(min(8, c), c), nn.SiLU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.SiLU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(2)  # keeps where things are (the horizon, the object's footprint)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * 4, config.hidden), nn.SiLU(),
                                  nn.Linear(config.hidden, len(QUANTITIES)))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.pool(self.features(images)))

    def normalise(self, values: Tensor) -> Tensor:
        """Camera values ``(B, 3)`` -> the network's normalised targets."""
        r = self.config.ranges().to(values)
        return (values - r[:, 0]) / (r[:, 1] - r[:, 0]).clamp(min=1e-6) * 2 - 1

    def denormalise(self, outputs: Tensor) -> Tensor:
        r = self.config.ranges().to(outputs)
        return (outputs + 1) / 2 * (r[:, 1] - r[:, 0]) + r[:, 0]

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Unclamped camera values ``(B, 3)`` (elevation degrees, distance, FOV degrees)."""
        s = self.config.image_size
        if images.shape[-2:] != (s, s):
            raise ValueError(f"the camera estimator takes {s}x{s} images, got {tuple(images.shape[-2:])}")
        return self.denormalise(self(images.to(next(self.parameters()).device)).float()).cpu()

    def estimate(self, image: Tensor) -> CameraEstimate:
        """The camera of one image ``(3, S, S)`` or ``(1, 3, S, S)`` in [-1, 1], clamped to the trained ranges."""
        values = self.predict(image.reshape(1, *image.shape[-3:]))[0].tolist()
        outside = self.config.outside(values)
        clamped = [min(max(v, lo), hi) for v, (lo, hi) in zip(values, self.config.ranges().tolist())]
        return CameraEstimate(*clamped, in_range=not outside, outside=tuple(outside))

    # ---------------------------------------------------------------------------- files
    def save(self, folder: str | Path) -> None:
        """Write ``camera_estimator.json`` and ``camera_estimator.safetensors`` into ``folder``."""
        from safetensors.torch import save_model

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_model(self, str(folder / ESTIMATOR_WEIGHTS))
        (folder / ESTIMATOR_CONFIG).write_text(json.dumps(self.config.to_dict(), indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> CameraEstimator:
        """Load from a folder; a broken file raises :class:`CheckpointError`."""
        from safetensors.torch import load_model

        folder = Path(folder)
        try:
            config = CameraEstimatorConfig.from_dict(json.loads((folder / ESTIMATOR_CONFIG).read_text()))
            model = cls(config)
            load_model(model, str(folder / ESTIMATOR_WEIGHTS))
        except Exception as e:  # noqa: BLE001 - json, safetensors and shape errors all mean a broken file
            raise CheckpointError(f"broken camera estimator in {folder}: {type(e).__name__}: {e}") from e
        return model.eval()


def find_camera_estimator(source: str | Path, local_files_only: bool = False) -> CameraEstimator | None:
    """The camera estimator shipped with a checkpoint (a folder or a Hub repo), or None if it has none."""
    path = os.path.expanduser(str(source))
    if os.path.isdir(path):
        return CameraEstimator.load(path) if os.path.isfile(os.path.join(path, ESTIMATOR_CONFIG)) else None
    if looks_like_local_path(path):
        return None
    from huggingface_hub import hf_hub_download

    try:
        files = [hf_hub_download(path, name, local_files_only=local_files_only)
                 for name in (ESTIMATOR_CONFIG, ESTIMATOR_WEIGHTS)]
    except Exception:  # noqa: BLE001 - no such file in the repo, or offline: the model has no estimator here
        return None
    return CameraEstimator.load(Path(files[0]).parent)


def camera_values(c2w: np.ndarray, fov_x: float) -> tuple[float, float, float]:
    """``(elevation degrees, distance, FOV degrees)`` of a camera on a sphere looking at the origin."""
    pos = np.asarray(c2w, dtype=np.float64)[:3, 3]
    radius = float(np.linalg.norm(pos))
    elevation = math.degrees(math.asin(max(-1.0, min(1.0, pos[2] / max(radius, 1e-9)))))
    return elevation, radius, math.degrees(fov_x)
