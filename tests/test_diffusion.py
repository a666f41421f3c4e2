"""Diffusion maths checked against independent derivations (Bayes on scalar Gaussians, numerically)."""

import math

import numpy as np
import pytest
import torch

from rdiff.diffusion import (
    DDIM,
    DDPM,
    GaussianDiffusion,
    as_sampler,
    cosine_betas,
    inference_timesteps,
    linear_betas,
    make_betas,
)


def reference_alpha_bar(timesteps: int) -> np.ndarray:
    """The DDPM linear schedule (1e-4 .. 0.02 over 1000 steps, rescaled for other lengths), by hand."""
    scale = 1000.0 / timesteps
    betas = [scale * (1e-4 + (2e-2 - 1e-4) * i / (timesteps - 1)) for i in range(timesteps)]
    out, prod = [], 1.0
    for b in betas:
        prod *= 1.0 - b
        out.append(prod)
    return np.array(out)


def numeric_posterior(x0: float, x_t: float, ab_s: float, ab_t: float) -> tuple[float, float]:
    """Mean and variance of p(x_s | x_t, x0) ∝ q(x_s | x0) q(x_t | x_s), integrated on a fine grid."""
    a = ab_t / ab_s
    var1, mean1 = 1 - ab_s, math.sqrt(ab_s) * x0  # q(x_s | x0)
    var2 = 1 - a  # q(x_t | x_s) = N(sqrt(a) x_s, 1 - a), as a function of x_s
    # grid around the prior mean wide enough for either factor
    lo, hi = mean1 - 8 * math.sqrt(var1), mean1 + 8 * math.sqrt(var1)
    lo = min(lo, x_t / math.sqrt(a) - 8 * math.sqrt(var2 / a))
    hi = max(hi, x_t / math.sqrt(a) + 8 * math.sqrt(var2 / a))
    xs = np.linspace(lo, hi, 2_000_001)
    logp = -((xs - mean1) ** 2) / (2 * var1) - (x_t - math.sqrt(a) * xs) ** 2 / (2 * var2)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    mean = float((p * xs).sum())
    return mean, float((p * (xs - mean) ** 2).sum())


# --------------------------------------------------------------------------------------------------
# schedules


def test_linear_schedule_matches_ddpm():
    d = GaussianDiffusion(1000, "linear")
    assert d.betas[0].item() == pytest.approx(1e-4) and d.betas[-1].item() == pytest.approx(0.02)
    np.testing.assert_allclose(d.alpha_bar.numpy(), reference_alpha_bar(1000), rtol=1e-9)
    np.testing.assert_allclose(GaussianDiffusion(100).alpha_bar.numpy(), reference_alpha_bar(100), rtol=1e-9)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("timesteps", [10, 100, 1000])
def test_schedules_monotone_and_in_range(schedule, timesteps):
    d = GaussianDiffusion(timesteps, schedule)
    assert d.betas.shape == (timesteps,) and d.alpha_bar.dtype == torch.float64
    assert bool(((d.betas > 0) & (d.betas < 1)).all())
    ab = d.alpha_bar
    assert bool(((ab > 0) & (ab <= 1)).all())
    assert bool((ab.diff() < 0).all())
    assert ab[-1] < 0.01  # nearly pure noise at the end, whatever the length
    if schedule == "linear":
        assert bool((d.betas.diff() >= 0).all())


def test_cosine_schedule_follows_its_definition():
    t = np.arange(1001) / 1000
    f = np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
    expected = np.minimum(1 - f[1:] / f[:-1], 0.999)
    np.testing.assert_allclose(cosine_betas(1000).numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(GaussianDiffusion(1000, "cosine").alpha_bar[:-1].numpy(), (f[1:] / f[0])[:-1], rtol=1e-6)
    torch.testing.assert_close(make_betas("linear", 50), linear_betas(50))


def test_rescaled_linear_schedule_keeps_total_noise():
    # fewer steps -> proportionally larger betas, so the end of the chain is about as noisy
    for n in (50, 200):
        ab = GaussianDiffusion(n).alpha_bar[-1].item()
        assert 1e-6 < ab < 1e-3


# --------------------------------------------------------------------------------------------------
# forward process


def test_q_sample_statistics():
    d = GaussianDiffusion(100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([-0.8, 0.0, 0.5, 1.0])
    ab_ref = reference_alpha_bar(100)
    for t in (0, 10, 50, 99):
        noise = torch.randn(200_000, 4, generator=g, dtype=torch.float64)
        x_t = d.q_sample(x0.double().expand(200_000, 4), t, noise)
        np.testing.assert_allclose(x_t.mean(0).numpy(), math.sqrt(ab_ref[t]) * x0.numpy(), atol=0.01)
        np.testing.assert_allclose(x_t.var(0).numpy(), np.full(4, 1 - ab_ref[t]), rtol=0.02, atol=1e-4)


def test_q_sample_per_example_timesteps():
    d = GaussianDiffusion(100)
    x0 = torch.ones(3, 2, 2, 2)
    t = torch.tensor([0, 40, 99])
    out = d.q_sample(x0, t, torch.zeros_like(x0))
    for i, ti in enumerate(t.tolist()):
        torch.testing.assert_close(out[i], torch.full((2, 2, 2), math.sqrt(d.alpha_bar[ti].item())))


def test_q_jump_composition_matches_q_sample():
    d = GaussianDiffusion(100)
    g = torch.Generator().manual_seed(1)
    x0 = torch.tensor([0.7, -0.3]).double()
    s, t = 20, 70
    n = 200_000
    x_s = d.q_sample(x0.expand(n, 2), s, torch.randn(n, 2, generator=g, dtype=torch.float64))
    x_t = d.q_jump(x_s, s, t, torch.randn(n, 2, generator=g, dtype=torch.float64))
    ab = d.alpha_bar[t].item()
    np.testing.assert_allclose(x_t.mean(0).numpy(), math.sqrt(ab) * x0.numpy(), atol=0.01)
    np.testing.assert_allclose(x_t.var(0).numpy(), [1 - ab] * 2, rtol=0.02)
    # and the conditional law of x_t given a fixed x_s is N(sqrt(a) x_s, 1 - a), a = ab_t / ab_s
    a = ab / d.alpha_bar[s].item()
    fixed = torch.full((n,), 0.5, dtype=torch.float64)
    x_t = d.q_jump(fixed, s, t, torch.randn(n, generator=g, dtype=torch.float64))
    assert x_t.mean().item() == pytest.approx(0.5 * math.sqrt(a), abs=0.005)
    assert x_t.var().item() == pytest.approx(1 - a, rel=0.02)


def test_predict_noise_inverts_q_sample():
    d = GaussianDiffusion(100)
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    eps = torch.randn(2, 3, 4, 4, generator=g)
    t = torch.tensor([5, 80])
    torch.testing.assert_close(d.predict_noise(d.q_sample(x0, t, eps), t, x0), eps, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------------------------------
# posteriors


@pytest.mark.parametrize("t,s", [(1, 0), (10, 9), (50, 20), (99, 0), (99, 98), (30, 29)])
def test_posterior_matches_bayes_numerically(t, s):
    d = GaussianDiffusion(100)
    for x0, x_t in ((0.6, -0.4), (-1.0, 1.3)):
        mean, var = d.posterior(torch.tensor([x0], dtype=torch.float64), torch.tensor([x_t], dtype=torch.float64), t, s)
        ref_mean, ref_var = numeric_posterior(x0, x_t, d.alpha_bar[s].item(), d.alpha_bar[t].item())
        assert mean.item() == pytest.approx(ref_mean, rel=1e-4, abs=1e-6)
        assert float(var) == pytest.approx(ref_var, rel=1e-3)


def test_posterior_default_is_classic_ddpm():
    d = GaussianDiffusion(1000)
    betas, ab = d.betas, d.alpha_bar
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(5, dtype=torch.float64, generator=g)
    x_t = torch.randn(5, dtype=torch.float64, generator=g)
    for t in (1, 2, 100, 500, 999):
        mean, var = d.posterior(x0, x_t, t)
        c0 = betas[t] * ab[t - 1].sqrt() / (1 - ab[t])
        ct = (1 - ab[t - 1]) * (1 - betas[t]).sqrt() / (1 - ab[t])
        torch.testing.assert_close(mean, c0 * x0 + ct * x_t)
        torch.testing.assert_close(var, betas[t] * (1 - ab[t - 1]) / (1 - ab[t]))
    # t = 0 -> the clean image, no variance
    mean, var = d.posterior(x0, x_t, 0)
    torch.testing.assert_close(mean, x0)
    assert float(var) == 0.0


def test_ddpm_step_samples_the_posterior():
    d = GaussianDiffusion(100)
    g = torch.Generator().manual_seed(4)
    x0 = torch.full((100_000,), 0.4, dtype=torch.float64)
    x_t = torch.full((100_000,), -0.2, dtype=torch.float64)
    out = d.ddpm_step(x_t, 60, 40, x0, generator=g)
    mean, var = d.posterior(x0[:1], x_t[:1], 60, 40)
    assert out.mean().item() == pytest.approx(mean.item(), abs=0.005)
    assert out.var().item() == pytest.approx(float(var), rel=0.02)
    torch.testing.assert_close(d.ddpm_step(x_t, 5, -1, x0), x0)


# --------------------------------------------------------------------------------------------------
# DDIM


def test_ddim_with_perfect_x0_follows_the_deterministic_trajectory():
    d = GaussianDiffusion(100)
    g = torch.Generator().manual_seed(5)
    x0 = torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    ts = inference_timesteps(99, 7)
    x = d.q_sample(x0, ts[0], eps)
    for t, s in zip(ts, ts[1:] + [-1]):
        x = d.ddim_step(x, t, s, x0, eta=0.0)
        expected = x0 if s < 0 else d.q_sample(x0, s, eps)  # same noise, less of it
        torch.testing.assert_close(x, expected, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(as_sampler("ddim").step(d, d.q_sample(x0, 50, eps), 50, 10, x0), d.q_sample(x0, 10, eps))


def test_ddim_eta_one_matches_ddpm_variance():
    d = GaussianDiffusion(100)
    g = torch.Generator().manual_seed(6)
    x0 = torch.zeros(200_000, dtype=torch.float64)
    x_t = torch.full_like(x0, 0.9)
    out = d.ddim_step(x_t, 70, 50, x0, eta=1.0, generator=g)
    _, var = d.posterior(x0[:1], x_t[:1], 70, 50)
    assert out.var().item() == pytest.approx(float(var), rel=0.02)


# --------------------------------------------------------------------------------------------------
# respaced timesteps


@pytest.mark.parametrize("start,steps", [(0, 1), (0, 5), (9, 10), (9, 3), (99, 10), (999, 50), (999, 1000), (5, 100)])
def test_inference_timesteps(start, steps):
    ts = inference_timesteps(start, steps)
    assert ts[0] == start and ts[-1] == 0
    assert all(a > b for a, b in zip(ts, ts[1:]))  # strictly descending, distinct
    assert len(ts) == min(steps, start + 1)
    if len(ts) > 2:  # roughly even spacing
        gaps = np.diff(ts)
        assert gaps.max() - gaps.min() <= 1


def test_sampling_single_step_from_nonzero_start():
    # one model call at the start timestep; the sampler then jumps straight to x0 (s = -1)
    assert inference_timesteps(40, 1) == [40]
    assert inference_timesteps(40, 2) == [40, 0]


# --------------------------------------------------------------------------------------------------
# bad input


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="schedule"):
        make_betas("quadratic", 10)
    with pytest.raises(ValueError):
        GaussianDiffusion(10, "sigmoid")
    d = GaussianDiffusion(10)
    for t in (-1, 10, 1000):
        with pytest.raises(ValueError, match="timestep"):
            d.check_timestep(t)
    d.check_timestep(0)
    d.check_timestep(9)
    with pytest.raises(ValueError, match="sampler"):
        as_sampler("euler")
    with pytest.raises(ValueError, match="eta"):
        DDIM(eta=1.5)
    with pytest.raises(ValueError):
        inference_timesteps(-1, 5)
    with pytest.raises(ValueError):
        inference_timesteps(10, 0)


@pytest.mark.parametrize("t", [1, 2, 500, 999])
def test_float32_maths_matches_float64_reference(t):
    """Coefficients are computed in float64 and cast at use: float32 results agree with float64 ones."""
    d = GaussianDiffusion(1000, "linear")
    g = torch.Generator().manual_seed(t)
    x0, x_t = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64).unbind(0)
    mean64, var64 = d.posterior(x0, x_t, t)
    mean32, var32 = d.posterior(x0.float(), x_t.float(), t)
    assert mean32.dtype == torch.float32
    assert (mean32.double() - mean64).abs().max() < 2e-6
    assert abs(float(var32) - float(var64)) <= 1e-7 * float(var64) + 1e-12
    eps64 = d.predict_noise(x_t, t, x0)
    assert (d.predict_noise(x_t.float(), t, x0.float()).double() - eps64).abs().max() < 1e-4 * eps64.abs().max()


def test_sampler_objects_reach_ddim_eta():
    d = GaussianDiffusion(100)
    x0, x_t = torch.zeros(50_000, dtype=torch.float64), torch.full((50_000,), 0.5, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    det = DDIM().step(d, x_t, 50, 40, x0, g)
    assert torch.equal(det, DDIM(0.0).step(d, x_t, 50, 40, x0, g))  # eta 0: no noise drawn
    noisy = DDIM(eta=1.0).step(d, x_t, 50, 40, x0, g)
    _, var = d.posterior(x0, x_t, 50, 40)
    assert abs(float(noisy.var()) - float(var)) < 0.05 * float(var)  # eta 1: DDPM's posterior variance
    assert isinstance(as_sampler("ddpm"), DDPM) and as_sampler(DDIM(0.3)).eta == 0.3
