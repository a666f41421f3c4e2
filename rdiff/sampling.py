"""The three tasks, each a denoising loop whose final triplane is the 3D result.

* :func:`reconstruct` noises the input image to ``t_r`` and denoises it (``t_r = 0``: one pass).
* :func:`inpaint` follows RePaint: known pixels are replaced by the noised original at every step,
  with optional resampling (re-noise and repeat a step ``resample`` times).
* :func:`generate` starts from pure noise.

Every loop is a generator of :class:`Step` (so callers can show progress or stop early); the
wrappers run it to the end and return a :class:`SampleResult`, which :func:`result_from_step` builds from
the last step (also for a caller that drives the loop itself, e.g. the app, and stops it early).

What "the result" is, for every task: ``SampleResult.images`` is the last x0 estimate, which *is* the
render of the final triplane from the input camera (the denoiser predicts x0 by rendering its triplane), so
the image and every 3D view of ``SampleResult.scenes`` show the same scene. Inpainting also returns
``SampleResult.composites``: the known pixels pasted back around the model's fill, a 2D image that can look
intact where the 3D scene does not (e.g. after an early stop); it is an extra, not the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from rdiff.cameras import Cameras
from rdiff.diffusion import Sampler, as_sampler, inference_timesteps
from rdiff.model import RenderDiffusion
from rdiff.scene import Scene

ProgressFn = Callable[[int, int], None]


@dataclass
class Step:
    """State after one denoiser call: ``index`` of ``total``, timestep ``t``, current ``x_t``, x0 and triplanes.

    ``x0`` (in [-1, 1]) is the render of ``planes`` from the input cameras. Inpainting steps also carry
    ``composite``: the known pixels with ``x0`` in the hole (during the harmonising reconstruction: the
    composite that reconstruction is fitted to).
    """

    index: int
    total: int
    t: int
    x_t: Tensor
    x0: Tensor
    planes: Tensor
    triplane_rotations: Tensor  # (B, 3, 3) world-from-triplane rotations of ``planes``
    composite: Tensor | None = None


@dataclass
class SampleResult:
    """One :class:`Scene` per image and what it looks like from the input camera.

    Attributes:
        images: ``(B, 3, M, M)`` in [0, 1]: the render of each final triplane from its input camera (the
            last x0 estimate), for every task.
        scenes: the final triplanes.
        composites: inpainting only (else None), ``(B, 3, M, M)`` in [0, 1]: the known pixels exactly, with
            the model's fill in the hole; 2D only, it is not what the scenes look like.
    """

    images: Tensor
    scenes: list[Scene]
    composites: Tensor | None = None


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


def repaint_schedule(n: int, jump_length: int = 1, jump_n_sample: int = 1) -> list[int]:
    """RePaint's time-travel schedule over ``n`` respaced timesteps, as a path of positions.

    Position ``p`` is the state at the ``p``-th sampling timestep (0 = the noisiest, ``n`` = clean). A step
    from ``p`` to ``p + 1`` is a denoiser call; a step from ``p`` to ``p - 1`` re-noises (``q_jump``). Every
    ``jump_length`` positions on the way down the path jumps back up ``jump_length`` positions, ``jump_n_sample
    - 1`` times, so that region is denoised ``jump_n_sample`` times (``jump_n_sample = 1``: plain sampling).
    """
    if n < 1:
        raise ValueError("need at least one sampling step")
    if jump_length < 1 or jump_n_sample < 1:
        raise ValueError("jump_length and jump_n_sample must be >= 1")
    jumps = {q: jump_n_sample - 1 for q in range(jump_length, n, jump_length)}
    p, path = 0, [0]
    while p < n:
        p += 1
        path.append(p)
        if jumps.get(p, 0) > 0:
            jumps[p] -= 1
            for _ in range(jump_length):
                p -= 1
                path.append(p)
    return path


def denoiser_calls(path: list[int]) -> int:
    """Model calls along a :func:`repaint_schedule` path (its downward steps)."""
    return sum(b > a for a, b in zip(path, path[1:]))


@torch.inference_mode()
def denoise_steps(
    model: RenderDiffusion,
    x_t: Tensor,
    start_t: int,
    cameras: Cameras,
    steps: int,
    sampler: Sampler | str = "ddim",
    generator: torch.Generator | None = None,
    known: Tensor | None = None,
    known_mask: Tensor | None = None,
    jump_length: int = 1,
    jump_n_sample: int = 1,
) -> Iterator[Step]:
    """Denoise ``x_t`` from ``start_t`` to 0 in ``steps`` respaced timesteps.

    With ``known`` images and ``known_mask`` (1 where pixels are known, broadcastable to ``x_t``),
    after every step the known pixels are replaced by ``known`` noised to the new timestep (RePaint),
    following :func:`repaint_schedule` with ``jump_length`` / ``jump_n_sample``.
    """
    d = model.diffusion
    d.check_timestep(start_t)
    sampler = as_sampler(sampler)
    cameras = cameras.to(model.device)
    ts = inference_timesteps(start_t, steps)
    inpainting = known is not None and known_mask is not None
    path = repaint_schedule(len(ts), jump_length, jump_n_sample) if inpainting else list(range(len(ts) + 1))
    total = denoiser_calls(path)
    x, done = x_t, 0
    for a, b in zip(path, path[1:]):
        if b < a:  # time travel: re-noise from ts[a] back up to ts[b]
            x = d.q_jump(x, ts[a], ts[b], _randn(x, generator))
            continue
        t = ts[a]
        s = ts[b] if b < len(ts) else -1
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        out = model(x, tt, cameras, inference=True)
        done += 1
        composite = known_mask * known + (1 - known_mask) * out.x0.clamp(-1, 1) if inpainting else None
        yield Step(done, total, t, x, out.x0, out.planes, out.triplane_rotations, composite)
        x = sampler.step(d, x, t, s, out.x0, generator)
        if inpainting:
            known_s = known if s < 0 else d.q_sample(known, s, _randn(known, generator))
            x = known_mask * known_s + (1 - known_mask) * x


def result_from_step(model: RenderDiffusion, step: Step, cameras: Cameras) -> SampleResult:
    """The :class:`SampleResult` of a loop that ended at ``step`` (its last step, or where it was stopped)."""
    images = ((step.x0 + 1) / 2).clamp(0, 1)
    scenes = [Scene(model, step.planes[i].clone(), cameras[i].to("cpu"), step.triplane_rotations[i].cpu())
              for i in range(images.shape[0])]
    composites = None if step.composite is None else ((step.composite + 1) / 2).clamp(0, 1)
    return SampleResult(images=images, scenes=scenes, composites=composites)


def _run(model: RenderDiffusion, loop: Iterator[Step], cameras: Cameras, progress: ProgressFn | None) -> SampleResult:
    last = None
    for step in loop:
        last = step
        if progress is not None:
            progress(step.index, step.total)
    assert last is not None
    return result_from_step(model, last, cameras)


def _noised_input(model: RenderDiffusion, images: Tensor, t_r: int, seed: int | None) -> tuple[Tensor, torch.Generator]:
    """``x_{t_r}`` of ``images`` (already on the model's device) and the generator that drew its noise."""
    g = _generator(seed, images.device)
    model.diffusion.check_timestep(t_r)
    return model.diffusion.q_sample(images, t_r, _randn(images, g)), g


def reconstruction_input(model: RenderDiffusion, images: Tensor, t_r: int = 0, seed: int | None = 0) -> Tensor:
    """What :func:`reconstruct` feeds the model first: ``images`` (in [-1, 1]) noised to ``t_r`` with the noise
    of ``seed``, drawn on the model's device exactly as there (a preview of the model's input)."""
    m = model.config.image_size
    images = images[None] if images.ndim == 3 else images
    if images.ndim != 4 or images.shape[1:] != (3, m, m):
        raise ValueError(f"images must be (B, 3, {m}, {m}) in [-1, 1], got {tuple(images.shape)}")
    return _noised_input(model, images.to(model.device), t_r, seed)[0]


def reconstruct_steps(
    model: RenderDiffusion, images: Tensor, cameras: Cameras, t_r: int = 0, steps: int = 10,
    sampler: Sampler | str = "ddim", seed: int | None = 0,
) -> Iterator[Step]:
    """Step-wise :func:`reconstruct`."""
    images = _check_images(model, images, cameras)
    x_t, g = _noised_input(model, images, t_r, seed)
    return denoise_steps(model, x_t, t_r, cameras, steps, sampler, g)


def reconstruct(
    model: RenderDiffusion, images: Tensor, cameras: Cameras, t_r: int = 0, steps: int = 10,
    sampler: Sampler | str = "ddim", seed: int | None = 0, progress: ProgressFn | None = None,
) -> SampleResult:
    """Monocular 3D reconstruction: noise ``images`` (in [-1, 1]) to ``t_r``, denoise, keep the final triplane.

    Small ``t_r`` stays faithful to the input; larger ``t_r`` lets the prior fix out-of-distribution inputs.
    """
    return _run(model, reconstruct_steps(model, images, cameras, t_r, steps, sampler, seed), cameras, progress)


@dataclass(frozen=True)
class InpaintSettings:
    """How :func:`inpaint` samples.

    The defaults are the measured best on CLEVR1 (``rdiff eval --task inpaint``, docs/inpainting.md): start
    from a 2D fill noised to t = 100 of 1000, 10 DDIM steps, then fit the triplane to the composite.

    Attributes:
        steps: respaced denoising timesteps from T-1 to 0.
        sampler: the per-step sampler (RePaint uses ancestral DDPM steps).
        jump_length, jump_n_sample: RePaint's time travel (see :func:`repaint_schedule`); ``1, 1`` is none.
        harmonize_t_r: after sampling, reconstruct the composite (known pixels + filled hole) at this ``t_r``
            so that the final 3D scene is fitted to the visible pixels too; ``None`` keeps the last sampling
            step's triplane (plain RePaint).
        harmonize_steps: denoising steps of that reconstruction.
        fill_start: start sampling part-way down the schedule, at ``t = round(fill_start * T)`` (0.1: t = 100
            of 1000), from the image with its hole filled by a smooth 2D (biharmonic) fill noised to that t,
            instead of from pure noise at T-1 (``None``); the model then only has to correct the fill, which
            keeps the colours and edges that sampling from pure noise loses.
    """

    steps: int = 10
    sampler: Sampler | str = "ddim"
    jump_length: int = 1
    jump_n_sample: int = 1
    harmonize_t_r: int | None = 0
    harmonize_steps: int = 1
    fill_start: float | None = 0.1

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be >= 1")
        if self.jump_length < 1 or self.jump_n_sample < 1:
            raise ValueError("jump_length and jump_n_sample must be >= 1")
        if self.harmonize_t_r is not None and self.harmonize_t_r < 0:
            raise ValueError("harmonize_t_r must be >= 0 (or None)")
        if self.fill_start is not None and not 0.0 < self.fill_start <= 1.0:
            raise ValueError(f"fill_start must be in (0, 1] (or None), got {self.fill_start}")
        object.__setattr__(self, "sampler", as_sampler(self.sampler))

    @property
    def model_calls(self) -> int:
        """Denoiser calls per image (without the harmonising reconstruction)."""
        return denoiser_calls(repaint_schedule(self.steps, self.jump_length, self.jump_n_sample))


def inpaint_steps(
    model: RenderDiffusion, images: Tensor, masks: Tensor, cameras: Cameras,
    settings: InpaintSettings | None = None, seed: int | None = 0,
) -> Iterator[Step]:
    """Step-wise :func:`inpaint`; the harmonising reconstruction's steps come last."""
    settings = settings or InpaintSettings()
    images, fill = _inpaint_inputs(model, images, masks, cameras)
    g = _generator(seed, images.device)
    known_mask = 1.0 - fill
    T = model.diffusion.timesteps
    if settings.fill_start is None:
        start = T - 1
        x_t = _randn(images, g)
    else:
        start = min(T - 1, max(1, round(settings.fill_start * T)))
        x_t = model.diffusion.q_sample(smooth_fill(images, fill), start, _randn(images, g))
    loop = denoise_steps(model, x_t, start, cameras, settings.steps, settings.sampler, g, images, known_mask,
                         settings.jump_length, settings.jump_n_sample)
    if settings.harmonize_t_r is None:
        yield from loop
        return
    extra = len(inference_timesteps(settings.harmonize_t_r, settings.harmonize_steps))
    last = None
    for step in loop:
        last = step
        yield replace(step, total=step.total + extra)
    assert last is not None and last.composite is not None
    composite = last.composite
    x_h = model.diffusion.q_sample(composite, settings.harmonize_t_r, _randn(composite, g))
    for step in denoise_steps(model, x_h, settings.harmonize_t_r, cameras, settings.harmonize_steps, "ddim", g):
        yield replace(step, index=last.index + step.index, total=last.total + extra, composite=composite)


def biharmonic_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """An ``(H, W, C)`` image with the pixels where ``hole (H, W)`` is true replaced by a smooth 2D fill
    (``skimage.restoration.inpaint_biharmonic``); unchanged where the hole is empty or covers everything."""
    from skimage.restoration import inpaint_biharmonic

    if not hole.any() or hole.all():
        return image
    return inpaint_biharmonic(image, hole, channel_axis=-1)


def smooth_fill(images: Tensor, fill: Tensor) -> Tensor:
    """``images (B, 3, M, M)`` with the pixels where ``fill (B, 1, M, M)`` is 1 replaced by :func:`biharmonic_fill`."""
    out = images.detach().cpu().double().numpy().transpose(0, 2, 3, 1)
    holes = fill[:, 0].detach().cpu().numpy() > 0.5
    filled = np.stack([biharmonic_fill(out[i], holes[i]) for i in range(out.shape[0])])
    return torch.from_numpy(filled.transpose(0, 3, 1, 2).copy()).to(images)


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
    model: RenderDiffusion, images: Tensor, masks: Tensor, cameras: Cameras,
    settings: InpaintSettings | None = None, seed: int | None = 0, progress: ProgressFn | None = None,
) -> SampleResult:
    """3D-aware inpainting: ``masks`` (B, M, M) are 1 where pixels must be filled in.

    ``images`` of the result are the renders of the final triplanes (by default fitted to the composite, see
    :class:`InpaintSettings`) from the input cameras, as for the other tasks; ``composites`` keep the known
    pixels exactly and show the model's fill in the hole (from the last RePaint step).
    """
    return _run(model, inpaint_steps(model, images, masks, cameras, settings, seed), cameras, progress)


def generate_steps(
    model: RenderDiffusion, cameras: Cameras, steps: int = 50, sampler: Sampler | str = "ddim", seed: int | None = 0,
) -> Iterator[Step]:
    """Step-wise :func:`generate`."""
    g = _generator(seed, model.device)
    m = model.config.image_size
    x_t = torch.randn(len(cameras), 3, m, m, generator=g, device=model.device)
    return denoise_steps(model, x_t, model.diffusion.timesteps - 1, cameras, steps, sampler, g)


def generate(
    model: RenderDiffusion, n: int = 1, cameras: Cameras | None = None, steps: int = 50,
    sampler: Sampler | str = "ddim", seed: int | None = 0, progress: ProgressFn | None = None,
) -> SampleResult:
    """Unconditional generation of ``n`` 3D scenes, each seen from ``cameras`` (default: the config's view)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    cameras = model.default_cameras(n) if cameras is None else cameras
    return _run(model, generate_steps(model, cameras, steps, sampler, seed), cameras, progress)
