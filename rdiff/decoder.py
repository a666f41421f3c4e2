"""The small MLP that turns a triplane feature into density and colour, and the field that joins them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rdiff.triplane import feature_dim, sample_triplane


class TriplaneDecoder(nn.Module):
    """MLP: aggregated triplane feature -> (density >= 0, rgb in [0, 1])."""

    def __init__(self, in_features: int, hidden: int = 64, layers: int = 2, density_bias: float = -1.0) -> None:
        super().__init__()
        dims = [in_features] + [hidden] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], 4)
        self.density_bias = density_bias

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``features (..., F)`` -> ``density (...)``, ``rgb (..., 3)``."""
        h = features
        for layer in self.hidden:
            h = F.silu(layer(h))
        raw = self.out(h)
        density = F.softplus(raw[..., 0] + self.density_bias)
        # Slightly widened sigmoid so pure black and white are reachable (as in EG3D).
        rgb = torch.sigmoid(raw[..., 1:]) * 1.002 - 0.001
        return density, rgb


class TriplaneField(nn.Module):
    """A radiance field: triplane sampling followed by the MLP decoder."""

    def __init__(self, channels: int, aggregate: str, bound: float, hidden: int, layers: int, density_bias: float):
        super().__init__()
        self.aggregate = aggregate
        self.bound = bound
        self.decoder = TriplaneDecoder(feature_dim(channels, aggregate), hidden, layers, density_bias)

    def forward(self, planes: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
        """``planes (B,3,C,N,N)``, ``points (B,P,3)`` -> ``density (B,P)``, ``rgb (B,P,3)``."""
        return self.decoder(sample_triplane(planes, points, self.bound, self.aggregate))
