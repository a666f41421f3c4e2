"""Mesh extraction (rdiff.mesh via Scene.mesh): floaters removed, colours from the opaque material, sRGB in
plotly / PLY and linear in GLB, optional face-count reduction. Scenes use analytic density fields."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")

from rdiff import mesh as meshing  # noqa: E402
from rdiff.cameras import orbit_cameras  # noqa: E402
from rdiff.scene import Scene, write_mesh  # noqa: E402
from rdiff.visualize import mesh_figure  # noqa: E402

RED, PINK = np.array([0.9, 0.1, 0.1]), np.array([1.0, 0.6, 0.8])


def analytic_scene(model, density_fn, colour_fn) -> Scene:
    """A Scene whose field is ``density_fn(points) -> (P,)`` and ``colour_fn(points) -> (P, 3)`` (numpy)."""
    planes = torch.zeros(3, model.config.triplane_channels, model.config.triplane_size, model.config.triplane_size)
    scene = Scene(model, planes, orbit_cameras(30.0, 20.0, 3.0, 0.8))

    def field_at(points, chunk=65536):
        p = points.detach().cpu().double().numpy()
        return torch.from_numpy(density_fn(p)).float(), torch.from_numpy(colour_fn(p)).float()

    scene.field_at = field_at
    return scene


def blob(p, centre, radius, value=50.0):
    return np.where(np.linalg.norm(p - np.asarray(centre), axis=-1) < radius, value, 0.0)


def test_a_small_detached_blob_is_removed(tiny_model):
    def density(p):
        return blob(p, (0, 0, 0), 0.5) + blob(p, (0.75, 0.75, 0.75), 0.1)

    scene = analytic_scene(tiny_model, density, lambda p: np.full((len(p), 3), 0.5))
    everything = scene.mesh(48, min_component=0)
    assert len(everything.split(only_watertight=False)) == 2  # the field has both: marching cubes finds both
    mesh = scene.mesh(48)
    assert len(mesh.split(only_watertight=False)) == 1
    assert np.linalg.norm(mesh.vertices, axis=1).max() < 0.6  # the main blob is what is left
    assert len(mesh.faces) > 0.9 * len(everything.faces)


def test_two_objects_of_similar_size_are_both_kept(tiny_model):
    def density(p):
        return blob(p, (-0.45, 0, 0), 0.3) + blob(p, (0.45, 0, 0), 0.25)

    scene = analytic_scene(tiny_model, density, lambda p: np.full((len(p), 3), 0.5))
    assert len(scene.mesh(48).split(only_watertight=False)) == 2


def shell_scene(model):
    """A red opaque core (r < 0.52) inside a half-transparent pink shell (0.52 < r < 0.6): the iso-surface
    at the default level lies in the shell, the colour one sees is the core's."""

    def density(p):
        r = np.linalg.norm(p, axis=-1)
        return np.where(r < 0.52, 200.0, np.where(r < 0.6, 3.0, 0.0))

    def colour(p):
        r = np.linalg.norm(p, axis=-1)[:, None]
        return np.where(r < 0.52, RED, PINK)

    return analytic_scene(model, density, colour)


def test_colours_come_from_the_opaque_material(tiny_model):
    mesh = shell_scene(tiny_model).mesh(64)
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert 0.55 < np.median(r) < 0.62  # the surface is in the pink shell ...
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255
    mean = colours.mean(axis=0)
    # ... but is coloured like the core (the shell lets ~20% through: a little pink remains)
    assert np.abs(mean - RED).max() < np.abs(mean - PINK).max() / 2, mean
    assert mean[1] < 0.3 and mean[2] < 0.35


def test_surface_colours_composite_along_the_inward_normal():
    """A ray through a slab: 0.2 of the way in, opaque blue; before it, empty (its colour never shows)."""

    def field(points):
        x = points[:, 0]  # the surface at x = 0, normal +x: inward is -x
        return np.where(x < -0.02, 1e4, 0.0), np.where(x[:, None] < -0.02, [0.0, 0.0, 1.0], [1.0, 1.0, 0.0])

    colours = meshing.surface_colours(field, np.zeros((3, 3)), np.tile([1.0, 0, 0], (3, 1)), depth=0.1)
    np.testing.assert_allclose(colours, np.tile([0.0, 0.0, 1.0], (3, 1)), atol=1e-3)
    empty = meshing.surface_colours(lambda p: (np.zeros(len(p)), np.full((len(p), 3), 0.25)),
                                    np.zeros((2, 3)), np.tile([0, 0, 1.0], (2, 1)), depth=0.1)
    np.testing.assert_allclose(empty, 0.25)  # an empty field keeps the colour at the vertex


def test_srgb_linear_round_trip():
    c = np.linspace(0, 1, 101)
    np.testing.assert_allclose(meshing.linear_to_srgb(meshing.srgb_to_linear(c)), c, atol=1e-9)
    assert meshing.srgb_to_linear(0.5) == pytest.approx(0.2140, abs=1e-4)


def _glb_json(path) -> dict:
    data = path.read_bytes()
    n = struct.unpack("<I", data[12:16])[0]
    return json.loads(data[20 : 20 + n])


def test_glb_colours_are_linear_and_plotly_and_ply_colours_srgb(tiny_model, tmp_path):
    mesh = shell_scene(tiny_model).mesh(32)
    srgb = np.asarray(mesh.visual.vertex_colors)[:, :3]
    figure = mesh_figure(mesh)
    plotly = np.array([[int(v) for v in s[4:-1].split(",")] for s in figure.data[0].vertexcolor])
    np.testing.assert_array_equal(plotly, srgb)  # plotly shows the sRGB colours as they are

    glb = write_mesh(mesh, tmp_path / "m.glb")
    (back,) = trimesh.load(glb, process=False).geometry.values()
    assert len(back.vertices) == len(mesh.vertices)
    linear = np.asarray(back.visual.vertex_attributes["color"])[:, :3].astype(int)  # COLOR_0 (with a material)
    expected = np.round(meshing.srgb_to_linear(plotly / 255) * 255).astype(int)
    assert np.abs(linear - expected).max() <= 1
    assert (linear <= plotly).all() and (linear < plotly).any()  # linear values are darker than sRGB ones
    material = _glb_json(glb)["materials"][0]["pbrMetallicRoughness"]
    assert material["metallicFactor"] == 0.0  # not glTF's default (fully metallic)

    ply = trimesh.load(write_mesh(mesh, tmp_path / "m.ply"), process=False)
    np.testing.assert_array_equal(np.asarray(ply.visual.vertex_colors)[:, :3], srgb)


def test_target_face_count(tiny_model, monkeypatch):
    scene = analytic_scene(tiny_model, lambda p: blob(p, (0, 0, 0), 0.6), lambda p: np.full((len(p), 3), 0.5))
    full = scene.mesh(48)
    try:
        import fast_simplification  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install fast-simplification"):
            scene.mesh(48, target_faces=500)
    else:
        reduced = scene.mesh(48, target_faces=500)
        assert len(reduced.faces) <= 500 < len(full.faces)
        assert len(reduced.visual.vertex_colors) == len(reduced.vertices)
    assert scene.mesh(48, target_faces=10 * len(full.faces)).faces.shape == full.faces.shape  # already small enough
    with pytest.raises(ValueError, match="at least 4"):
        scene.mesh(48, target_faces=2)
