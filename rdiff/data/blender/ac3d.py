"""A small reader for AC3D ``.ac`` files (the format of FlightGear's aircraft models), in pure Python.

It keeps what rendering needs: materials (rgb, transparency), and for every object its vertices in the file's
world frame (``loc`` / ``rot`` of all parents applied), polygon surfaces with per-corner texture coordinates,
material index and smooth flag, and the texture file name. Line surfaces are dropped. AC3D is +Y up.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Surface type bits (low nibble of the SURF flags): 0 polygon, 1 closed line, 2 line.
SURF_POLYGON = 0
#: Surface flag bits.
SURF_SMOOTH = 0x10
SURF_TWO_SIDED = 0x20


class AC3DError(ValueError):
    """The file is not a readable AC3D model (the message says where)."""


@dataclass(frozen=True)
class AC3DMaterial:
    name: str
    rgb: tuple[float, float, float]
    transparency: float = 0.0


@dataclass
class AC3DSurface:
    """A polygon: vertex indices into its object's vertices, one ``(u, v)`` per corner."""

    refs: list[int]
    uvs: list[tuple[float, float]]
    material: int
    flags: int

    @property
    def smooth(self) -> bool:
        return bool(self.flags & SURF_SMOOTH)


@dataclass
class AC3DObject:
    name: str
    kind: str
    vertices: np.ndarray  # (N, 3) float64, file world frame
    surfaces: list[AC3DSurface] = field(default_factory=list)
    texture: str | None = None
    texrep: tuple[float, float] = (1.0, 1.0)
    texoff: tuple[float, float] = (0.0, 0.0)
    hidden: bool = False


@dataclass
class AC3DModel:
    materials: list[AC3DMaterial]
    objects: list[AC3DObject]  # flattened, only objects with polygons

    @property
    def num_polygons(self) -> int:
        return sum(len(o.surfaces) for o in self.objects)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        v = np.concatenate([o.vertices for o in self.objects if len(o.vertices)])
        return v.min(0), v.max(0)


class _Lines:
    def __init__(self, text: str, where: str):
        self.lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.i = 0
        self.where = where

    def next(self) -> str | None:
        while self.i < len(self.lines):
            line = self.lines[self.i].strip()
            self.i += 1
            if line:
                return line
        return None

    def skip_chars(self, n: int) -> None:
        """Skip an ``data N`` block of ``n`` characters (it may span lines)."""
        taken = 0
        while taken < n and self.i < len(self.lines):
            taken += len(self.lines[self.i]) + 1
            self.i += 1

    def error(self, msg: str) -> AC3DError:
        return AC3DError(f"{self.where}:{self.i}: {msg}")


def _floats(tokens: list[str], n: int, lines: _Lines) -> list[float]:
    try:
        values = [float(t) for t in tokens[:n]]
    except ValueError as e:
        raise lines.error(f"expected {n} numbers, got {' '.join(tokens)!r}") from e
    if len(values) < n:
        raise lines.error(f"expected {n} numbers, got {' '.join(tokens)!r}")
    return values


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line, posix=True)
    except ValueError:  # unbalanced quote
        return line.split()


def _material(line: str, lines: _Lines) -> AC3DMaterial:
    tok = _split(line)
    name = tok[1] if len(tok) > 1 else ""
    rgb = (0.8, 0.8, 0.8)
    trans = 0.0
    for k, t in enumerate(tok):
        if t == "rgb":
            rgb = tuple(_floats(tok[k + 1:k + 4], 3, lines))
        elif t == "trans":
            trans = _floats(tok[k + 1:k + 2], 1, lines)[0]
    return AC3DMaterial(name=name, rgb=rgb, transparency=trans)


def _object(lines: _Lines, header: str, parent: np.ndarray, out: list[AC3DObject], depth: int = 0) -> None:
    if depth > 64:
        raise lines.error("objects nested too deeply")
    kind = header.split()[1] if len(header.split()) > 1 else "poly"
    name, texture, hidden = "", None, False
    texrep, texoff = (1.0, 1.0), (0.0, 0.0)
    rot = np.eye(3)
    loc = np.zeros(3)
    local = np.zeros((0, 3))
    surfaces: list[AC3DSurface] = []
    while True:
        line = lines.next()
        if line is None:
            raise lines.error(f"file ends inside OBJECT {kind}")
        tok = _split(line)
        key = tok[0]
        if key == "name":
            name = tok[1] if len(tok) > 1 else ""
        elif key == "data":
            lines.skip_chars(int(_floats(tok[1:], 1, lines)[0]))
        elif key == "texture":
            if texture is None and len(tok) > 1:
                texture = tok[1]
        elif key == "texrep":
            texrep = tuple(_floats(tok[1:], 2, lines))
        elif key == "texoff":
            texoff = tuple(_floats(tok[1:], 2, lines))
        elif key == "rot":
            rot = np.array(_floats(tok[1:], 9, lines)).reshape(3, 3)
        elif key == "loc":
            loc = np.array(_floats(tok[1:], 3, lines))
        elif key == "hidden":
            hidden = True
        elif key == "numvert":
            n = int(_floats(tok[1:], 1, lines)[0])
            rows = []
            for _ in range(n):
                vline = lines.next()
                if vline is None:
                    raise lines.error("file ends inside a vertex list")
                rows.append(_floats(vline.split(), 3, lines))
            local = np.array(rows, dtype=np.float64).reshape(-1, 3)
        elif key == "numsurf":
            for _ in range(int(_floats(tok[1:], 1, lines)[0])):
                surf = _surface(lines, len(local))
                if surf is not None:
                    surfaces.append(surf)
        elif key == "kids":
            # This object's frame: parent @ [rot | loc]. Its vertices and kids are expressed in it.
            frame = np.eye(4)
            frame[:3, :3] = rot
            frame[:3, 3] = loc
            world = parent @ frame
            if surfaces:
                verts = local @ world[:3, :3].T + world[:3, 3]
                out.append(AC3DObject(name=name, kind=kind, vertices=verts, surfaces=surfaces, texture=texture,
                                      texrep=texrep, texoff=texoff, hidden=hidden))
            for _ in range(int(_floats(tok[1:], 1, lines)[0])):
                child = lines.next()
                if child is None:  # some exporters over-count the kids of the last object
                    return
                if not child.startswith("OBJECT"):
                    raise lines.error(f"expected a kid OBJECT, got {child!r}")
                _object(lines, child, world, out, depth + 1)
            return
        # Other keys (crease, url, locked, folded, subdiv, ...) do not affect rendering.


def _surface(lines: _Lines, num_vertices: int) -> AC3DSurface | None:
    head = lines.next()
    if head is None or not head.startswith("SURF"):
        raise lines.error(f"expected SURF, got {head!r}")
    try:
        flags = int(head.split()[1], 0)
    except (IndexError, ValueError) as e:
        raise lines.error(f"bad SURF flags {head!r}") from e
    material = 0
    refs: list[int] = []
    uvs: list[tuple[float, float]] = []
    while True:
        line = lines.next()
        if line is None:
            raise lines.error("file ends inside a surface")
        tok = line.split()
        if tok[0] == "mat":
            material = int(_floats(tok[1:], 1, lines)[0])
        elif tok[0] == "refs":
            for _ in range(int(_floats(tok[1:], 1, lines)[0])):
                rline = lines.next()
                if rline is None:
                    raise lines.error("file ends inside a refs list")
                parts = rline.split()
                idx = int(parts[0])
                if not 0 <= idx < num_vertices:
                    raise lines.error(f"vertex index {idx} out of range ({num_vertices} vertices)")
                u, v = (float(parts[1]), float(parts[2])) if len(parts) >= 3 else (0.0, 0.0)
                refs.append(idx)
                uvs.append((u, v))
            break
        else:
            raise lines.error(f"unexpected {tok[0]!r} in a surface")
    if flags & 0x0F != SURF_POLYGON:
        return None
    # Drop repeated corners (degenerate polygons of some exporters); keep polygons with >= 3 distinct corners.
    keep_refs, keep_uvs = [], []
    for r, uv in zip(refs, uvs):
        if r not in keep_refs:
            keep_refs.append(r)
            keep_uvs.append(uv)
    if len(keep_refs) < 3:
        return None
    return AC3DSurface(refs=keep_refs, uvs=keep_uvs, material=material, flags=flags)


def parse(text: str, where: str = "<ac3d>") -> AC3DModel:
    """Parse AC3D text. Raises :class:`AC3DError` for files that are not AC3D or are truncated."""
    lines = _Lines(text, where)
    head = lines.next()
    if head is None or not head.startswith("AC3D"):
        raise AC3DError(f"{where}: not an AC3D file (no AC3D header)")
    materials: list[AC3DMaterial] = []
    objects: list[AC3DObject] = []
    while True:
        line = lines.next()
        if line is None:
            break
        if line.startswith("MATERIAL"):
            materials.append(_material(line, lines))
        elif line.startswith("OBJECT"):
            _object(lines, line, np.eye(4), objects)
        # Unknown top-level lines are ignored.
    return AC3DModel(materials=materials, objects=objects)


def read(path: str | Path) -> AC3DModel:
    """Read an ``.ac`` file (latin-1 tolerant)."""
    path = Path(path)
    return parse(path.read_text(encoding="latin-1"), str(path))


def find_texture(name: str, search_dirs) -> Path | None:
    """The file ``name`` refers to, searched in ``search_dirs`` in order (by base name, case-insensitive;
    also with ``.png`` / ``.rgb`` for a missing or different extension)."""
    base = Path(name.replace("\\", "/")).name
    stem = Path(base).stem.lower()
    for d in search_dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        exact = d / base
        if exact.is_file():
            return exact
        for f in d.iterdir():
            if f.is_file() and (f.name.lower() == base.lower() or (f.stem.lower() == stem and f.suffix.lower() in (
                    ".png", ".rgb", ".rgba", ".sgi", ".jpg", ".jpeg", ".dds"))):
                return f
    return None
