"""Blender-rendered datasets: chairs (Infinigen), planes (FlightGear AC3D models), any mesh folder, CLEVR1.

Every dataset is rendered by Blender's Cycles through the ``bpy`` module (``pip install -r
requirements-data.txt``). ``bpy`` is imported lazily: importing this package, or ``rdiff``, never needs it.

Modules (one job each):

* :mod:`.config` - dataclasses for render settings, camera ranges, floor / world / light style.
* :mod:`.cameras` - cameras on the upper hemisphere, looking at the origin (numpy, no bpy).
* :mod:`.scene` - reset a bpy scene: Cycles settings, floor to the horizon, world colour, lights, passes.
* :mod:`.objects` - import and normalise meshes, tag them for the object mask.
* :mod:`.render` - render RGB, object coverage and the shadow reference; return :class:`PosedImage` s.
* :mod:`.ac3d` - a pure-Python AC3D (``.ac``) reader; :mod:`.aircraft` - the FlightGear model catalogue.
* :mod:`.chairs`, :mod:`.planes`, :mod:`.meshes`, :mod:`.clevr` - the scene sources.
* :mod:`.dataset` - the driver: splits, resumable per-scene output, worker processes, ``transforms.json``.
* :mod:`.sheet` - contact sheets (PIL only).
"""

from __future__ import annotations

import importlib
from types import ModuleType

REQUIREMENTS_HINT = "pip install -r requirements-data.txt"


class BlenderUnavailableError(ImportError):
    """``bpy`` (or another data-rendering dependency) is not installed."""


def import_bpy() -> ModuleType:
    """Import and return ``bpy``, or raise :class:`BlenderUnavailableError` with the install command."""
    try:
        return importlib.import_module("bpy")
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise BlenderUnavailableError(
            f"rendering datasets needs Blender's Python module 'bpy' ({e}); install it with: {REQUIREMENTS_HINT}"
        ) from e
