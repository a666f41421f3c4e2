"""The small MLP that turns a triplane feature into density and colour, and the field that joins them."""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rdiff.renderer import POINT_CHUNK, FieldSample
from rdiff.triplane import TriplaneTable, feature_dim, sample_triplane


class TriplaneDecoder(nn.Module):
    """MLP: aggregated triplane feature -> (density >= 0, rgb in [0, 1])."""

    def __init__(self, in_features: int, hidden: int = 64, layers: int = 2, density_bias: float = -1.0) -> None:
        super().__init__()
        dims = [in_features] + [hidden] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], 4)
        self.density_bias = density_bias

    def forward(self, features: Tensor) -> FieldSample:
        """``features (..., F)`` -> ``density (...)``, ``rgb (..., 3)``."""
        h = features
        for layer in self.hidden:
            h = F.silu(layer(h))
        return self.activate(self.out(h))

    def density(self, raw_density: Tensor) -> Tensor:
        """The density activation alone: raw density outputs ``(...)`` -> density ``(...)`` >= 0 (softplus)."""
        return F.softplus(raw_density + self.density_bias)

    def activate(self, raw: Tensor) -> FieldSample:
        """Raw outputs ``(..., 4)`` -> ``density (...)`` (softplus), ``rgb (..., 3)`` in [0, 1]."""
        density = self.density(raw[..., 0])
        # Slightly widened sigmoid so pure black and white are reachable (as in EG3D).
        rgb = torch.sigmoid(raw[..., 1:]) * 1.002 - 0.001
        return FieldSample(density, rgb)


class TriplaneField(nn.Module):
    """A radiance field: triplane sampling followed by the MLP decoder."""

    def __init__(self, channels: int, aggregate: str, bound: float, hidden: int, layers: int, density_bias: float):
        super().__init__()
        self.aggregate = aggregate
        self.bound = bound
        self.decoder = TriplaneDecoder(feature_dim(channels, aggregate), hidden, layers, density_bias)

    def forward(self, planes: Tensor, points: Tensor) -> FieldSample:
        """``planes (B,3,C,N,N)``, ``points (B,P,3)`` -> ``density (B,P)``, ``rgb (B,P,3)``."""
        return self.decoder(sample_triplane(planes, points, self.bound, self.aggregate))

    def inference_field(self, planes: Tensor, chunk: int = POINT_CHUNK) -> InferenceField:
        """This field prepared for rendering ``planes`` without autograd (see :class:`InferenceField`)."""
        return InferenceField(self, planes, chunk)


class InferenceField:
    """A :class:`TriplaneField` prepared for rendering one set of triplanes without autograd.

    ``field(points (B, P, 3)) -> FieldSample(density (B, P), rgb (B, P, 3))``: the maths of
    ``TriplaneField.forward(planes, points)`` (equal up to float rounding), but the planes are laid out once
    as a :class:`~rdiff.triplane.TriplaneTable` and points go through the MLP ``chunk`` at a time, in
    reused cache-sized buffers with in-place activations (one set per calling thread, so several threads
    may render through one field at once). Passing one to the model's render methods selects the fast
    inference path. Call it with gradients disabled. The decoder weights are captured when it is made:
    build a new one after changing them.
    """

    def __init__(self, field: TriplaneField, planes: Tensor, chunk: int = POINT_CHUNK) -> None:
        self.table = TriplaneTable(planes, field.bound, field.aggregate)
        self.chunk = chunk
        self._activate, self._density = field.decoder.activate, field.decoder.density
        # Feature-major layout: activations are (width, points), so biases and SiLU run along contiguous
        # rows and the 4-wide output layer is one wide product instead of a skinny one.
        self._layers, self._w_out, self._b_out = feature_major_layers(field.decoder, self.table.table.dtype)
        self._per_thread = threading.local()

    @property
    def device(self) -> torch.device:
        """Where the prepared planes live (points must be there too)."""
        return self.table.table.device

    def _buffers(self) -> list[Tensor]:
        """This thread's activation buffers, one per hidden layer, made on first use."""
        per_thread = self._per_thread
        if not hasattr(per_thread, "bufs"):
            per_thread.bufs = [torch.empty(w.shape[0] * self.chunk, dtype=self.table.table.dtype, device=self.device)
                               for w, _ in self._layers]
        return per_thread.bufs

    def __call__(self, points: Tensor) -> FieldSample:
        """Density ``(B, P)`` and rgb ``(B, P, 3)`` at ``points (B, P, 3)`` (one scene, or one per batch item)."""
        b, p, _ = points.shape
        density, rgb = self.activate(self.raw(points).t())
        # rgb is a (points, 3) view of colour-major memory; the renderer composites it as such
        return FieldSample(density.view(b, p), rgb.view(b, p, 3))

    def activate(self, raw: Tensor) -> FieldSample:
        """The decoder's output activation: raw outputs ``(..., 4)`` -> density ``(...)``, rgb ``(..., 3)``."""
        return self._activate(raw)

    def activate_density(self, raw_density: Tensor) -> Tensor:
        """The density activation alone: raw density outputs ``(...)`` -> density ``(...)``."""
        return self._density(raw_density)

    def raw(self, points: Tensor) -> Tensor:
        """The decoder's raw (pre-activation) outputs ``(4, B * P)``, colour-major, at ``points (B, P, 3)``."""
        if torch.is_grad_enabled():
            raise RuntimeError("inference fields do not support autograd; use the TriplaneField module itself")
        table, chunk, dev = self.table, self.chunk, self.device
        b, p, _ = points.shape
        if b != table.batch and not table.shared:  # a shared scene answers any batch of point sets
            raise ValueError(f"got points for {b} scenes but planes for {table.batch}")
        total = b * p
        bidx = None if table.shared else torch.arange(b, device=dev).repeat_interleave(p)
        idx, weights = table.taps(points.reshape(total, 3), bidx)  # all points at once: few, large ops
        k = table.bags_per_point
        raw = torch.empty(4, total, dtype=table.table.dtype, device=dev)
        bufs = self._buffers()
        for i in range(0, total, chunk):
            j = min(i + chunk, total)
            h = table.gather(idx[i * k : j * k], weights[i * k : j * k]).view(j - i, -1).t()
            for (w, bias), buf in zip(self._layers, bufs):
                out = torch.mm(w, h, out=buf[: w.shape[0] * (j - i)].view(w.shape[0], j - i))
                h = F.silu(out if bias is None else out.add_(bias), inplace=True)
            raw[:, i:j] = torch.mm(self._w_out, h)
        if self._b_out is not None:
            raw.add_(self._b_out)
        return raw


FeatureMajorLayer = tuple[Tensor, Tensor | None]  # (weight (out, in), bias (out, 1) or None)


def feature_major_layers(
    dec: TriplaneDecoder, dtype: torch.dtype
) -> tuple[list[FeatureMajorLayer], Tensor, Tensor | None]:
    """The decoder's layers as feature-major ``(weight, bias or None)`` pairs, most biases folded away.

    The first hidden layer gets one extra output row whose pre-activation is the constant ``c``; after
    SiLU it holds ``s = silu(c)`` for every point, so every later layer takes its bias as one more
    weight column ``bias / s`` (and passes the constant row on), saving a pass over its output.
    Exact up to float rounding (about 1e-7 relative).
    """
    dev = dec.out.weight.device
    # folded on the CPU in float64 (not every accelerator has it), then cast and moved
    hidden = [(m.weight.detach().cpu().double(), m.bias.detach().cpu().double()) for m in dec.hidden]
    w_out, b_out = dec.out.weight.detach().cpu().double(), dec.out.bias.detach().cpu().double()

    def cast(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(device=dev, dtype=dtype).contiguous()

    if not hidden:
        return [], cast(w_out), cast(b_out[:, None])
    c = torch.tensor(1.0, dtype=torch.float64)
    s = F.silu(c)
    (w1, b1), rest = hidden[0], hidden[1:]
    first_w = torch.cat([w1, torch.zeros(1, w1.shape[1], dtype=torch.float64)])
    first_b = torch.cat([b1, c[None]])
    layers: list[FeatureMajorLayer] = [(first_w, first_b[:, None])]
    for w, b in rest:
        folded = torch.zeros(w.shape[0] + 1, w.shape[1] + 1, dtype=torch.float64)
        folded[:-1, :-1], folded[:-1, -1], folded[-1, -1] = w, b / s, c / s
        layers.append((folded, None))
    out = torch.cat([w_out, (b_out / s)[:, None]], 1)
    return [(cast(w), cast(b)) for w, b in layers], cast(out), None
