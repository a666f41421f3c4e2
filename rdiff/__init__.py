"""rdiff: RenderDiffusion (image diffusion for 3D reconstruction, inpainting and generation)."""

from rdiff.cameras import Cameras, look_at, orbit_cameras, turntable
from rdiff.config import RenderDiffusionConfig, TrainConfig
from rdiff.diffusion import GaussianDiffusion
from rdiff.model import CheckpointError, RenderDiffusion

__version__ = "0.1.0"
__all__ = [
    "Cameras",
    "CheckpointError",
    "GaussianDiffusion",
    "RenderDiffusion",
    "RenderDiffusionConfig",
    "TrainConfig",
    "look_at",
    "orbit_cameras",
    "turntable",
]
