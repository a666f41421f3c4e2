"""Visual helpers: colour-mapped depth and an interactive plotly view of a mesh."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import plotly.graph_objects as go
    import torch
    import trimesh

    from rdiff.scene import Scene

# Anchor colours of a perceptually ordered map (near = bright yellow, far = dark purple).
_DEPTH_COLOURS = np.array(
    [[253, 231, 37], [94, 201, 98], [33, 145, 140], [59, 82, 139], [68, 1, 84]], dtype=np.float32
)


def colorize_depth(depth: np.ndarray, opacity: np.ndarray | None = None, background: int = 255) -> np.ndarray:
    """Map depth ``(H, W)`` to uint8 RGB; transparent pixels (opacity < 0.5) get ``background``."""
    valid = np.ones_like(depth, dtype=bool) if opacity is None else opacity >= 0.5
    out = np.full((*depth.shape, 3), background, dtype=np.uint8)
    if valid.any():
        d = depth[valid]
        lo, hi = float(d.min()), float(d.max())
        x = (d - lo) / max(hi - lo, 1e-6) * (len(_DEPTH_COLOURS) - 1)
        i = np.clip(np.floor(x).astype(int), 0, len(_DEPTH_COLOURS) - 2)
        f = (x - i)[:, None]
        out[valid] = np.round(_DEPTH_COLOURS[i] * (1 - f) + _DEPTH_COLOURS[i + 1] * f).astype(np.uint8)
    return out


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(3, H, W)`` tensor in [0, 1] (or an ``(H, W, 3)`` array) -> ``(H, W, 3)`` uint8."""
    if not isinstance(image, np.ndarray):
        image = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        return (image * 255).round().astype(np.uint8)
    return np.asarray(image, dtype=np.uint8)


def depth_image(scene: Scene) -> np.ndarray:
    """Colour-mapped depth (near = yellow, far = purple) of ``scene`` seen from its input camera."""
    view = scene.render(scene.camera)[0]
    return colorize_depth(view.depth, view.opacity)


def mesh_figure(mesh: trimesh.Trimesh, title: str | None = None) -> go.Figure:
    """An interactive plotly figure of a vertex-coloured mesh (world +Z up)."""
    import plotly.graph_objects as go

    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3]
    fig = go.Figure(
        go.Mesh3d(
            x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2],
            vertexcolor=[f"rgb({r},{g},{b})" for r, g, b in colours], flatshading=False,
            lighting=dict(ambient=0.6, diffuse=0.6, specular=0.1), hoverinfo="skip",
        )
    )
    fig.update_layout(
        title=title, margin=dict(l=0, r=0, t=30 if title else 0, b=0),
        scene=dict(aspectmode="cube", xaxis=dict(range=[-1, 1]), yaxis=dict(range=[-1, 1]), zaxis=dict(range=[-1, 1]),
                   camera=dict(up=dict(x=0, y=0, z=1))),
    )
    return fig
