"""The RenderDiffusion denoiser: x_t -> triplane -> volume rendering -> x0 estimate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

from rdiff.cameras import Cameras, orbit_cameras, to_triplane_frame, yaw_rotations
from rdiff.checkpoint_io import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    checkpoint_files,
    load_weights_into,
    looks_like_local_path,
    read_config,
    write_checkpoint,
)
from rdiff.config import RenderDiffusionConfig
from rdiff.decoder import InferenceField, TriplaneField
from rdiff.diffusion import GaussianDiffusion
from rdiff.encoder import TriplaneEncoder
from rdiff.renderer import FieldFn, RenderOutput, VolumeRenderer

# re-exported: the checkpoint format lives in rdiff.checkpoint_io
__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "CheckpointError", "Denoised", "RenderDiffusion", "load_checkpoint",
           "looks_like_local_path"]


@dataclass
class Denoised:
    """Output of one denoising pass: the x0 estimate (in [-1, 1]) and the 3D structure behind it."""

    x0: Tensor  # (B, 3, H, W) or (B, R, 3) for ray subsets
    planes: Tensor  # (B, 3, n_f, N, N)
    triplane_rotations: Tensor  # (B, 3, 3) world-from-triplane rotations
    depth: Tensor
    opacity: Tensor


class RenderDiffusion(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="rdiff",
    tags=["renderdiffusion", "3d-reconstruction", "diffusion", "triplane"],
    license="mit",
):
    """Pixel-space DDPM whose denoiser predicts x0 by rendering an inferred triplane from the input camera."""

    def __init__(self, config: RenderDiffusionConfig | None = None) -> None:
        super().__init__()
        if config is None:
            config = RenderDiffusionConfig()
        elif isinstance(config, dict):
            config = RenderDiffusionConfig.from_dict(config)
        self.config = config
        self.encoder = TriplaneEncoder(config)
        self.field = TriplaneField(
            config.triplane_channels,
            config.triplane_aggregate,
            config.scene_bound,
            config.decoder_hidden,
            config.decoder_layers,
            config.density_bias,
        )
        self.renderer = VolumeRenderer(
            config.coarse_samples, config.fine_samples, config.scene_bound, config.background, config.background_init
        )
        self.diffusion = GaussianDiffusion(config.timesteps, config.schedule)

    # ----------------------------------------------------------------------------------------- 3D
    def triplane_rotations(self, cameras: Cameras) -> Tensor:
        """``(B, 3, 3)`` world-from-triplane rotations for triplanes inferred from ``cameras``' views."""
        if self.config.triplane_frame == "view_yaw":
            return yaw_rotations(cameras)
        return torch.eye(3, dtype=cameras.c2w.dtype, device=cameras.device).expand(len(cameras), 3, 3)

    def encode(self, x_t: Tensor, t: Tensor, cameras: Cameras) -> Tensor:
        """Noisy images ``(B, 3, M, M)`` in [-1, 1] and timesteps ``(B,)`` -> triplanes ``(B, 3, n_f, N, N)``.

        ``cameras`` are in world space; the triplanes are in the frames given by :meth:`triplane_rotations`.
        """
        m = self.config.image_size
        if x_t.ndim != 4 or x_t.shape[1:] != (3, m, m):
            raise ValueError(f"expected images of shape (B, 3, {m}, {m}), got {tuple(x_t.shape)}")
        if len(cameras) != x_t.shape[0]:
            raise ValueError(f"got {x_t.shape[0]} images but {len(cameras)} cameras")
        local = to_triplane_frame(cameras.to(x_t.device, x_t.dtype), self.triplane_rotations(cameras).to(x_t))
        cond = local.conditioning() if self.config.camera_conditioning else None
        return self.encoder(x_t, t.to(x_t.device), cond, local)

    def inference_field(self, planes: Tensor) -> InferenceField:
        """The decoder prepared for rendering ``planes (B, 3, n_f, N, N)`` without autograd.

        Passing it as ``field`` to :meth:`render_rays`, :meth:`render` or :meth:`render_world` selects the
        fast inference path; a batch of views of one scene can share the field of its single triplane.
        """
        return self.field.inference_field(planes)

    def render_rays(
        self,
        planes: Tensor,
        origins: Tensor,
        dirs: Tensor,
        perturb: bool = False,
        generator: torch.Generator | None = None,
        field: FieldFn | None = None,
    ) -> RenderOutput:
        """Render rays ``(B, R, 3)`` through triplanes; rgb in [0, 1].

        The one switch between the two rendering paths: without ``field`` this is the differentiable
        (training) path; with ``field``, an :class:`InferenceField` of these planes (:meth:`inference_field`),
        the renderer's fast deterministic path without autograd: the same result up to float rounding
        (well within 1/255), several times faster. Any pointwise :data:`~rdiff.renderer.FieldFn` of these planes
        selects the inference path too (e.g. a :class:`~rdiff.baked_field.BakedField`).
        """
        if field is None:
            return self.renderer(lambda p: self.field(planes, p), origins, dirs, perturb, generator)
        if perturb:
            raise ValueError("the inference path renders deterministically: perturb needs field=None")
        return self.renderer.render_inference(field, origins, dirs)

    def render(
        self, planes: Tensor, triplane_cameras: Cameras, height: int, width: int, field: FieldFn | None = None
    ) -> RenderOutput:
        """Render full images from ``triplane_cameras``: cameras expressed in the triplanes' frames, not in
        world space (:func:`rdiff.cameras.to_triplane_frame`; :meth:`render_world` takes world-space cameras).

        Returns rgb ``(B, 3, H, W)`` in [0, 1], depth and opacity ``(B, H, W)``. With ``field`` (a prepared
        inference field for these planes) on the fast inference path, else differentiably (see
        :meth:`render_rays`).
        """
        origins, dirs = triplane_cameras.to(planes.device, planes.dtype).pixel_rays(height, width)
        b = origins.shape[0]
        out = self.render_rays(planes, origins.reshape(b, -1, 3), dirs.reshape(b, -1, 3), field=field)
        rgb = out.rgb.reshape(b, height, width, 3).permute(0, 3, 1, 2)
        return RenderOutput(rgb=rgb, depth=out.depth.reshape(b, height, width),
                            opacity=out.opacity.reshape(b, height, width))

    def render_world(
        self, planes: Tensor, triplane_rotations: Tensor, cameras: Cameras, height: int, width: int,
        field: FieldFn | None = None,
    ) -> RenderOutput:
        """Render triplanes whose world-from-triplane rotations are ``triplane_rotations (B, 3, 3)`` from
        world-space ``cameras``."""
        local = to_triplane_frame(cameras.to(planes.device, planes.dtype), triplane_rotations.to(planes))
        return self.render(planes, local, height, width, field=field)

    # ---------------------------------------------------------------------------------- denoising
    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        cameras: Cameras,
        rays: tuple[Tensor, Tensor] | None = None,
        perturb: bool = False,
        inference: bool = False,
    ) -> Denoised:
        """Predict x0 from ``x_t`` by rendering the inferred triplane from the input camera.

        With ``rays=(origins, dirs)`` of shape ``(B, R, 3)`` only those rays are rendered (training on
        ray subsets) and ``x0`` is ``(B, R, 3)``; otherwise full images ``(B, 3, M, M)``. ``inference=True``
        renders on the fast path without autograd (sampling; see :meth:`render_rays`), otherwise the
        rendering is differentiable.
        """
        if inference and perturb:
            raise ValueError("the inference path renders deterministically: use perturb=False")
        planes = self.encode(x_t, t, cameras)
        rotations = self.triplane_rotations(cameras).to(x_t)
        field = self.inference_field(planes) if inference else None
        if rays is not None:
            origins = torch.einsum("bji,brj->bri", rotations, rays[0])  # world -> triplane frame (R^T p)
            dirs = torch.einsum("bji,brj->bri", rotations, rays[1])
            out = self.render_rays(planes, origins, dirs, perturb, field=field)
        elif perturb:  # full images with jittered samples (training with rays_per_image >= M * M)
            m, b = self.config.image_size, x_t.shape[0]
            origins, dirs = to_triplane_frame(cameras.to(x_t.device, x_t.dtype), rotations).pixel_rays(m, m)
            r = self.render_rays(planes, origins.reshape(b, -1, 3), dirs.reshape(b, -1, 3), perturb)
            out = RenderOutput(
                rgb=r.rgb.reshape(b, m, m, 3).permute(0, 3, 1, 2), depth=r.depth.reshape(b, m, m),
                opacity=r.opacity.reshape(b, m, m),
            )
        else:
            m = self.config.image_size
            out = self.render_world(planes, rotations, cameras, m, m, field=field)
        return Denoised(x0=out.rgb * 2 - 1, planes=planes, triplane_rotations=rotations, depth=out.depth,
                        opacity=out.opacity)

    def default_cameras(self, n: int = 1, azimuth_deg: float | None = None) -> Cameras:
        """``n`` copies of the config's default viewpoint (used for generation)."""
        c = self.config
        az = c.default_azimuth if azimuth_deg is None else azimuth_deg
        cams = orbit_cameras([az] * n, [c.default_elevation] * n, [c.default_radius] * n, c.default_fov_x)
        return cams.to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------------------ checkpoints
    def _save_pretrained(self, save_directory: Path) -> None:
        """The Hub mixin's hook behind :meth:`save_pretrained`: config.json + model.safetensors."""
        write_checkpoint(self, self.config, save_directory)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        map_location: str = "cpu",
        **_: Any,
    ) -> RenderDiffusion:
        """Load a checkpoint folder or Hub repo (config.json + model.safetensors) strictly.

        Safetensors only, never pickle; bad files raise :class:`CheckpointError`. Replaces the mixin's
        version, which parses config.json on its own first (a corrupt config would surface as a bare
        JSON or attribute error) and falls back to pickled ``pytorch_model.bin`` files.
        """
        config_path, weights_path = checkpoint_files(
            pretrained_model_name_or_path, force_download=force_download, token=token, cache_dir=cache_dir,
            local_files_only=local_files_only, revision=revision,
        )
        return load_checkpoint(config_path, weights_path, map_location)


def load_checkpoint(config_path: str | Path, weights_path: str | Path, map_location: str = "cpu") -> RenderDiffusion:
    """Build a model from a config.json and load a safetensors file into it, with readable errors."""
    model = RenderDiffusion(read_config(config_path))
    load_weights_into(model, weights_path, map_location)
    return model.to(map_location).eval()
