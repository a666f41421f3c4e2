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

import contextlib
import importlib
import os
import re
import sys
from types import ModuleType

REQUIREMENTS_HINT = "pip install -r requirements-data.txt"


class BlenderUnavailableError(ImportError):
    """``bpy`` (or another data-rendering dependency) is not installed."""


#: Folders that an imported ``bpy`` puts at the front of ``sys.path`` (its own scripts, which hold a Python-only
#: ``bpy`` package). A process spawned from one inherits them and would import that package instead.
_BPY_SCRIPT_PATH = re.compile(r"[/\\]bpy[/\\]\d+\.\d+[/\\]scripts|[/\\]blender[/\\]\d+\.\d+[/\\]scripts")


def import_bpy() -> ModuleType:
    """Import and return ``bpy``, or raise :class:`BlenderUnavailableError` with the install command."""
    if "bpy" not in sys.modules:
        sys.path[:] = [p for p in sys.path if not _BPY_SCRIPT_PATH.search(p)]
    try:
        return importlib.import_module("bpy")
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise BlenderUnavailableError(
            f"rendering datasets needs Blender's Python module 'bpy' ({e}); install it with: {REQUIREMENTS_HINT}"
        ) from e


@contextlib.contextmanager
def quiet_stdout():
    """Silence Blender's C-level prints ("Fra: ...", "Saved: ...", "Read blend: ...") on file descriptor 1."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
