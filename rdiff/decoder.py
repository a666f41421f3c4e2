"""The small MLP that turns a triplane feature into density and colour, and the field that joins them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rdiff.triplane import TriplaneTable, feature_dim, sample_triplane


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
        return self.activate(self.out(h))

    def activate(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        """Raw outputs ``(..., 4)`` -> ``density (...)`` (softplus), ``rgb (..., 3)`` in [0, 1]."""
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

    def inference_fn(self, planes: Tensor, chunk: int = 8192):
        """A field callable ``points (B, P, 3) -> density (B, P), rgb (B, P, 3)`` for rendering without autograd.

        Same maths as :meth:`forward` (equal up to float rounding), but the planes are laid out once as a
        :class:`~rdiff.triplane.TriplaneTable` and points go through the MLP ``chunk`` at a time, in
        reused cache-sized buffers with in-place activations. Call it with gradients disabled. The
        decoder weights are captured when the callable is made: build a new one after changing them.
        """
        table = TriplaneTable(planes, self.bound, self.aggregate)
        dec = self.decoder
        dtype, dev = table.table.dtype, planes.device
        layers = [(m.weight.detach().t().contiguous(), m.bias.detach()) for m in dec.hidden]
        w_out, b_out = dec.out.weight.detach().t().contiguous(), dec.out.bias.detach()
        bufs = [torch.empty(chunk, w.shape[1], dtype=dtype, device=dev) for w, _ in layers]

        def field(points: Tensor) -> tuple[Tensor, Tensor]:
            if torch.is_grad_enabled():
                raise RuntimeError("inference_fn fields do not support autograd; use the module itself")
            b, p, _ = points.shape
            if b != table.batch and not (table.shared and table.batch == 1):
                raise ValueError(f"got points for {b} scenes but planes for {table.batch}")
            total = b * p
            flat = points.reshape(total, 3)
            raw = torch.empty(total, 4, dtype=dtype, device=dev)
            for i in range(0, total, chunk):
                j = min(i + chunk, total)
                bidx = None if table.shared else torch.arange(i, j, device=dev) // p
                h = table(flat[i:j], bidx)
                for (w, bias), buf in zip(layers, bufs):
                    h = F.silu(torch.mm(h, w, out=buf[: j - i]).add_(bias), inplace=True)
                torch.mm(h, w_out, out=raw[i:j]).add_(b_out)
            density, rgb = dec.activate(raw)
            return density.view(b, p), rgb.view(b, p, 3)

        return field
