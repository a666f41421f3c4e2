"""Configuration dataclasses. One flat dataclass per model so it serialises to config.json."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

BACKGROUNDS = ("white", "black", "learned", "ray")  # see rdiff.renderer.VolumeRenderer.background
#: The geometry-aware encoder options (rdiff.lifting): a fine-tune may switch them on over init_from's model.
ENCODER_EXTENSIONS = ("ray_conditioning", "lift_features", "lift_depths")


@dataclass
class RenderDiffusionConfig:
    """Everything needed to build a :class:`rdiff.model.RenderDiffusion`.

    Image size ``M`` (``image_size``), triplane resolution ``N >= M`` (``triplane_size``),
    ``n_f`` (``triplane_channels``) follow the paper's notation.
    """

    # image and triplane
    image_size: int = 32
    triplane_size: int = 32
    triplane_channels: int = 32
    triplane_aggregate: str = "sum"  # "sum" | "mean" | "concat"
    # "view_yaw": the triplane frame is rotated about world +Z to face the input camera; "world": fixed axes
    triplane_frame: str = "view_yaw"
    # U-Net triplane encoder
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 1
    attention_levels: tuple[int, ...] = ()
    dropout: float = 0.0
    camera_conditioning: bool = True
    # geometry-aware encoder options (rdiff.lifting; off = the paper's encoder). Both start as no-ops, so a model
    # trained without them can be fine-tuned with them (init_from):
    ray_conditioning: bool = False  # add per-pixel Plücker ray embeddings of the input camera to the U-Net's stem
    lift_features: int = 0  # > 0: project this many U-Net output channels onto the triplane (pixel-aligned)
    lift_depths: int = 8  # depths per triplane texel at which lift_features are read from the image
    # MLP decoder
    decoder_hidden: int = 64
    decoder_layers: int = 2
    density_bias: float = -1.0
    # volume renderer
    coarse_samples: int = 24
    fine_samples: int = 24
    scene_bound: float = 1.0
    background: str = "learned"  # "white" | "black" | "learned" (one colour) | "ray" (an MLP of the ray)
    background_init: tuple[float, float, float] = (0.8, 0.8, 0.82)
    # diffusion
    timesteps: int = 1000
    schedule: str = "linear"  # "linear" | "cosine"
    # default camera (generation, orbits): spherical, degrees / scene units / radians
    default_elevation: float = 30.0
    default_azimuth: float = 45.0
    default_radius: float = 3.0
    default_fov_x: float = math.radians(45.0)

    def __post_init__(self) -> None:
        self.channel_mults = tuple(int(c) for c in self.channel_mults)
        self.attention_levels = tuple(int(a) for a in self.attention_levels)
        self.background_init = tuple(float(b) for b in self.background_init)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a readable message for an inconsistent config."""
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 8, got {self.image_size}")
        if self.triplane_size < self.image_size or self.triplane_size % self.image_size:
            raise ValueError("triplane_size must be a multiple of image_size (N >= M)")
        ratio = self.triplane_size // self.image_size
        if ratio & (ratio - 1):
            raise ValueError("triplane_size / image_size must be a power of two")
        if self.image_size % (2 ** (len(self.channel_mults) - 1)):
            raise ValueError("image_size must be divisible by 2^(levels-1)")
        if self.triplane_aggregate not in ("sum", "mean", "concat"):
            raise ValueError(f"unknown triplane_aggregate {self.triplane_aggregate!r}")
        if self.triplane_frame not in ("world", "view_yaw"):
            raise ValueError(f"unknown triplane_frame {self.triplane_frame!r}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background!r}; expected one of {BACKGROUNDS}")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}")
        if self.coarse_samples < 2 or self.fine_samples < 0:
            raise ValueError("need >= 2 coarse samples and >= 0 fine samples")
        if self.lift_features < 0 or self.lift_depths < 1:
            raise ValueError("lift_features must be >= 0 and lift_depths >= 1")
        if self.timesteps < 2:
            raise ValueError("timesteps must be >= 2")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenderDiffusionConfig:
        """Build from a dict, rejecting unknown keys (a sign of a mismatched checkpoint)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {unknown}")
        return cls(**data)


@dataclass
class TrainConfig:
    """Training loop settings (see :mod:`rdiff.training`)."""

    data: str = "data/clevr1/train"
    out_dir: str = "runs/clevr1"
    # Start a fresh run from these weights (a from_pretrained source), e.g. to continue the released model.
    init_from: str | None = None
    # Continue this checkpoint folder (e.g. a committed portable checkpoint) when out_dir has none yet.
    resume_from: str | None = None
    model: RenderDiffusionConfig = field(default_factory=RenderDiffusionConfig)
    batch_size: int = 16
    rays_per_image: int = 256
    # Fraction of each batch whose timesteps are drawn from [0, low_t_max) instead of [0, T):
    # spends more of a small compute budget on the near-clean inputs that reconstruction uses.
    low_t_fraction: float = 0.0
    low_t_max: int = 100
    # Unseen-view loss: also render the triplane inferred from the (noisy) input view from another view of
    # the same scene and add that MSE with this weight. 0 = the paper's monocular supervision.
    novel_view_weight: float = 0.0
    # Fraction of each view's rays drawn from its object pixels (dilated by 2 px; needs masks in the data); the
    # rest uniformly. 0 = uniform over the frame (the paper). The object then weighs more than its pixel share.
    object_ray_fraction: float = 0.0
    lr: float = 2e-4
    # Learning-rate factor for the geometry-aware encoder modules (rdiff.lifting): switched on over a trained model
    # (init_from) they start as no-ops and get little gradient, so a fine-tune may let them learn faster.
    extension_lr_scale: float = 1.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    warmup_steps: int = 500
    max_steps: int = 100_000
    max_minutes: float | None = None
    ema_decay: float = 0.999
    log_every: int = 50
    sample_every: int = 2000
    checkpoint_every: int = 500
    seed: int = 0
    num_workers: int = 0
    threads: int | None = None
