"""U-Net that maps a noisy image (+ timestep, camera) to a triplane."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rdiff.cameras import Cameras
from rdiff.config import RenderDiffusionConfig
from rdiff.lifting import ProjectiveLift, RayEmbedding

CAMERA_FEATURES = 13  # see rdiff.cameras.Cameras.conditioning


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding ``(B, dim)`` of (possibly fractional) timesteps ``t (B,)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


class ResBlock(nn.Module):
    """Pre-norm residual block with a FiLM-style (scale, shift) embedding injection."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = _norm(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head spatial self-attention."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class TriplaneEncoder(nn.Module):
    """U-Net encoder: ``x_t (B,3,M,M), t (B,), camera (B,13) -> triplane (B,3,n_f,N,N)``.

    The U-Net runs at image resolution ``M``; extra upsampling stages lift its output to the
    triplane resolution ``N`` before a 1x1 convolution emits ``3 * n_f`` channels. Optional, geometry-aware
    (``rdiff.lifting``; both need the input cameras in the triplane frame): Plücker ray embeddings added to the
    stem (``ray_conditioning``) and features projected from the U-Net's output onto the triplane
    (``lift_features``).
    """

    #: Attributes holding the optional geometry-aware modules (None when off).
    EXTENSION_MODULES = ("rays", "projective")

    def __init__(self, cfg: RenderDiffusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.base_channels
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.camera_mlp = (
            nn.Sequential(nn.Linear(CAMERA_FEATURES, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            if cfg.camera_conditioning
            else None
        )
        self.stem = nn.Conv2d(3, ch, 3, padding=1)
        self.rays = RayEmbedding(ch) if cfg.ray_conditioning else None

        self.down = nn.ModuleList()
        skips = [ch]
        c = ch
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.blocks_per_level):
                block = nn.ModuleList([ResBlock(c, ch * mult, emb_dim, cfg.dropout)])
                c = ch * mult
                if level in cfg.attention_levels:
                    block.append(SelfAttention(c))
                self.down.append(block)
                skips.append(c)
            if level < len(cfg.channel_mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                skips.append(c)

        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, cfg.dropout), SelfAttention(c), ResBlock(c, c, emb_dim)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for i in range(cfg.blocks_per_level + 1):
                block = nn.ModuleList([ResBlock(c + skips.pop(), ch * mult, emb_dim, cfg.dropout)])
                c = ch * mult
                if level in cfg.attention_levels:
                    block.append(SelfAttention(c))
                if level > 0 and i == cfg.blocks_per_level:
                    block.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    block.append(nn.Conv2d(c, c, 3, padding=1))
                self.up.append(block)

        n_up = int(math.log2(cfg.triplane_size // cfg.image_size))
        lift: list[nn.Module] = []
        for _ in range(n_up):
            lift += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1), _norm(c), nn.SiLU()]
        self.lift = nn.Sequential(*lift)
        self.head = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, 3 * cfg.triplane_channels, 1))
        self.projective = (
            ProjectiveLift(c, cfg.lift_features, cfg.lift_depths, cfg.triplane_channels, cfg.triplane_size,
                           cfg.scene_bound)
            if cfg.lift_features else None
        )

    @property
    def needs_cameras(self) -> bool:
        """Whether :meth:`forward` needs the input cameras (ray embeddings or projective lifting)."""
        return self.rays is not None or self.projective is not None

    def embed(self, t: Tensor, camera: Tensor | None) -> Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.cfg.base_channels))
        if self.camera_mlp is not None:
            if camera is None:
                raise ValueError("this model is camera-conditioned: pass cameras")
            emb = emb + self.camera_mlp(camera)
        return emb

    def forward(self, x: Tensor, t: Tensor, camera: Tensor | None = None, cameras: Cameras | None = None) -> Tensor:
        """``camera``: the flat conditioning vector; ``cameras``: the input cameras in the triplane frame (needed
        when :attr:`needs_cameras`)."""
        if self.needs_cameras and cameras is None:
            raise ValueError("this encoder uses the input cameras (ray_conditioning / lift_features): pass cameras")
        emb = self.embed(t, camera)
        h = self.stem(x)
        if self.rays is not None:
            h = h + self.rays(cameras.to(x.device), x.shape[-2], x.shape[-1])
        hs = [h]
        for block in self.down:
            for layer in block:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for block in self.up:
            h = torch.cat([h, hs.pop()], dim=1)
            for layer in block:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        planes = self.head(self.lift(h))
        b, _, n, _ = planes.shape
        planes = planes.reshape(b, 3, self.cfg.triplane_channels, n, n)
        if self.projective is not None:
            planes = planes + self.projective(h, cameras)
        return planes
