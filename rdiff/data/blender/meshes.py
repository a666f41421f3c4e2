"""Any folder of meshes (OBJ / GLB / glTF / PLY / STL, searched recursively; e.g. a ShapeNet category),
one object per scene, rendered like the chairs and planes. Split by object (the file's path relative to
the folder); scene ``i`` of a split shows the split's ``i % n``-th object in a seeded order. Meshes that
cannot be read are skipped, and counted with their reason in ``scenes.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rdiff.data.blender import import_bpy
from rdiff.data.blender.config import GREY, Placement, RenderSettings, Style
from rdiff.data.blender.dataset import BuiltScene, SceneJob, hash_order, object_jobs
from rdiff.data.blender.objects import MESH_SUFFIXES, import_mesh_file, stage
from rdiff.data.blender.scene import new_scene
from rdiff.data.splits import object_split

LICENCE = """# Mesh-folder dataset: content and licence

Rendered by `rdiff data meshes` with Blender (Cycles) through the `bpy` module, from the meshes of
`{folder}`. The images are renderings of those meshes: their licence (for ShapeNet, its terms of use:
non-commercial research and education) applies to this dataset and to what you do with it.
`scenes.json` lists the mesh file of every scene.
"""


def find_meshes(folder: str | Path) -> list[str]:
    """Mesh files under ``folder`` (recursive), as sorted paths relative to it. Raises ``ValueError`` when
    there are none, ``FileNotFoundError`` when the folder does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"mesh folder {folder} does not exist")
    found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
    if not found:
        raise ValueError(f"no meshes ({', '.join(s[1:].upper() for s in MESH_SUFFIXES)}) found in {folder}")
    return found


@dataclass(frozen=True)
class MeshFolderSource:
    """Meshes of a folder on a floor.

    Attributes:
        folder: the mesh folder.
        up_axis: the files' up axis, "Y" (ShapeNet, glTF) or "Z" (OBJ / PLY / STL only).
        repeats: scenes per object when the number of scenes is not given.
    """

    folder: str
    name: str = "meshes"
    style: Style = field(default_factory=lambda: GREY)
    placement: Placement = field(default_factory=Placement)
    up_axis: str = "Y"
    repeats: int = 1

    def __post_init__(self) -> None:
        if self.up_axis.upper() not in ("Y", "Z"):
            raise ValueError(f"up_axis must be Y or Z, got {self.up_axis!r}")

    def jobs(self, seed: int, scenes: int | None, test_fraction: float) -> list[SceneJob]:
        files = find_meshes(self.folder)
        by_split: dict[str, list[str]] = {"train": [], "test": []}
        for rel in hash_order(files, seed):
            by_split[object_split(rel, seed, test_fraction)].append(rel)
        if scenes is None:
            counts = {s: len(v) * self.repeats for s, v in by_split.items()}
        else:
            from rdiff.data.splits import split_counts

            n_train, n_test = split_counts(scenes, test_fraction)
            counts = {"train": n_train, "test": n_test}
        if counts["test"] and not by_split["test"]:
            counts["test"] = 0  # a tiny folder may have no test object: render train only
        return object_jobs(by_split, counts, key="mesh")

    def prepare(self) -> None:
        import_bpy()

    def build(self, job: SceneJob, rng, settings: RenderSettings, work_dir: Path) -> BuiltScene:
        handles = new_scene(settings, self.style, work_dir)
        objects = import_mesh_file(Path(self.folder) / job.params["mesh"], up_axis=self.up_axis)
        placed = stage(objects, handles.floor, self.placement)
        attributes = {"objects": len(objects), "polygons": sum(len(o.data.polygons) for o in objects),
                      "extent": placed.extent, "floor_z": placed.floor_z}
        return BuiltScene(handles=handles, objects=objects, attributes=attributes)

    def licence(self) -> str:
        return LICENCE.format(folder=self.folder)

    def licence_files(self) -> list[Path]:
        return []
