"""Train and test a :class:`~rdiff.camera_estimator.CameraEstimator` on a posed dataset's train / test splits.

Targets are each view's elevation, distance and FOV (:func:`~rdiff.camera_estimator.camera_values`); images are
prepared as the model sees them (centred square crop, the model's size, [-1, 1]). Augmentation: horizontal
flips (a mirrored view has the same elevation, distance and FOV). The test error is reported next to the
trivial prediction "always the training mean", so that an estimator that learnt nothing shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rdiff.camera_estimator import QUANTITIES, CameraEstimator, CameraEstimatorConfig, camera_values


@dataclass
class CameraTrainSettings:
    """How long and how fast the estimator trains."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


def posed_arrays(data: str | Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 3, size, size)`` in [-1, 1] and camera values ``(N, 3)`` of a ``transforms.json`` folder."""
    from rdiff.data import load_transforms

    views = load_transforms(data, size=size)
    if not views:
        raise ValueError(f"{data} has no views")
    images = torch.from_numpy(np.stack([v.image for v in views])).permute(0, 3, 1, 2) * 2 - 1
    values = torch.tensor([camera_values(v.c2w, v.fov_x) for v in views], dtype=torch.float32)
    return images.float().contiguous(), values


def mean_abs_error(estimator: CameraEstimator, images: torch.Tensor, values: torch.Tensor,
                   batch: int = 256) -> dict[str, float]:
    """Mean absolute error of each quantity over ``images`` (unclamped predictions)."""
    estimator.eval()
    pred = torch.cat([estimator.predict(images[i:i + batch]) for i in range(0, len(images), batch)])
    err = (pred - values).abs().mean(0)
    return {q: float(e) for q, e in zip(QUANTITIES, err)}


def train_camera_estimator(
    train_data: str | Path,
    test_data: str | Path,
    image_size: int,
    settings: CameraTrainSettings | None = None,
    progress: bool = True,
) -> CameraEstimator:
    """Train an estimator on ``train_data``; its config records the ranges and the test errors."""
    settings = settings or CameraTrainSettings()
    torch.manual_seed(settings.seed)
    images, values = posed_arrays(train_data, image_size)
    test_images, test_values = posed_arrays(test_data, image_size)
    lo, hi = values.min(0).values, values.max(0).values
    config = CameraEstimatorConfig(image_size=image_size, elevation_deg=(lo[0], hi[0]), radius=(lo[1], hi[1]),
                                   fov_deg=(lo[2], hi[2]))
    model = CameraEstimator(config)
    targets = model.normalise(values)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = max(1, len(images) // settings.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=settings.epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(settings.seed)
    bar = tqdm(range(settings.epochs), desc="camera estimator", disable=not progress)
    for _ in bar:
        model.train()
        order = torch.randperm(len(images), generator=g)
        for i in range(steps_per_epoch):
            idx = order[i * settings.batch_size:(i + 1) * settings.batch_size]
            x = images[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = torch.nn.functional.smooth_l1_loss(model(x), targets[idx], beta=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    model.eval()
    errors = mean_abs_error(model, test_images, test_values)
    baseline = (test_values - values.mean(0)).abs().mean(0)
    config.test_error = {**errors, **{f"{q}_mean_baseline": float(b) for q, b in zip(QUANTITIES, baseline)},
                         "test_views": float(len(test_images)), "train_views": float(len(images))}
    return model
