"""Chairs: one procedural chair per scene from Infinigen's ``ChairFactory`` (BSD-3-Clause), on the dark-red
floor of the paper's ShapeNet chairs. Chair ``i`` of a split has its own factory seed, disjoint between the
train and test streams, so no chair is in both splits."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path

from rdiff.data.blender import REQUIREMENTS_HINT, BlenderUnavailableError
from rdiff.data.blender.config import DARK_RED, Placement, RenderSettings, Style
from rdiff.data.blender.dataset import BuiltScene, SceneJob, generated_jobs
from rdiff.data.blender.objects import stage
from rdiff.data.blender.scene import new_scene

INFINIGEN_HINT = f"{REQUIREMENTS_HINT} && pip install --no-deps -r requirements-infinigen.txt"

LICENCE = """# Chairs dataset: content and licence

Rendered by `rdiff data chairs` with Blender (Cycles) through the `bpy` module (GPL-3.0-or-later; the
renders it produces are not covered by the GPL).

The chairs are generated procedurally by **Infinigen**'s `ChairFactory`
(Princeton Vision & Learning Lab, <https://infinigen.org>, BSD-3-Clause licence): one factory seed per scene.
Infinigen's procedural materials (wood, metal, plastic, fabric, ...) are used as the factory assigns them.
The images, masks and metadata of this folder are derived works of Infinigen's output; the BSD-3-Clause
licence asks to keep Infinigen's copyright notice with redistributions: "Copyright (c) 2023, Princeton
University. All rights reserved."

Please cite Infinigen (Raistrick et al., CVPR 2023; Infinigen Indoors, CVPR 2024) when you use this data.
"""


def chair_seed(seed: int, split: str, index: int) -> int:
    """Infinigen factory seed of a scene: even for train, odd for test, so the splits never share a chair."""
    return (int(seed) * 1_000_003 * 2 + 2 * int(index) + {"train": 0, "test": 1}[split]) % 2**32


def _import_factory():
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from infinigen.assets.objects.seating.chairs import ChairFactory
    except ImportError as e:
        raise BlenderUnavailableError(f"chairs need Infinigen ({e}); install it with: {INFINIGEN_HINT}") from e
    return ChairFactory


@dataclass(frozen=True)
class ChairSource:
    """Infinigen chairs on a floor."""

    name: str = "chairs"
    style: Style = field(default_factory=lambda: DARK_RED)
    placement: Placement = field(default_factory=Placement)

    def jobs(self, seed: int, scenes: int | None, test_fraction: float) -> list[SceneJob]:
        if scenes is None:
            raise ValueError("chairs: give the number of scenes")
        return generated_jobs(seed, scenes, test_fraction,
                              lambda split, i: {"factory_seed": chair_seed(seed, split, i)})

    def prepare(self) -> None:
        _import_factory()

    def build(self, job: SceneJob, rng, settings: RenderSettings, work_dir: Path) -> BuiltScene:
        factory_cls = _import_factory()
        handles = new_scene(settings, self.style, work_dir)
        fs = int(job.params["factory_seed"])
        factory = factory_cls(fs)
        chair = factory.spawn_asset(0)
        objects = [chair] + [c for c in chair.children_recursive if c.type == "MESH"]
        placed = stage(objects, handles.floor, self.placement)
        attributes = {
            "factory": "infinigen.ChairFactory", "factory_seed": fs,
            "back_type": str(getattr(factory, "back_type", "")), "leg_type": str(getattr(factory, "leg_type", "")),
            "has_arm": bool(getattr(factory, "has_arm", False)),
            "materials": sorted({m.name for o in objects for m in o.data.materials if m is not None}),
            "extent": placed.extent, "floor_z": placed.floor_z,
        }
        return BuiltScene(handles=handles, objects=objects, attributes=attributes)

    def licence(self) -> str:
        return LICENCE

    def licence_files(self) -> list[Path]:
        return []
