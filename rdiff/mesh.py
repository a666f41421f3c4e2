"""Turning a density iso-surface into a clean, correctly coloured mesh (used by :meth:`rdiff.scene.Scene.mesh`).

* **Floaters.** Marching cubes on a learned density finds small detached blobs around the object (noise in
  the field). :func:`drop_small_components` removes every connected component with fewer than
  ``min_fraction`` of the largest component's faces (trimesh's ``split``).
* **Where the colour comes from.** The iso-surface (``DEFAULT_MESH_DENSITY``) is where the material is still
  mostly transparent, and the field's colour there is poorly constrained (washed out, mixed with whatever
  lies behind). :func:`surface_colours` instead composites the colour a ray sees looking straight at the
  surface: it marches a short way into the surface along the inward normal and weights the field's colours
  by their volume-rendering weights, as the renderer does, so the colour is the one of the opaque material.
* **Colour spaces.** The field's colours are sRGB (they are compared with sRGB images in training), and so
  are PLY/OBJ vertex colours and the plotly view. glTF's ``COLOR_0`` is *linear*: :func:`write_glb` converts
  (:func:`srgb_to_linear`) and gives the mesh a non-metallic material (glTF's default material is fully
  metallic, which tints vertex colours with the viewer's environment).
* **Face count.** :func:`simplify` reduces the mesh to a target face count with trimesh's quadric decimation,
  which needs the optional ``fast-simplification`` package (``pip install fast-simplification``); without it
  asking for a face count is a clear error, and nothing else changes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import trimesh

#: Components with fewer faces than this fraction of the largest component's are floaters and are dropped.
MIN_COMPONENT_FRACTION = 0.05
#: How far below the iso-surface colours are composited, as a fraction of the scene box's side (0.12 scene
#: units in the default [-1, 1]^3 box: 4 cells of a 64^3 grid), and with how many samples.
COLOUR_DEPTH_FRACTION = 0.06
COLOUR_SAMPLES = 12

#: A field: points ``(P, 3)`` -> (density ``(P,)``, rgb ``(P, 3)`` in [0, 1]), numpy arrays.
Field = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 1] -> linear (IEC 61966-2-1)."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear values in [0, 1] -> sRGB."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def drop_small_components(mesh: trimesh.Trimesh, min_fraction: float = MIN_COMPONENT_FRACTION) -> trimesh.Trimesh:
    """``mesh`` without the connected components that have fewer than ``min_fraction`` of the largest's faces."""
    import trimesh

    if min_fraction <= 0 or len(mesh.faces) == 0:
        return mesh
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    largest = max(len(p.faces) for p in parts)
    kept = [p for p in parts if len(p.faces) >= min_fraction * largest]
    return trimesh.util.concatenate(kept)


def simplify(mesh: trimesh.Trimesh, target_faces: int) -> trimesh.Trimesh:
    """Quadric decimation to at most ``target_faces`` faces (needs the optional ``fast-simplification``)."""
    if target_faces < 4:
        raise ValueError(f"target face count must be at least 4, got {target_faces}")
    if len(mesh.faces) <= target_faces:
        return mesh
    try:
        import fast_simplification  # noqa: F401  (trimesh's simplify_quadric_decimation uses it)
    except ImportError:
        raise ImportError("reducing the mesh to a face count needs the optional package fast-simplification: "
                          "pip install fast-simplification") from None
    return mesh.simplify_quadric_decimation(face_count=int(target_faces))


def surface_colours(field: Field, vertices: np.ndarray, normals: np.ndarray, depth: float,
                    samples: int = COLOUR_SAMPLES) -> np.ndarray:
    """The colour ``(V, 3)`` in [0, 1] seen by a ray that looks straight at the surface at each vertex.

    Each ray starts a little outside the surface (a tenth of ``depth``) and goes ``depth`` into it along the
    inward normal (``normals`` point out of the object); the field's colours along it are weighted by their
    volume-rendering weights (opacity times transmittance) and normalised, so a ray that becomes opaque
    takes the colour of the opaque material. Where the field is empty along the whole ray the colour at the
    vertex is kept.
    """
    vertices = np.asarray(vertices, dtype=np.float32)
    normals = np.asarray(normals, dtype=np.float32)
    if len(vertices) == 0:
        return np.zeros((0, 3), np.float32)
    t = np.linspace(-0.1 * depth, depth, samples, dtype=np.float32)
    points = vertices[:, None, :] - t[None, :, None] * normals[:, None, :]  # (V, S, 3)
    density, rgb = field(points.reshape(-1, 3))
    density = np.maximum(np.asarray(density, dtype=np.float64).reshape(len(vertices), samples), 0.0)
    rgb = np.asarray(rgb, dtype=np.float64).reshape(len(vertices), samples, 3)
    alpha = 1.0 - np.exp(-density * float(t[1] - t[0]))
    transmittance = np.cumprod(np.concatenate([np.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1]], axis=1), axis=1)
    weights = alpha * transmittance
    total = weights.sum(axis=1, keepdims=True)
    at_vertex = rgb[:, int(np.argmin(np.abs(t)))]
    colours = np.where(total > 1e-6, (weights[..., None] * rgb).sum(axis=1) / np.maximum(total, 1e-12), at_vertex)
    return np.clip(colours, 0.0, 1.0).astype(np.float32)


def to_uint8(colours: np.ndarray) -> np.ndarray:
    """Colours in [0, 1] -> uint8."""
    return (np.clip(colours, 0.0, 1.0) * 255).round().astype(np.uint8)


# ------------------------------------------------------------------------------------------ GLB

#: glTF's default material is fully metallic; vertex colours want a plain, rough, non-metallic one.
GLB_MATERIAL = {"name": "vertex_colour", "doubleSided": True,
                "pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0,
                                         "roughnessFactor": 1.0}}


def _with_material(glb: bytes) -> bytes:
    """A GLB whose primitives all use :data:`GLB_MATERIAL` (the JSON chunk rewritten, the binary kept)."""
    magic, version, _ = struct.unpack("<4sII", glb[:12])
    length, kind = struct.unpack("<I4s", glb[12:20])
    if magic != b"glTF" or kind != b"JSON":
        raise ValueError("not a GLB file")
    doc = json.loads(glb[20 : 20 + length])
    doc["materials"] = [GLB_MATERIAL]
    for mesh in doc.get("meshes", []):
        for primitive in mesh.get("primitives", []):
            primitive["material"] = 0
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)  # chunks are 4-byte aligned (JSON padded with spaces)
    rest = glb[20 + length :]
    body = struct.pack("<I4s", len(text), b"JSON") + text + rest
    return struct.pack("<4sII", magic, version, 12 + len(body)) + body


def write_glb(mesh: trimesh.Trimesh, path: str | Path) -> Path:
    """Write a vertex-coloured mesh (sRGB colours) as GLB: colours converted to glTF's linear ``COLOR_0``."""
    mesh = mesh.copy()
    colours = np.asarray(mesh.visual.vertex_colors) if mesh.visual.kind == "vertex" else None
    if colours is not None:
        linear = colours.copy()
        linear[:, :3] = to_uint8(srgb_to_linear(colours[:, :3] / 255.0))
        mesh.visual.vertex_colors = linear
    path = Path(path)
    path.write_bytes(_with_material(mesh.export(file_type="glb")))
    return path
