"""Planes: the aircraft of Debian's ``flightgear-data-ai`` (GPL-2.0-or-later AC3D models with livery
textures), nose along +x, on the dark-red floor of the paper's ShapeNet planes.

Variety: every scene draws one of its model's liveries, a scale (x ``scale_jitter`` of the placement
radius) and a colour jitter (hue shift, saturation and value factors on every texture / material colour).
Split by aircraft folder (:func:`rdiff.data.splits.object_split` of e.g. ``"738"``), so variants and liveries
of one airframe are never in both splits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from rdiff.data.blender import ac3d, import_bpy
from rdiff.data.blender.aircraft import FLIGHTGEAR_AI_AIRCRAFT, AircraftModel, scan, texture_dirs
from rdiff.data.blender.config import DARK_RED, Placement, RenderSettings, Style
from rdiff.data.blender.dataset import BuiltScene, SceneJob, hash_order, object_jobs
from rdiff.data.blender.objects import MeshImportError, stage
from rdiff.data.blender.render import srgb_to_linear
from rdiff.data.blender.scene import new_scene
from rdiff.data.splits import object_split, split_counts

LICENCE = """# Planes dataset: content and licence

Rendered by `rdiff data planes` with Blender (Cycles) through the `bpy` module.

The aircraft models and livery textures are FlightGear's AI aircraft, as packaged by Debian in
`flightgear-data-ai` (installed under `/usr/share/games/flightgear/AI/Aircraft`). Their authors are named in
the models' XML files (`<author>`) and in Debian's `/usr/share/doc/flightgear-data-ai/copyright`. They are
licensed under the **GNU General Public License, version 2 or later** (GPL-2.0-or-later).

These images are renderings of GPL-licensed 3D models and textures. Whether a rendering is a derived work of
the model is not settled; to be safe, treat this dataset as a derived work: if you redistribute it, do so
under GPL-2.0-or-later, with this notice, and say where the models come from (the Debian package above, or
FlightGear's source, https://www.flightgear.org). See `docs/data.md` of rdiff for what this means for model
weights trained on it.

`scenes.json` lists, for every scene, the model file and the livery folder it shows.
"""


#: Model parts that FlightGear shows only in some states (propeller blur discs, lamps and their halos, a
#: deployed drag chute, fake shadows): left out of the renders.
SKIP_PARTS = re.compile(r"blur|disc|disk|beacon|strobe|flare|halo|glow|shadow|light|luz|chute", re.IGNORECASE)


@lru_cache(maxsize=4)
def _catalogue(root: str) -> dict[str, AircraftModel]:
    """The models under ``root`` by name (scanned once per process)."""
    return {m.name: m for m in scan(root)}


@dataclass(frozen=True)
class PlaneSource:
    """FlightGear aircraft on a floor.

    Attributes:
        root: the FlightGear ``AI/Aircraft`` folder.
        scale_jitter: range of the factor on the placement radius.
        hue_jitter: largest hue shift (fraction of the colour wheel).
        saturation_jitter, value_jitter: ranges of the saturation and value factors.
    """

    name: str = "planes"
    root: str = FLIGHTGEAR_AI_AIRCRAFT
    style: Style = field(default_factory=lambda: DARK_RED)
    placement: Placement = field(default_factory=Placement)
    scale_jitter: tuple[float, float] = (0.8, 1.0)
    hue_jitter: float = 0.04
    saturation_jitter: tuple[float, float] = (0.8, 1.2)
    value_jitter: tuple[float, float] = (0.85, 1.1)

    def models(self) -> dict[str, AircraftModel]:
        return _catalogue(self.root)

    def jobs(self, seed: int, scenes: int | None, test_fraction: float) -> list[SceneJob]:
        models = self.models()
        if not models:
            raise ValueError(f"no aircraft models found under {self.root}")
        by_split: dict[str, list[str]] = {"train": [], "test": []}
        for name in hash_order(list(models), seed):
            by_split[object_split(models[name].key, seed, test_fraction)].append(name)
        n_train, n_test = split_counts(scenes if scenes is not None else len(models), test_fraction)
        return object_jobs(by_split, {"train": n_train, "test": n_test}, key="model")

    def prepare(self) -> None:
        import_bpy()

    def build(self, job: SceneJob, rng, settings: RenderSettings, work_dir: Path) -> BuiltScene:
        model = self.models().get(job.params["model"])
        if model is None:
            raise MeshImportError(f"model {job.params['model']} is no longer under {self.root}")
        try:
            parsed = ac3d.read(model.ac_path)
        except (ac3d.AC3DError, OSError) as e:
            raise MeshImportError(str(e)) from e
        liveries = usable_liveries(model, parsed)
        livery = liveries[int(rng.integers(len(liveries)))]
        scale = float(rng.uniform(*self.scale_jitter))
        jitter = ColourJitter(hue=float(rng.uniform(-self.hue_jitter, self.hue_jitter)),
                              saturation=float(rng.uniform(*self.saturation_jitter)),
                              value=float(rng.uniform(*self.value_jitter)))
        handles = new_scene(settings, self.style, work_dir)
        obj = build_aircraft(parsed, texture_dirs(model, livery), model.name, jitter)
        placed = stage([obj], handles.floor, self.placement, scale_jitter=scale)
        attributes = {"aircraft": model.key, "model_file": model.ac_path, "livery": livery,
                      "scale_jitter": scale, "colour_jitter": jitter.__dict__, "extent": placed.extent,
                      "floor_z": placed.floor_z, "polygons": parsed.num_polygons}
        return BuiltScene(handles=handles, objects=[obj], attributes=attributes)

    def licence(self) -> str:
        return LICENCE

    def licence_files(self) -> list[Path]:
        return []


@dataclass(frozen=True)
class ColourJitter:
    """Hue shift (fraction of the wheel) and saturation / value factors (Blender's Hue/Saturation node)."""

    hue: float = 0.0
    saturation: float = 1.0
    value: float = 1.0


def usable_liveries(model: AircraftModel, parsed: ac3d.AC3DModel) -> list[str | None]:
    """The model's liveries in which all its textures are found (all liveries when none is complete)."""
    names = sorted({o.texture for o in parsed.objects if o.texture})
    good = [lv for lv in model.liveries
            if all(ac3d.find_texture(n, texture_dirs(model, lv)) is not None for n in names)]
    return good or list(model.liveries)


def ac3d_to_world(v: np.ndarray) -> np.ndarray:
    """AC3D / FlightGear model axes (x aft, y up, z left... of the nose) to ours: nose +x, +z up."""
    return np.stack([-v[:, 0], v[:, 2], v[:, 1]], axis=1)


def _material(key: tuple, parsed: ac3d.AC3DModel, texture: Path | None, jitter: ColourJitter):
    bpy = import_bpy()
    mat_index, _ = key
    src = parsed.materials[mat_index] if 0 <= mat_index < len(parsed.materials) else ac3d.AC3DMaterial("", (0.8,) * 3)
    mat = bpy.data.materials.new(f"ac3d_{mat_index}_{texture.name if texture else 'plain'}")
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.45
    rgb = (*[float(c) for c in srgb_to_linear(src.rgb)], 1.0)
    hsv = nodes.new("ShaderNodeHueSaturation")
    hsv.inputs["Hue"].default_value = 0.5 + jitter.hue
    hsv.inputs["Saturation"].default_value = jitter.saturation
    hsv.inputs["Value"].default_value = jitter.value
    alpha = 1.0 - float(src.transparency)
    if texture is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = bpy.data.images.load(str(texture), check_existing=True)
        tex.interpolation = "Linear"
        mix = nodes.new("ShaderNodeMix")
        mix.data_type = "RGBA"
        mix.blend_type = "MULTIPLY"
        mix.inputs["Factor"].default_value = 1.0
        links.new(tex.outputs["Color"], mix.inputs["A"])
        mix.inputs["B"].default_value = rgb
        links.new(mix.outputs["Result"], hsv.inputs["Color"])
        if alpha < 1.0:
            mul = nodes.new("ShaderNodeMath")
            mul.operation = "MULTIPLY"
            links.new(tex.outputs["Alpha"], mul.inputs[0])
            mul.inputs[1].default_value = alpha
            links.new(mul.outputs["Value"], bsdf.inputs["Alpha"])
        else:
            links.new(tex.outputs["Alpha"], bsdf.inputs["Alpha"])
    else:
        hsv.inputs["Color"].default_value = rgb
        bsdf.inputs["Alpha"].default_value = alpha
    links.new(hsv.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def build_aircraft(parsed: ac3d.AC3DModel, search_dirs, name: str, jitter: ColourJitter = ColourJitter()):
    """One bpy mesh object from a parsed AC3D model (textures looked up in ``search_dirs``)."""
    bpy = import_bpy()
    verts, faces, uvs, mat_keys, smooth = [], [], [], [], []
    offset = 0
    textures: dict[str, Path | None] = {}
    for obj in parsed.objects:
        if obj.hidden or not obj.surfaces or SKIP_PARTS.search(obj.name):
            continue
        verts.append(ac3d_to_world(obj.vertices))
        tex = None
        if obj.texture:
            if obj.texture not in textures:
                textures[obj.texture] = ac3d.find_texture(obj.texture, search_dirs)
            tex = textures[obj.texture]
        rep, off = np.asarray(obj.texrep), np.asarray(obj.texoff)
        for s in obj.surfaces:
            faces.append([offset + r for r in s.refs])
            uvs.append(np.asarray(s.uvs) * rep + off)
            mat_keys.append((s.material, str(tex) if tex else None))
            smooth.append(s.smooth)
        offset += len(obj.vertices)
    if not faces:
        raise MeshImportError("the model has no polygons")
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(np.concatenate(verts).tolist(), [], faces)
    uv_layer = mesh.uv_layers.new(name="UVMap")
    uv_layer.data.foreach_set("uv", np.concatenate(uvs).astype(np.float32).ravel())
    keys = sorted(set(mat_keys), key=lambda k: (k[0], k[1] or ""))
    for key in keys:
        mesh.materials.append(_material(key, parsed, Path(key[1]) if key[1] else None, jitter))
    index = {k: i for i, k in enumerate(keys)}
    mesh.polygons.foreach_set("material_index", np.array([index[k] for k in mat_keys], np.int32))
    mesh.polygons.foreach_set("use_smooth", np.array(smooth, bool))
    mesh.validate(clean_customdata=False)
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj
