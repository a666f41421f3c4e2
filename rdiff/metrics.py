"""Image quality metrics for novel-view evaluation."""

from __future__ import annotations

import numpy as np


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def _ssim(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """scikit-image SSIM (Gaussian window, fitted to small images): the mean and the per-pixel map."""
    from skimage.metrics import structural_similarity

    h, w = pred.shape[:2]
    win = min(7, h - (1 - h % 2), w - (1 - w % 2))
    mean, smap = structural_similarity(pred, target, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                       win_size=win, use_sample_covariance=False, full=True)
    return float(mean), smap


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """Structural similarity (scikit-image, Gaussian window) for (H, W, 3) images in [0, 1]."""
    return _ssim(pred, target)[0]


def masked_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB over the pixels where ``mask (H, W)`` is true (all channels); NaN for an empty mask."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    diff = np.asarray(pred, np.float64)[mask] - np.asarray(target, np.float64)[mask]
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def masked_ssim(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Mean of the SSIM map (as :func:`ssim` computes it) over the pixels where ``mask`` is true; NaN if empty."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    return float(np.mean(_ssim(pred, target)[1][mask]))


def load_lpips():
    """An LPIPS(alex) callable if the `lpips` package and its weights are available offline, else None."""
    try:
        import lpips  # type: ignore[import-not-found]
        import torch

        net = lpips.LPIPS(net="alex", verbose=False)
    except Exception:  # missing package or weights that would need a download
        return None

    def score(pred: np.ndarray, target: np.ndarray) -> float:
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() * 2 - 1  # noqa: E731
        with torch.no_grad():
            return float(net(to_t(pred), to_t(target)))

    return score
