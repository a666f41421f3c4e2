"""Build the bpy scene around an object: Cycles settings, floor to the horizon, world colour, lights, camera,
and the compositor outputs that :mod:`.render` reads back."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rdiff.data.blender import import_bpy, quiet_stdout
from rdiff.data.blender.config import AreaLight, RenderSettings, Style

#: Name of the AOV that object materials write 1 into (its average over samples is the object's pixel coverage).
OBJECT_AOV = "rdiff_object"
#: Side of the square floor plane in scene units (it reaches the horizon from every camera).
FLOOR_SIZE = 2000.0
#: Base names of the EXR files the compositor writes per render (Blender appends the frame number).
RGBA_OUTPUT = "rgba"
DIRECT_OUTPUT = "direct"


@dataclass
class SceneHandles:
    """The bpy objects a render needs (valid until the next :func:`new_scene`).

    ``scene_scale`` and ``scene_offset`` map our world frame into the Blender scene's
    (``blender = scene_scale * world + scene_offset``): 1 and 0 for scenes built here; CLEVR's own scene
    keeps its native units.
    """

    scene: object
    camera: object
    floor: object | None
    output_dir: Path
    scene_scale: float = 1.0
    scene_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)


def configure_cycles(scene, settings: RenderSettings) -> None:
    """Cycles on the CPU: resolution, samples, denoising, threads, persistent data, Standard view transform."""
    scene.render.engine = "CYCLES"
    cyc = scene.cycles
    cyc.device = "CPU"
    cyc.samples = int(settings.samples)
    cyc.use_adaptive_sampling = False
    cyc.use_denoising = bool(settings.denoise)
    if settings.denoise:
        cyc.denoiser = "OPENIMAGEDENOISE"
        # Albedo / normal guides used as they are (not denoised first: 3x less denoising work at 64x64).
        cyc.denoising_input_passes = "RGB_ALBEDO_NORMAL"
        cyc.denoising_prefilter = "FAST"
    cyc.seed = 0
    cyc.max_bounces = int(settings.max_bounces)
    cyc.diffuse_bounces = min(4, int(settings.max_bounces))
    cyc.glossy_bounces = min(4, int(settings.max_bounces))
    cyc.transmission_bounces = int(settings.max_bounces)
    cyc.transparent_max_bounces = 8
    cyc.use_auto_tile = False
    scene.render.threads_mode = "FIXED"
    scene.render.threads = int(settings.threads)
    scene.render.use_persistent_data = True
    scene.render.resolution_x = scene.render.resolution_y = int(settings.size)
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0


def set_world(scene, rgb, strength: float, light_scene: bool = True) -> None:
    """Uniform world colour (seen above the horizon); with ``light_scene=False`` it lights nothing."""
    bpy = import_bpy()
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    bg = next(n for n in world.node_tree.nodes if n.bl_idname == "ShaderNodeBackground")
    bg.inputs["Color"].default_value = (*[float(c) for c in rgb], 1.0)
    bg.inputs["Strength"].default_value = float(strength)
    vis = world.cycles_visibility
    vis.diffuse = vis.glossy = vis.transmission = vis.scatter = bool(light_scene)
    vis.camera = True


def add_floor(rgb, roughness: float = 0.6, z: float = 0.0, name: str = "rdiff_floor"):
    """A square diffuse-ish floor of side :data:`FLOOR_SIZE` at height ``z`` (returns the object)."""
    bpy = import_bpy()
    mesh = bpy.data.meshes.new(name)
    h = FLOOR_SIZE / 2
    mesh.from_pydata([(-h, -h, 0.0), (h, -h, 0.0), (h, h, 0.0), (-h, h, 0.0)], [], [(0, 1, 2, 3)])
    floor = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(floor)
    floor.location = (0.0, 0.0, float(z))
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*[float(c) for c in rgb], 1.0)
    bsdf.inputs["Roughness"].default_value = float(roughness)
    bsdf.inputs["Specular IOR Level"].default_value = 0.3
    mesh.materials.append(mat)
    return floor


def _aim(obj, target=(0.0, 0.0, 0.0)) -> None:
    from mathutils import Vector

    obj.rotation_euler = (Vector(target) - obj.location).to_track_quat("-Z", "Y").to_euler()


def add_area_light(light: AreaLight, name: str):
    """An area light aimed at the origin."""
    bpy = import_bpy()
    data = bpy.data.lights.new(name, "AREA")
    data.energy = float(light.power)
    data.size = float(light.size)
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    az, el = math.radians(light.azimuth_deg), math.radians(light.elevation_deg)
    d = light.distance
    obj.location = (d * math.cos(el) * math.cos(az), d * math.cos(el) * math.sin(az), d * math.sin(el))
    _aim(obj)
    return obj


def add_camera(scene, name: str = "rdiff_camera"):
    """A perspective camera whose ``angle`` is the horizontal fov (set per view by :mod:`.render`)."""
    bpy = import_bpy()
    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    scene.collection.objects.link(cam)
    cam.data.sensor_fit = "HORIZONTAL"
    cam.data.clip_start = 0.01
    cam.data.clip_end = 10.0 * FLOOR_SIZE
    scene.camera = cam
    return cam


def setup_outputs(scene, output_dir: Path) -> None:
    """Compositor: per render, write linear float EXRs of Combined RGB with the object-coverage AOV as alpha,
    and of the diffuse direct light (the shadow test compares it with an object-free render)."""
    view_layer = scene.view_layers[0]
    if OBJECT_AOV not in [a.name for a in view_layer.aovs]:
        aov = view_layer.aovs.add()
        aov.name = OBJECT_AOV
        aov.type = "VALUE"
    view_layer.use_pass_object_index = True
    view_layer.use_pass_diffuse_direct = True
    scene.use_nodes = True
    tree = scene.node_tree
    for node in list(tree.nodes):
        tree.nodes.remove(node)
    layers = tree.nodes.new("CompositorNodeRLayers")
    set_alpha = tree.nodes.new("CompositorNodeSetAlpha")
    set_alpha.mode = "REPLACE_ALPHA"
    tree.links.new(layers.outputs["Image"], set_alpha.inputs["Image"])
    tree.links.new(layers.outputs[OBJECT_AOV], set_alpha.inputs["Alpha"])
    out = tree.nodes.new("CompositorNodeOutputFile")
    out.base_path = str(output_dir)
    out.format.file_format = "OPEN_EXR"
    out.format.color_depth = "32"
    out.format.color_mode = "RGBA"
    out.format.exr_codec = "NONE"
    out.file_slots.clear()
    out.file_slots.new(RGBA_OUTPUT)
    out.file_slots.new(DIRECT_OUTPUT)
    tree.links.new(set_alpha.outputs["Image"], out.inputs[RGBA_OUTPUT])
    tree.links.new(layers.outputs["DiffDir"], out.inputs[DIRECT_OUTPUT])
    # The render result itself is not saved: keep Blender from writing anywhere else.
    scene.render.filepath = str(Path(output_dir) / "unused_")


def reset() -> None:
    """Empty the current Blender session (factory settings, no objects)."""
    bpy = import_bpy()
    with quiet_stdout():
        bpy.ops.wm.read_factory_settings(use_empty=True)


def new_scene(settings: RenderSettings, style: Style, output_dir: Path, floor_z: float = 0.0) -> SceneHandles:
    """A fresh scene: Cycles, world, floor at ``floor_z``, the style's lights, a camera and the outputs."""
    bpy = import_bpy()
    reset()
    scene = bpy.context.scene
    configure_cycles(scene, settings)
    set_world(scene, style.world_rgb, style.world_strength)
    floor = add_floor(style.floor_rgb, style.floor_roughness, floor_z)
    for i, light in enumerate(style.lights):
        add_area_light(light, f"rdiff_light_{i}")
    camera = add_camera(scene)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    setup_outputs(scene, output_dir)
    return SceneHandles(scene=scene, camera=camera, floor=floor, output_dir=output_dir)
