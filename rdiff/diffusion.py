"""Gaussian diffusion maths for an x0-predicting denoiser: schedules, forward noising, posteriors, samplers.

Timesteps are integers ``0 <= t < T``; ``alpha_bar[t] = prod_{i <= t} (1 - beta_i)`` and
``x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps``. Samplers step from any ``t`` to any
``s < t`` (respaced sampling), using the exact Gaussian posterior ``q(x_s | x_t, x0)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def linear_betas(timesteps: int, start: float = 1e-4, end: float = 2e-2) -> Tensor:
    """The DDPM linear schedule, rescaled so other ``timesteps`` keep the same overall noise.

    Betas are capped at 0.999 (as in :func:`cosine_betas`): for very short schedules (``timesteps <= 20``)
    the rescaled end value would reach 1 or more, which is not a valid noise level.
    """
    scale = 1000.0 / timesteps
    return torch.linspace(scale * start, scale * end, timesteps, dtype=torch.float64).clamp(max=0.999)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """The cosine schedule of Nichol & Dhariwal (2021)."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


def make_betas(schedule: str, timesteps: int) -> Tensor:
    if schedule == "linear":
        return linear_betas(timesteps)
    if schedule == "cosine":
        return cosine_betas(timesteps)
    raise ValueError(f"unknown noise schedule {schedule!r} (use 'linear' or 'cosine')")


def inference_timesteps(start: int, steps: int) -> list[int]:
    """The respaced inference (sampling) schedule: descending, distinct timesteps from ``start`` down to 0, at
    most ``steps`` of them. (Training draws random timesteps instead:
    :func:`rdiff.training.loop.random_training_timesteps`.)"""
    if start < 0:
        raise ValueError("start timestep must be >= 0")
    if steps < 1:
        raise ValueError("need at least one sampling step")
    ts = torch.linspace(start, 0, min(steps, start + 1)).round().long().tolist()
    return sorted(set(ts), reverse=True)


class GaussianDiffusion:
    """Noise schedule and the closed-form maths around it (no learnable state)."""

    def __init__(self, timesteps: int = 1000, schedule: str = "linear") -> None:
        self.timesteps = timesteps
        self.betas = make_betas(schedule, timesteps)
        self.alpha_bar = torch.cumprod(1.0 - self.betas, dim=0)

    def _ab(self, t: Tensor | int) -> Tensor:
        """``alpha_bar[t]`` in float64, shaped like ``t`` (``t`` of -1 means the clean image).

        Looked up on ``t``'s device, so a training step on a GPU does not wait for its timesteps to reach the
        host; devices without float64 (Apple's MPS) look up on the CPU.
        """
        t = torch.as_tensor(t).detach().long()
        if t.device.type == "mps":
            t = t.cpu()
        table = self.alpha_bar.to(t.device)
        return torch.where(t < 0, torch.ones_like(t, dtype=torch.float64), table[t.clamp_min(0)])

    @staticmethod
    def _cast(coef: Tensor, like: Tensor) -> Tensor:
        """A float64 coefficient (scalar or per-batch ``(B,)``) cast to ``like``'s dtype and device, broadcastable."""
        coef = coef.to(device=like.device, dtype=like.dtype)
        return coef.reshape(-1, *([1] * (like.ndim - 1))) if coef.ndim else coef

    def check_timestep(self, t: int) -> None:
        if not 0 <= t < self.timesteps:
            raise ValueError(f"timestep must be in [0, {self.timesteps - 1}], got {t}")

    def q_sample(self, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """Sample ``x_t ~ q(x_t | x0)``."""
        ab = self._ab(t)
        return self._cast(ab.sqrt(), x0) * x0 + self._cast((1 - ab).sqrt(), x0) * noise

    def q_jump(self, x_s: Tensor, s: int, t: int, noise: Tensor) -> Tensor:
        """Sample ``x_t ~ q(x_t | x_s)`` for ``t > s`` (forward re-noising, used by RePaint resampling)."""
        ratio = self._ab(t) / self._ab(s)
        return self._cast(ratio.sqrt(), x_s) * x_s + self._cast((1 - ratio).sqrt(), x_s) * noise

    def posterior(
        self, x0: Tensor, x_t: Tensor, t: Tensor | int, s: Tensor | int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mean and variance of ``q(x_s | x_t, x0)`` (``s`` defaults to ``t - 1``); coefficients in float64."""
        t = torch.as_tensor(t)
        s = t - 1 if s is None else torch.as_tensor(s)
        ab_t, ab_s = self._ab(t), self._ab(s)
        alpha_ts = ab_t / ab_s
        beta_ts = 1 - alpha_ts
        c0 = ab_s.sqrt() * beta_ts / (1 - ab_t)
        ct = alpha_ts.sqrt() * (1 - ab_s) / (1 - ab_t)
        var = beta_ts * (1 - ab_s) / (1 - ab_t)
        mean = self._cast(c0, x_t) * x0 + self._cast(ct, x_t) * x_t
        return mean, self._cast(var, x_t)

    def predict_noise(self, x_t: Tensor, t: Tensor | int, x0: Tensor) -> Tensor:
        """The noise implied by ``x_t`` and a prediction of ``x0``."""
        ab = self._ab(t)
        return (x_t - self._cast(ab.sqrt(), x_t) * x0) * self._cast(1 / (1 - ab).sqrt(), x_t)

    def ddpm_step(self, x_t: Tensor, t: int, s: int, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral step ``x_t -> x_s`` (``s < t``; ``s == -1`` returns ``x0``)."""
        if s < 0:
            return x0
        mean, var = self.posterior(x0, x_t, t, s)
        noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        return mean + var.sqrt() * noise

    def ddim_step(
        self, x_t: Tensor, t: int, s: int, x0: Tensor, eta: float = 0.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """DDIM step ``x_t -> x_s`` (deterministic for ``eta = 0``)."""
        if s < 0:
            return x0
        ab_t, ab_s = self._ab(t), self._ab(s)
        eps = self.predict_noise(x_t, t, x0)
        sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()
        out = self._cast(ab_s.sqrt(), x_t) * x0 + self._cast((1 - ab_s - sigma**2).clamp_min(0).sqrt(), x_t) * eps
        if eta > 0:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
            out = out + self._cast(sigma, x_t) * noise
        return out


@dataclass(frozen=True)
class DDPM:
    """Ancestral sampling: each step draws from the exact posterior ``q(x_s | x_t, x0)``."""

    def step(self, d: GaussianDiffusion, x_t: Tensor, t: int, s: int, x0: Tensor,
             generator: torch.Generator | None = None) -> Tensor:
        return d.ddpm_step(x_t, t, s, x0, generator)


@dataclass(frozen=True)
class DDIM:
    """DDIM steps; ``eta = 0`` is deterministic, ``eta = 1`` matches DDPM's noise level."""

    eta: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"DDIM eta must be in [0, 1], got {self.eta}")

    def step(self, d: GaussianDiffusion, x_t: Tensor, t: int, s: int, x0: Tensor,
             generator: torch.Generator | None = None) -> Tensor:
        return d.ddim_step(x_t, t, s, x0, self.eta, generator)


Sampler = DDPM | DDIM
SAMPLERS = {"ddpm": DDPM, "ddim": DDIM}


def as_sampler(sampler: Sampler | str) -> Sampler:
    """A sampler object from itself or its name (``"ddpm"``, ``"ddim"``: DDIM with eta 0)."""
    if isinstance(sampler, (DDPM, DDIM)):
        return sampler
    if isinstance(sampler, str) and sampler in SAMPLERS:
        return SAMPLERS[sampler]()
    raise ValueError(f"unknown sampler {sampler!r} (use 'ddpm', 'ddim', DDPM() or DDIM(eta))")
