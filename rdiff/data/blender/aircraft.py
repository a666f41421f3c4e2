"""The aircraft of Debian's ``flightgear-data-ai`` (FlightGear's AI traffic models): which ``.ac`` files are
whole aircraft, and their liveries. Pure Python (xml.etree), no bpy.

FlightGear describes a model with PropertyList XML files: a livery file has ``<path>`` (the ``.ac`` model, or
another XML) and ``<texture-path>`` (the livery's texture folder), possibly through ``include=``. Sub-models
(lights, tanks, propellers) are referenced from ``<model><path>`` and are not aircraft of their own; nor are
the hot-air balloons and the ferry boat of the package.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

#: Where Debian installs the AI aircraft.
FLIGHTGEAR_AI_AIRCRAFT = "/usr/share/games/flightgear/AI/Aircraft"
#: Aircraft folders that hold no aeroplane.
EXCLUDED_FOLDERS = frozenset({"balloon", "Ferry"})
#: Model file names that are parts, not aircraft.
PART_PATTERN = re.compile(r"light|flare|strobe|flash|cockpit|probe|refuel|exhaust|tank|wheel|banner|ssme|omspod",
                          re.IGNORECASE)
_MAX_DEPTH = 8


@dataclass(frozen=True)
class AircraftModel:
    """One aircraft model: ``key`` is its aircraft folder (the split unit: variants of one airframe share it),
    ``ac_path`` the model file and ``liveries`` its texture folders (``None``: the textures beside the model)."""

    key: str
    ac_path: str
    liveries: tuple[str | None, ...]

    @property
    def name(self) -> str:
        return f"{self.key}/{Path(self.ac_path).stem}"


def _parse(path: Path):
    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return None


def _resolve(path: Path, depth: int = 0) -> tuple[Path | None, Path | None]:
    """``(ac file, texture folder)`` that a model XML stands for (following ``<path>`` and ``include``)."""
    root = _parse(path)
    if root is None or depth > _MAX_DEPTH:
        return None, None
    here = path.parent
    ac = None
    tex = root.findtext("texture-path")
    texture_dir = (here / tex.strip()).resolve() if tex and tex.strip() else None
    model_path = root.findtext("path")
    if model_path and model_path.strip():
        target = (here / model_path.strip()).resolve()
        if target.suffix.lower() == ".ac":
            ac = target
        elif target.suffix.lower() == ".xml":
            ac, inner_tex = _resolve(target, depth + 1)
            texture_dir = texture_dir or inner_tex
    include = root.get("include")
    if include and (ac is None or texture_dir is None):
        inc_ac, inc_tex = _resolve((here / include).resolve(), depth + 1)
        ac = ac or inc_ac
        texture_dir = texture_dir or inc_tex
    return ac, texture_dir


def scan(root: str | Path = FLIGHTGEAR_AI_AIRCRAFT) -> list[AircraftModel]:
    """All whole-aircraft models under ``root``, sorted by name. Raises ``FileNotFoundError`` without it."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"no FlightGear AI aircraft at {root} (install them with: apt-get install flightgear-data-ai)")
    xmls = sorted(p.resolve() for p in root.rglob("*.xml"))
    submodels: set[Path] = set()
    for x in xmls:
        tree = _parse(x)
        if tree is None:
            continue
        for model in tree.iter("model"):
            p = model.findtext("path")
            if p and p.strip():
                submodels.add((x.parent / p.strip()).resolve())
    found: dict[Path, set] = {}
    root_resolved = root.resolve()
    for x in xmls:
        if x in submodels:
            continue
        ac, tex = _resolve(x)
        if ac is None or ac in submodels or not ac.is_file():
            continue
        try:
            rel = ac.relative_to(root_resolved)
        except ValueError:  # a model outside the aircraft tree
            continue
        if rel.parts[0] in EXCLUDED_FOLDERS or PART_PATTERN.search(ac.stem):
            continue
        found.setdefault(ac, set()).add(str(tex) if tex is not None and tex.is_dir() else None)
    models = []
    for ac, liveries in found.items():
        key = ac.relative_to(root_resolved).parts[0]
        ordered = tuple(sorted(liveries, key=lambda s: (s is not None, s or "")))
        models.append(AircraftModel(key=key, ac_path=str(ac), liveries=ordered))
    return sorted(models, key=lambda m: m.name)


def texture_dirs(model: AircraftModel, livery: str | None) -> list[Path]:
    """Folders to look for the model's textures in, for one livery (livery first, then beside the model)."""
    ac_dir = Path(model.ac_path).parent
    dirs = [Path(livery)] if livery else []
    return dirs + [ac_dir, ac_dir.parent, ac_dir.parent / "Textures"]
