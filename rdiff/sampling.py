"""The three tasks, each a denoising loop whose final triplane is the 3D result.

* :func:`reconstruct` noises the input image to ``t_r`` and denoises it (``t_r = 0``: one pass).
* :func:`inpaint` follows RePaint: known pixels are replaced by the noised original at every step,
  with optional resampling (re-noise and repeat a step ``resample`` times).
* :func:`generate` starts from pure noise.

Every loop is a generator of :class:`Step` (so callers can show progress or stop early); the
wrappers run it to the end and return a :class:`SampleResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from rdiff.cameras import Cameras
from rdiff.diffusion import sampling_timesteps
from rdiff.model import RenderDiffusion
from rdiff.scene import Scene

ProgressFn = Callable[[int, int], None]


@dataclass
class Step:
    """State after one denoiser call: ``index`` of ``total``, timestep ``t``, current ``x_t``, x0 and triplanes."""

    index: int
    total: int
    t: int
    x_t: Tensor
    x0: Tensor
    planes: Tensor
    frames: Tensor


@dataclass
class SampleResult:
    """Final denoised images ``(B, 3, M, M)`` in [0, 1] and one :class:`Scene` per image."""

    images: Tensor
    scenes: list[Scene]


def _generator(seed: int | None, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed if seed is not None else int(torch.randint(0, 2**31 - 1, ()).item()))
    return g


def _randn(like: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def _check_images(model: RenderDiffusion, images: Tensor, cameras: Cameras) -> Tensor:
    m = model.config.image_size
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1:] != (3, m, m):
        raise ValueError(f"images must be (B, 3, {m}, {m}) in [-1, 1], got {tuple(images.shape)}")
    if len(cameras) != images.shape[0]:
        raise ValueError(f"got {images.shape[0]} images but {len(cameras)} cameras")
    return images.to(model.device)


@torch.inference_mode()
def denoise_steps(
    model: RenderDiffusion,
    x_t: Tensor,
    start_t: int,
    cameras: Cameras,
    steps: int,
    sampler: str = "ddim",
    generator: torch.Generator | None = None,
    known: Tensor | None = None,
    known_mask: Tensor | None = None,
    resample: int = 1,
) -> Iterator[Step]:
    """Denoise ``x_t`` from ``start_t`` to 0 in ``steps`` model calls (times ``resample`` when inpainting).

    With ``known`` images and ``known_mask`` (1 where pixels are known, broadcastable to ``x_t``),
    after every step the known pixels are replaced by ``known`` noised to the new timestep (RePaint).
    """
    d = model.diffusion
    d.check_timestep(start_t)
    if resample < 1:
        raise ValueError("resample must be >= 1")
    cameras = cameras.to(model.device)
    ts = sampling_timesteps(start_t, steps)
    repeats = resample if known is not None else 1
    total = len(ts) * repeats - (repeats - 1)
    x, done = x_t, 0
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else -1
        for r in range(repeats if s >= 0 else 1):
            tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            out = model(x, tt, cameras)
            done += 1
            yield Step(done, total, t, x, out.x0, out.planes, out.frames)
            x_s = d.step(sampler, x, t, s, out.x0, generator)
            if known is not None and known_mask is not None:
                known_s = known if s < 0 else d.q_sample(known, s, _randn(known, generator))
                x_s = known_mask * known_s + (1 - known_mask) * x_s
            if r + 1 < repeats and s >= 0:
                x = d.q_jump(x_s, s, t, _randn(x_s, generator))
            else:
                x = x_s


def _run(model: RenderDiffusion, loop: Iterator[Step], cameras: Cameras, progress: ProgressFn | None) -> SampleResult:
    last = None
    for step in loop:
        last = step
        if progress is not None:
            progress(step.index, step.total)
    assert last is not None
    images = ((last.x0 + 1) / 2).clamp(0, 1)
    scenes = [Scene(model, last.planes[i].clone(), cameras[i].to("cpu"), last.frames[i].cpu()) for i in range(images.shape[0])]
    return SampleResult(images=images, scenes=scenes)


def reconstruct_steps(
    model: RenderDiffusion, images: Tensor, cameras: Cameras, t_r: int = 0, steps: int = 10,
    sampler: str = "ddim", seed: int | None = 0,
) -> Iterator[Step]:
    """Step-wise :func:`reconstruct`."""
    images = _check_images(model, images, cameras)
    g = _generator(seed, images.device)
    model.diffusion.check_timestep(t_r)
    x_t = model.diffusion.q_sample(images, t_r, _randn(images, g))
    return denoise_steps(model, x_t, t_r, cameras, steps, sampler, g)


def reconstruct(
    model: RenderDiffusion, images: Tensor, cameras: Cameras, t_r: int = 0, steps: int = 10,
    sampler: str = "ddim", seed: int | None = 0, progress: ProgressFn | None = None,
) -> SampleResult:
    """Monocular 3D reconstruction: noise ``images`` (in [-1, 1]) to ``t_r``, denoise, keep the final triplane.

    Small ``t_r`` stays faithful to the input; larger ``t_r`` lets the prior fix out-of-distribution inputs.
    """
    return _run(model, reconstruct_steps(model, images, cameras, t_r, steps, sampler, seed), cameras, progress)


def inpaint_steps(
    model: RenderDiffusion, images: Tensor, masks: Tensor, cameras: Cameras, steps: int = 50,
    sampler: str = "ddpm", resample: int = 1, seed: int | None = 0,
) -> Iterator[Step]:
    """Step-wise :func:`inpaint`."""
    images, fill = _inpaint_inputs(model, images, masks, cameras)
    g = _generator(seed, images.device)
    start = model.diffusion.timesteps - 1
    x_t = _randn(images, g)
    return denoise_steps(model, x_t, start, cameras, steps, sampler, g, images, 1.0 - fill, resample)


def _inpaint_inputs(model: RenderDiffusion, images: Tensor, masks: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """Checked images ``(B, 3, M, M)`` and binary fill masks ``(B, 1, M, M)`` (1 = inpaint)."""
    images = _check_images(model, images, cameras)
    masks = masks.to(images)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim == 3:
        masks = masks[:, None]
    if masks.shape[0] != images.shape[0] or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"mask shape {tuple(masks.shape)} does not match images {tuple(images.shape)}")
    return images, (masks > 0.5).to(images.dtype)


def inpaint(
    model: RenderDiffusion, images: Tensor, masks: Tensor, cameras: Cameras, steps: int = 50,
    sampler: str = "ddpm", resample: int = 1, seed: int | None = 0, progress: ProgressFn | None = None,
) -> SampleResult:
    """3D-aware inpainting: ``masks`` (B, M, M) are 1 where pixels must be filled in.

    The returned images keep the known pixels exactly; the scenes are the final triplanes.
    """
    loop = inpaint_steps(model, images, masks, cameras, steps, sampler, resample, seed)
    result = _run(model, loop, cameras, progress)
    known, fill = _inpaint_inputs(model, images, masks, cameras)
    fill = fill.to(result.images)
    result.images = fill * result.images + (1 - fill) * ((known.to(result.images) + 1) / 2)
    return result


def generate_steps(
    model: RenderDiffusion, cameras: Cameras, steps: int = 50, sampler: str = "ddim", seed: int | None = 0,
) -> Iterator[Step]:
    """Step-wise :func:`generate`."""
    g = _generator(seed, model.device)
    m = model.config.image_size
    x_t = torch.randn(len(cameras), 3, m, m, generator=g, device=model.device)
    return denoise_steps(model, x_t, model.diffusion.timesteps - 1, cameras, steps, sampler, g)


def generate(
    model: RenderDiffusion, n: int = 1, cameras: Cameras | None = None, steps: int = 50, sampler: str = "ddim",
    seed: int | None = 0, progress: ProgressFn | None = None,
) -> SampleResult:
    """Unconditional generation of ``n`` 3D scenes, each seen from ``cameras`` (default: the config's view)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    cameras = model.default_cameras(n) if cameras is None else cameras
    return _run(model, generate_steps(model, cameras, steps, sampler, seed), cameras, progress)
