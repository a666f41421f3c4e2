"""Import meshes into the bpy scene, normalise them into the scene box and tag them for the object mask."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rdiff.data.blender import import_bpy
from rdiff.data.blender.config import Placement
from rdiff.data.blender.scene import OBJECT_AOV

#: File types :func:`import_mesh_file` reads, by suffix.
MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".stl")


class MeshImportError(ValueError):
    """A mesh file that cannot be used (unreadable, or no polygons); the message is the reason."""


@dataclass(frozen=True)
class PlacementResult:
    """Where a normalised object ended up: ``scale`` applied, bounding box ``extent`` (x, y, z) after it,
    and ``floor_z`` (the bottom of the box, where the floor goes)."""

    scale: float
    extent: tuple[float, float, float]
    floor_z: float


def _new_objects(before: set) -> list:
    bpy = import_bpy()
    return [o for o in bpy.data.objects if o.name not in before]


def _gltf_as_obj(path: Path, folder: Path) -> Path:
    """Convert a glTF / GLB file to OBJ + MTL + textures with trimesh (see :func:`import_mesh_file`)."""
    import trimesh

    try:
        scene = trimesh.load(str(path), force="scene")
        out = folder / "model.obj"
        scene.export(str(out))
    except Exception as e:  # trimesh raises many kinds of errors on bad files
        raise MeshImportError(f"import failed: {type(e).__name__}: {e}") from e
    return out


def import_mesh_file(path: str | Path, up_axis: str = "Y") -> list:
    """Import an OBJ / GLB / glTF / PLY / STL file; returns its mesh objects (others are deleted).

    ``up_axis`` is the file's up axis for OBJ / PLY / STL (glTF is always +Y up); Blender's importers turn it
    into +Z. glTF / GLB files are converted to OBJ by trimesh first and read by Blender's OBJ importer, with
    their textures packed into the scene: merely importing the modules of Blender 4.2's own glTF add-on makes
    the process crash when it exits (a segfault freeing the add-on's classes after Python has shut down).
    Raises :class:`MeshImportError` with the reason when nothing usable comes out.
    """
    bpy = import_bpy()
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MeshImportError(f"unsupported file type {suffix!r}")
    forward = "NEGATIVE_Z" if up_axis.upper() == "Y" else "Y"
    axes = {"forward_axis": forward, "up_axis": up_axis.upper()}
    before = {o.name for o in bpy.data.objects}
    images_before = {i.name for i in bpy.data.images}
    try:
        if suffix in (".glb", ".gltf"):
            with tempfile.TemporaryDirectory(prefix="rdiff-gltf-") as tmp:
                result = bpy.ops.wm.obj_import(filepath=str(_gltf_as_obj(path, Path(tmp))), forward_axis="NEGATIVE_Z",
                                               up_axis="Y")
                for image in bpy.data.images:
                    if image.name not in images_before and image.source == "FILE":
                        try:
                            image.pack()
                        except RuntimeError:  # a texture the MTL names but that is missing
                            pass
        elif suffix == ".obj":
            result = bpy.ops.wm.obj_import(filepath=str(path), **axes)
        elif suffix == ".ply":
            result = bpy.ops.wm.ply_import(filepath=str(path), **axes)
        else:
            result = bpy.ops.wm.stl_import(filepath=str(path), **axes)
    except (RuntimeError, ValueError, OSError, TypeError) as e:
        for obj in _new_objects(before):
            bpy.data.objects.remove(obj)
        raise MeshImportError(f"import failed: {str(e).strip().splitlines()[-1] if str(e).strip() else e!r}") from e
    new = _new_objects(before)
    meshes = [o for o in new if o.type == "MESH"]
    for obj in new:
        if obj.type not in ("MESH", "EMPTY"):
            bpy.data.objects.remove(obj)
    if "FINISHED" not in result or not meshes:
        for obj in _new_objects(before):
            bpy.data.objects.remove(obj)
        raise MeshImportError("the file holds no mesh")
    if sum(len(o.data.polygons) for o in meshes) == 0:
        for obj in _new_objects(before):
            bpy.data.objects.remove(obj)
        raise MeshImportError("the mesh has no faces")
    return meshes


def world_vertices(objects) -> np.ndarray:
    """``(N, 3)`` world positions of all vertices of the objects (after modifiers)."""
    bpy = import_bpy()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    chunks = []
    for obj in objects:
        if obj.type != "MESH":
            continue
        ev = obj.evaluated_get(depsgraph)
        mesh = ev.to_mesh()
        co = np.empty(len(mesh.vertices) * 3, np.float64)
        mesh.vertices.foreach_get("co", co)
        ev.to_mesh_clear()
        m = np.array(obj.matrix_world, dtype=np.float64)
        chunks.append(co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3])
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise MeshImportError("the object has no vertices")
    return np.concatenate(chunks)


def normalise(objects, placement: Placement, scale_jitter: float = 1.0) -> PlacementResult:
    """Scale and move the objects (as one) so their bounding box is centred on the origin with half-diagonal
    ``placement.radius * scale_jitter``. Returns the scale and the floor height (the box's bottom)."""
    from mathutils import Matrix

    bpy = import_bpy()
    v = world_vertices(objects)
    lo, hi = v.min(0), v.max(0)
    half_diag = 0.5 * float(np.linalg.norm(hi - lo))
    if not np.isfinite(half_diag) or half_diag <= 1e-9:
        raise MeshImportError("the object is degenerate (zero size)")
    scale = float(placement.radius) * float(scale_jitter) / half_diag
    centre = 0.5 * (lo + hi)
    transform = Matrix.Diagonal((scale, scale, scale, 1.0)) @ Matrix.Translation(tuple(-centre))
    names = {o.name for o in objects}
    roots = [o for o in objects if o.parent is None or o.parent.name not in names]
    roots += [o.parent for o in objects if o.parent is not None and o.parent.parent is None and o.parent not in roots]
    for obj in {o.name: o for o in roots}.values():
        obj.matrix_world = transform @ obj.matrix_world
    bpy.context.view_layer.update()
    extent = tuple(float(e) for e in (hi - lo) * scale)
    return PlacementResult(scale=scale, extent=extent, floor_z=-0.5 * extent[2])


def _default_material(name: str = "rdiff_default"):
    bpy = import_bpy()
    mat = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    mat.use_nodes = True
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.6, 0.6, 0.6, 1.0)
    return mat


def tag_for_mask(objects) -> None:
    """Make every material of the objects write 1 into the object AOV (the mask source); objects without a
    material get a grey one. Also sets ``pass_index = 1`` (the Cycles object-index pass)."""
    materials = {}
    for obj in objects:
        if obj.type != "MESH":
            continue
        obj.pass_index = 1
        if len(obj.data.materials) == 0:
            obj.data.materials.append(_default_material())
        for i, mat in enumerate(obj.data.materials):
            if mat is None:
                obj.data.materials[i] = mat = _default_material()
            materials[mat.name] = mat
    for mat in materials.values():
        if not mat.use_nodes:
            colour = tuple(mat.diffuse_color)
            mat.use_nodes = True
            bsdf = mat.node_tree.nodes.get("Principled BSDF")
            if bsdf is not None:
                bsdf.inputs["Base Color"].default_value = colour
        tree = mat.node_tree
        if any(n.bl_idname == "ShaderNodeOutputAOV" and n.aov_name == OBJECT_AOV for n in tree.nodes):
            continue
        node = tree.nodes.new("ShaderNodeOutputAOV")
        node.aov_name = OBJECT_AOV
        node.inputs["Value"].default_value = 1.0


def stage(objects, floor, placement: Placement, scale_jitter: float = 1.0) -> PlacementResult:
    """Normalise the objects into the scene box, put ``floor`` under them and tag them for the mask."""
    result = normalise(objects, placement, scale_jitter)
    if floor is not None:
        floor.location.z = result.floor_z
    tag_for_mask(objects)
    return result
