"""CLEVR1 in CLEVR's own Blender scene: one CLEVR object (its SmoothCube_v2 / Sphere / SmoothCylinder, Rubber
or MyMetal material, one of its 8 colours, large or small, random yaw) in CLEVR's ``base_scene.blend`` with
its four lamps (key, fill, back area lamps and the sun), each jittered per scene as CLEVR does.

Assets: ``clevr_assets/clevr_scene.blend`` packs ``base_scene.blend`` with the three shapes and the two
material node groups of facebookresearch/clevr-dataset-gen (BSD licence, ``clevr_assets/LICENSE``), made by
:func:`pack_assets` from ``../shared/clevr``. What changes from CLEVR's own render script, for cameras all
around the object under Blender 4.x:

* the curved backdrop ("Ground") covers one camera direction only: it is hidden, and a flat floor of CLEVR's
  default grey surface reaches the horizon instead; the world (black in CLEVR) gets a grey that cameras see
  above the horizon but that lights nothing, so CLEVR's lighting is unchanged;
* the camera's Track-To constraint is removed (it would override the camera matrices);
* the Rubber node group gets the geometry normal wired into its Normal input (Blender 2.7x supplied it
  implicitly; unwired it renders black);
* colours go into the shaders as CLEVR's values / 255, which CLEVR treats as linear reflectance.

Frame: CLEVR's ground is z = 0 and a large object has radius 0.7. Our world is CLEVR's scaled by
``SCALE = 0.5 / 0.7`` and moved down to ``GROUND_Z = -0.5``, the numpy CLEVR1's ground, so a large object
has half-extent 0.5 as there. Cameras (CLEVR1's distribution of :mod:`rdiff.data.clevr1`) are drawn in our
frame and mapped into CLEVR's for rendering; ``transforms.json`` holds ours.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from rdiff.data import clevr1
from rdiff.data.blender import import_bpy, quiet_stdout
from rdiff.data.blender.config import CameraRanges, RenderSettings
from rdiff.data.blender.dataset import BuiltScene, SceneJob, generated_jobs
from rdiff.data.blender.objects import tag_for_mask
from rdiff.data.blender.render import srgb_to_linear
from rdiff.data.blender.scene import FLOOR_SIZE, SceneHandles, configure_cycles, set_world, setup_outputs

ASSETS = Path(__file__).resolve().parent / "clevr_assets"
SCENE_FILE = ASSETS / "clevr_scene.blend"
#: Our units per CLEVR unit, and the height of CLEVR's ground in our frame.
SCALE = 0.5 / 0.7
GROUND_Z = clevr1.GROUND_Z
#: CLEVR's lamp jitter (uniform in [-j, j] per axis, CLEVR units), as in its render script's defaults.
LAMP_JITTER = {"Lamp_Key": 1.0, "Lamp_Back": 1.0, "Lamp_Fill": 1.0}
#: The numpy CLEVR1's camera distribution.
CLEVR1_CAMERAS = CameraRanges(elevation_deg=clevr1.ELEVATION_RANGE_DEG, radius=clevr1.RADIUS_RANGE,
                              fov_deg=clevr1.FOV_RANGE_DEG)

LICENCE = """# CLEVR1 (Blender) dataset: content and licence

Rendered by `rdiff data clevr1-blender` with Blender (Cycles) through the `bpy` module, in CLEVR's own scene.

The scene, shapes and materials are CLEVR's (facebookresearch/clevr-dataset-gen, Copyright (c) 2017-present,
Facebook, Inc.), under the BSD licence in `LICENSE` next to this file, which must stay with this data.
Please cite CLEVR (Johnson et al., CVPR 2017) and RenderDiffusion when you use it.
"""


def properties(assets: Path = ASSETS) -> dict:
    """CLEVR's ``properties.json`` (shapes, colours, materials, sizes)."""
    return json.loads((Path(assets) / "properties.json").read_text())


def pack_assets(src: str | Path, out: str | Path = SCENE_FILE) -> Path:
    """Pack CLEVR's ``base_scene.blend``, ``shapes/*.blend`` and the material node groups of
    ``materials/*.blend`` into one compressed ``.blend`` (what :data:`SCENE_FILE` is)."""
    bpy = import_bpy()
    src = Path(src)
    props = properties(src)
    bpy.ops.wm.open_mainfile(filepath=str(src / "base_scene.blend"))
    for shape in props["shapes"].values():
        with bpy.data.libraries.load(str(src / "shapes" / f"{shape}.blend")) as (_, dst):
            dst.objects = [shape]
        bpy.data.objects[shape].use_fake_user = True
    for group in props["materials"].values():
        with bpy.data.libraries.load(str(src / "materials" / f"{group}.blend")) as (_, dst):
            dst.node_groups = [group]
        bpy.data.node_groups[group].use_fake_user = True
    bpy.data.orphans_purge(do_recursive=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(out), compress=True)
    return Path(out)


def _clevr_floor(z: float):
    """A flat floor with no material (Cycles' default grey surface, as CLEVR's own ground)."""
    bpy = import_bpy()
    h = FLOOR_SIZE / 2
    mesh = bpy.data.meshes.new("rdiff_floor")
    mesh.from_pydata([(-h, -h, z), (h, -h, z), (h, h, z), (-h, h, z)], [], [(0, 1, 2, 3)])
    floor = bpy.data.objects.new("rdiff_floor", mesh)
    bpy.context.scene.collection.objects.link(floor)
    return floor


def _material(group_name: str, rgb_255, name: str):
    bpy = import_bpy()
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    for n in list(nodes):
        if n.bl_idname != "ShaderNodeOutputMaterial":
            nodes.remove(n)
    output = next(n for n in nodes if n.bl_idname == "ShaderNodeOutputMaterial")
    group = nodes.new("ShaderNodeGroup")
    group.node_tree = bpy.data.node_groups[group_name]
    group.inputs["Color"].default_value = (*[float(c) / 255.0 for c in rgb_255], 1.0)
    if "Normal" in group.inputs:
        geometry = nodes.new("ShaderNodeNewGeometry")
        links.new(geometry.outputs["Normal"], group.inputs["Normal"])
    links.new(group.outputs["Shader"], output.inputs["Surface"])
    return mat


@dataclass(frozen=True)
class ClevrSource:
    """CLEVR1 scenes rendered in CLEVR's Blender scene.

    Attributes:
        world_rgb: display colour seen above the horizon (the numpy CLEVR1's background by default).
    """

    name: str = "clevr1-blender"
    scene_file: str = str(SCENE_FILE)
    world_rgb: tuple[float, float, float] = clevr1.BACKGROUND

    def jobs(self, seed: int, scenes: int | None, test_fraction: float) -> list[SceneJob]:
        if scenes is None:
            raise ValueError("clevr1-blender: give the number of scenes")
        return generated_jobs(seed, scenes, test_fraction, lambda split, i: {})

    def prepare(self) -> None:
        import_bpy()
        if not Path(self.scene_file).is_file():
            raise FileNotFoundError(f"CLEVR scene {self.scene_file} is missing (make it with clevr.pack_assets)")

    def build(self, job: SceneJob, rng, settings: RenderSettings, work_dir: Path) -> BuiltScene:
        bpy = import_bpy()
        from mathutils import Vector

        content = clevr1.sample_scene(rng)
        jitter = {lamp: rng.uniform(-j, j, 3) for lamp, j in LAMP_JITTER.items()}
        with quiet_stdout():
            bpy.ops.wm.open_mainfile(filepath=self.scene_file)
        scene = bpy.context.scene
        configure_cycles(scene, settings)
        set_world(scene, srgb_to_linear(self.world_rgb), 1.0, light_scene=False)
        camera = scene.camera
        camera.constraints.clear()
        camera.data.sensor_fit = "HORIZONTAL"
        camera.data.clip_end = 10 * FLOOR_SIZE
        bpy.data.objects["Ground"].hide_render = True
        floor = _clevr_floor(0.0)
        for lamp, offset in jitter.items():
            bpy.data.objects[lamp].location += Vector(offset.tolist())
        props = properties()
        shape_name = props["shapes"][content.shape]
        r = float(props["sizes"][content.size])
        if content.shape == "cube":
            r /= math.sqrt(2.0)  # as CLEVR: a cube's half-diagonal in the ground plane is the size
        obj = bpy.data.objects[shape_name].copy()
        obj.data = obj.data.copy()
        scene.collection.objects.link(obj)
        obj.scale = (r, r, r)
        obj.location = (0.0, 0.0, r)
        obj.rotation_euler = (0.0, 0.0, content.yaw)
        mat = _material(props["materials"][content.material], props["colors"][content.colour],
                        f"{content.material}_{content.colour}")
        obj.data.materials.clear()
        obj.data.materials.append(mat)
        tag_for_mask([obj])
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        setup_outputs(scene, work_dir)
        handles = SceneHandles(scene=scene, camera=camera, floor=floor, output_dir=work_dir,
                               scene_scale=1.0 / SCALE, scene_offset=(0.0, 0.0, -GROUND_Z / SCALE))
        attributes = {**content.to_dict(), "clevr_shape": shape_name, "clevr_radius": r,
                      "half_extent": r * SCALE, "centre": [0.0, 0.0, GROUND_Z + r * SCALE],
                      "lamp_jitter": {k: v.tolist() for k, v in jitter.items()}}
        return BuiltScene(handles=handles, objects=[obj], attributes=attributes)

    def licence(self) -> str:
        return LICENCE

    def licence_files(self) -> list[Path]:
        return [ASSETS / "LICENSE"]
