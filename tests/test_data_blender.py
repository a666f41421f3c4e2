"""Blender-rendered datasets (rdiff.data.blender): tiny end-to-end renders of every source, and the pure-Python
parts (AC3D reader, FlightGear catalogue, cameras, contact sheets).

Needs the data extra (``pip install -r requirements-data.txt``; Infinigen with ``--no-deps`` for the chairs) and
Debian's ``flightgear-data-ai`` for the planes; each is skipped with its reason where it is missing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rdiff.data.blender import ac3d
from rdiff.data.blender.cameras import project, sample_views
from rdiff.data.blender.config import CameraRanges, RenderSettings
from rdiff.data.transforms_json import MASK_OBJECT, MASK_SHADOW, load_transforms

ROOT = Path(__file__).resolve().parents[1]
FLIGHTGEAR = Path("/usr/share/games/flightgear/AI/Aircraft")


def _have(module: str) -> bool:
    try:
        __import__(module)
        return True
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return False


HAVE_BPY = _have("bpy")
needs_bpy = pytest.mark.skipif(not HAVE_BPY, reason="bpy is not installed (pip install -r requirements-data.txt)")
needs_flightgear = pytest.mark.skipif(not FLIGHTGEAR.is_dir(),
                                      reason="flightgear-data-ai is not installed (apt-get install flightgear-data-ai)")

TINY = RenderSettings(size=24, samples=4, denoise=False)


def _opts(**kw):
    from rdiff.data.blender.dataset import GenerateOptions

    base = {"scenes": 2, "views": 2, "test_views": 2, "test_fraction": 0.5, "progress": False, "render": TINY}
    base.update(kw)
    return GenerateOptions(**base)


# --------------------------------------------------------------------------------------------------
# Pure Python: AC3D, catalogue, cameras


AC3D_TEXT = """AC3Db\r
MATERIAL "red" rgb 1 0 0  amb 0.2 0.2 0.2  emis 0 0 0  spec 0.5 0.5 0.5  shi 10  trans 0.25\r
OBJECT world\r
kids 1\r
OBJECT group\r
name "body"\r
loc 1 0 0\r
kids 1\r
OBJECT poly\r
name "wing"\r
data 5\r
hello\r
texture "wing.png"\r
texrep 2 1\r
loc 0 2 0\r
numvert 4\r
0 0 0\r
1 0 0\r
1 1 0\r
0 1 0\r
numsurf 3\r
SURF 0x10\r
mat 0\r
refs 4\r
0 0 0\r
1 1 0\r
2 1 1\r
3 0 1\r
SURF 0x02\r
mat 0\r
refs 2\r
0 0 0\r
1 0 0\r
SURF 0x00\r
mat 0\r
refs 3\r
0 0 0\r
0 0 0\r
1 0 0\r
kids 0\r
"""


def test_ac3d_reader_applies_parent_locations_and_drops_lines_and_degenerate_polygons():
    model = ac3d.parse(AC3D_TEXT)
    assert [m.name for m in model.materials] == ["red"]
    assert model.materials[0].rgb == (1.0, 0.0, 0.0) and model.materials[0].transparency == 0.25
    assert len(model.objects) == 1
    wing = model.objects[0]
    assert wing.name == "wing" and wing.texture == "wing.png" and wing.texrep == (2.0, 1.0)
    np.testing.assert_allclose(wing.vertices[0], [1.0, 2.0, 0.0])  # loc of the group + its own
    assert len(wing.surfaces) == 1  # the line and the two-corner polygon are dropped
    assert wing.surfaces[0].smooth and wing.surfaces[0].uvs[2] == (1.0, 1.0)


def test_ac3d_reader_rejects_non_ac3d_and_bad_indices():
    with pytest.raises(ac3d.AC3DError, match="not an AC3D file"):
        ac3d.parse("solid cube\n")
    bad = AC3D_TEXT.replace("3 0 1\r", "9 0 1\r")
    with pytest.raises(ac3d.AC3DError, match="out of range"):
        ac3d.parse(bad)


def test_find_texture_is_case_insensitive_and_tries_other_extensions(tmp_path):
    (tmp_path / "Wing.RGB").write_bytes(b"x")
    assert ac3d.find_texture("textures\\wing.png", [tmp_path / "missing", tmp_path]) == tmp_path / "Wing.RGB"
    assert ac3d.find_texture("other.png", [tmp_path]) is None


@needs_flightgear
def test_flightgear_catalogue_has_whole_aircraft_with_liveries_and_noses_along_x():
    from rdiff.data.blender.aircraft import scan
    from rdiff.data.blender.planes import ac3d_to_world

    models = scan(FLIGHTGEAR)
    assert len(models) >= 100 and len({m.key for m in models}) >= 90
    assert not any(m.key in ("balloon", "Ferry") for m in models)
    assert not any("light" in Path(m.ac_path).stem.lower() for m in models)
    b738 = next(m for m in models if m.name == "738/737-800")
    assert len(b738.liveries) > 50
    # FlightGear models point the nose along -x (x aft, y up): after conversion the fin (top) is at the back.
    v = ac3d_to_world(np.concatenate([o.vertices for o in ac3d.read(b738.ac_path).objects]))
    lo, hi = v.min(0), v.max(0)
    assert hi[0] - lo[0] > hi[2] - lo[2] and hi[1] - lo[1] > hi[2] - lo[2]  # long and wide, not tall
    fin = v[v[:, 2] > hi[2] - 0.1 * (hi[2] - lo[2])]
    assert fin[:, 0].mean() < 0.5 * (lo[0] + hi[0])


@needs_flightgear
def test_planes_split_by_aircraft_folder():
    from rdiff.data.blender.planes import PlaneSource

    jobs = PlaneSource(root=str(FLIGHTGEAR)).jobs(seed=0, scenes=400, test_fraction=0.2)
    key = {j.name: j.params["model"].split("/")[0] for j in jobs}
    train = {key[j.name] for j in jobs if j.split == "train"}
    test = {key[j.name] for j in jobs if j.split == "test"}
    assert train and test and not train & test
    assert sum(j.split == "test" for j in jobs) == 80


def test_cameras_look_at_the_origin_from_the_upper_hemisphere():
    ranges = CameraRanges(elevation_deg=(10, 60), radius=(2.7, 3.3), fov_deg=(40, 50))
    for c2w, fov in sample_views(np.random.default_rng(0), 50, ranges):
        pos = c2w[:3, 3]
        r = np.linalg.norm(pos)
        assert 2.7 - 1e-4 <= r <= 3.3 + 1e-4
        assert 10 - 1e-3 <= math.degrees(math.asin(pos[2] / r)) <= 60 + 1e-3
        assert math.radians(40) - 1e-6 <= fov <= math.radians(50) + 1e-6
        u, v = project(c2w, fov, 64, (0.0, 0.0, 0.0))
        assert abs(u - 32) < 1e-3 and abs(v - 32) < 1e-3
        # Everything within the placement radius stays in frame.
        for corner in (np.array([0.85, 0, 0]), np.array([0, 0.85, 0]), np.array([0, 0, -0.85])):
            u, v = project(c2w, fov, 64, corner)
            assert 0 <= u <= 64 and 0 <= v <= 64


def test_importing_rdiff_does_not_import_bpy():
    code = "import sys, rdiff, rdiff.cli, rdiff.data.blender.dataset; print('bpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_missing_bpy_gives_the_install_command(monkeypatch):
    import importlib

    from rdiff.data import blender

    real = importlib.import_module

    def fake(name, *a, **k):
        if name == "bpy":
            raise ImportError("No module named 'bpy'")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(blender.BlenderUnavailableError, match="requirements-data.txt"):
        blender.import_bpy()


def test_empty_mesh_folder_is_a_clear_error(tmp_path, capsys):
    from rdiff.cli import main
    from rdiff.data.blender.dataset import generate
    from rdiff.data.blender.meshes import MeshFolderSource

    (tmp_path / "meshes").mkdir()
    (tmp_path / "meshes" / "notes.txt").write_text("no meshes here")
    with pytest.raises(ValueError, match="no meshes"):
        generate(MeshFolderSource(folder=str(tmp_path / "meshes")), tmp_path / "out", _opts())
    assert not (tmp_path / "out").exists()
    assert main(["data", "meshes", str(tmp_path / "meshes"), "--out", str(tmp_path / "out")]) == 2
    assert "error: no meshes" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# End-to-end renders


def _mesh_folder(root: Path) -> Path:
    import trimesh

    root.mkdir(parents=True, exist_ok=True)
    trimesh.creation.icosphere(subdivisions=2, radius=0.5).export(root / "ball.obj")
    trimesh.creation.box(extents=(1.0, 0.6, 1.6)).export(root / "block.glb")
    return root


def _check_dataset(out: Path, size: int, centre_of=lambda attrs: (0.0, 0.0, 0.0), tol: float = 0.25,
                   centred: bool = True) -> dict:
    """Shapes, masks, centring and the loader, for a rendered dataset folder; returns scenes.json."""
    summary = json.loads((out / "scenes.json").read_text())
    attrs = {s["scene"]: s for s in summary["scenes"]}
    assert (out / "LICENSE_DATA.md").is_file() and (out / "dataset.json").is_file()
    n_frames = 0
    for split in ("train", "test"):
        if not (out / split / "transforms.json").is_file():
            continue
        frames = load_transforms(out / split)
        assert frames and load_transforms(out / f"transforms_{split}.json")[0].scene == frames[0].scene
        n_frames += len(frames)
        for fr in frames:
            assert fr.image.shape == (size, size, 3) and fr.mask.shape == (size, size)
            assert set(np.unique(fr.mask)) <= {0, MASK_SHADOW, MASK_OBJECT}
            obj = fr.mask == MASK_OBJECT
            assert obj.sum() >= 4, f"{fr.file_path}: object too small or missing"
            assert not (obj[0].any() or obj[-1].any() or obj[:, 0].any() or obj[:, -1].any()), "object clipped"
            # The object centre projects near the image centre and onto the object's mask region.
            u, v = project(fr.c2w, fr.fov_x, size, centre_of(attrs[fr.scene]))
            if centred:
                assert abs(u - size / 2) < 1.0 and abs(v - size / 2) < 1.0
            ys, xs = np.nonzero(obj)
            assert abs(xs.mean() + 0.5 - u) < tol * size and abs(ys.mean() + 0.5 - v) < tol * size
    assert n_frames == sum(len(load_transforms(out / s / "transforms.json")) for s in ("train", "test")
                           if (out / s / "transforms.json").is_file())
    return summary


@needs_bpy
def test_mesh_folder_end_to_end_with_an_unreadable_mesh_skipped(tmp_path):
    from rdiff.data.blender.dataset import generate
    from rdiff.data.blender.meshes import MeshFolderSource

    folder = _mesh_folder(tmp_path / "meshes")
    (folder / "broken.ply").write_text("ply\nformat ascii 1.0\nelement vertex 2\nend_header\n")
    (folder / "empty.obj").write_text("# nothing\n")
    summary = generate(MeshFolderSource(folder=str(folder)), tmp_path / "out", _opts(scenes=None, test_fraction=0.3))
    _check_dataset(tmp_path / "out", 24)
    assert summary["rendered"] == 2 and summary["skipped_count"] == 2
    assert {s["mesh"] for s in summary["skipped"]} == {"broken.ply", "empty.obj"}
    assert all(s["skipped"] for s in summary["skipped"])
    extents = [s["extent"] for s in summary["scenes"]]
    assert all(abs(0.5 * np.linalg.norm(e) - 0.85) < 1e-3 for e in extents)  # normalised half-diagonal


@needs_bpy
def test_masks_agree_with_an_object_free_render(tmp_path):
    """Pixels labelled 0 look as without the object, shadow pixels are darker, object pixels differ."""
    from rdiff.data.blender.config import DARK_RED
    from rdiff.data.blender.dataset import SceneJob
    from rdiff.data.blender.meshes import MeshFolderSource
    from rdiff.data.blender.render import linear_to_srgb, render_once, render_views

    source = MeshFolderSource(folder=str(_mesh_folder(tmp_path / "meshes")), style=DARK_RED)
    settings = RenderSettings(size=32, samples=8, denoise=False)
    built = source.build(SceneJob("train", 0, "train_00000", {"mesh": "block.glb"}), None, settings, tmp_path / "w")
    views = sample_views(np.random.default_rng(3), 3, CameraRanges())
    frames = render_views(built.handles, views, built.objects, settings, "train_00000")
    for o in built.objects:
        o.hide_render = True
    luma = np.array([0.2126, 0.7152, 0.0722], np.float32)
    for k, (fr, (c2w, fov)) in enumerate(zip(frames, views)):
        ref = linear_to_srgb(render_once(built.handles, c2w, fov, k).linear)
        diff = np.abs(fr.image - ref).max(-1)
        obj, shadow, free = fr.mask == MASK_OBJECT, fr.mask == MASK_SHADOW, fr.mask == 0
        assert obj.sum() > 20 and shadow.sum() > 5
        assert diff[obj].mean() > 0.1
        # Only light bounced off the object changes unlabelled pixels, and only a little.
        assert diff[free].mean() < 0.02 and np.percentile(diff[free], 90) < 0.05
        assert (fr.image[shadow] @ luma).mean() < (ref[shadow] @ luma).mean() * 0.97


@needs_bpy
def test_renders_are_deterministic_resumable_and_parallel(tmp_path):
    from rdiff.data.blender.dataset import generate
    from rdiff.data.blender.meshes import MeshFolderSource

    source = MeshFolderSource(folder=str(_mesh_folder(tmp_path / "meshes")))
    opts = _opts(scenes=3, test_fraction=0.4)
    a, b = tmp_path / "a", tmp_path / "b"
    generate(source, a, opts)
    images = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(images) == 2 * 3 * 2  # images and masks of 3 scenes x 2 views
    # Resume: drop one finished scene, leave a half-written one behind; the second run renders only that scene.
    scene_dirs = sorted((a / "train" / "scenes").iterdir())
    kept, dropped = scene_dirs[0], scene_dirs[-1]
    stamp = (kept / "images" / "00000.png").stat().st_mtime_ns
    import shutil

    shutil.rmtree(dropped)
    (a / "train" / "scenes" / f".{dropped.name}-partial").mkdir()
    # The same settings in 2 worker processes (the pool path) give the same bytes.
    generate(source, a, _opts(scenes=3, test_fraction=0.4, workers=2))
    assert (kept / "images" / "00000.png").stat().st_mtime_ns == stamp
    assert sorted(p.relative_to(a) for p in a.rglob("*.png")) == images
    generate(source, b, opts)
    for rel in images:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert json.loads((a / "train" / "transforms.json").read_text()) == json.loads(
        (b / "train" / "transforms.json").read_text())
    with pytest.raises(ValueError, match="other settings"):
        generate(source, a, _opts(scenes=3, test_fraction=0.4, render=RenderSettings(size=16, samples=4)))


@needs_bpy
def test_cli_renders_a_glb_folder_and_exits_cleanly(tmp_path):
    """A separate process: rdiff data meshes on a GLB exits with 0 (Blender's own glTF add-on would segfault
    at exit, so GLB goes through trimesh and the OBJ importer)."""
    import trimesh

    (tmp_path / "m").mkdir()
    trimesh.creation.box(extents=(1.0, 0.6, 1.6)).export(tmp_path / "m" / "block.glb")
    cmd = [sys.executable, "-m", "rdiff", "data", "meshes", str(tmp_path / "m"), "--out", str(tmp_path / "out"),
           "--views", "1", "--test-fraction", "0", "--size", "16", "--samples", "2", "--no-progress"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "wrote 1 train and 0 test scenes" in run.stdout
    assert len(load_transforms(tmp_path / "out" / "train")) == 1


@needs_bpy
def test_clevr1_blender_end_to_end(tmp_path):
    from rdiff.cli import main

    out = tmp_path / "clevr"
    assert main(["data", "clevr1-blender", "--out", str(out), "--scenes", "2", "--views", "2", "--test-views", "2",
                 "--test-fraction", "0.5", "--size", "24", "--samples", "4", "--no-progress"]) == 0
    summary = _check_dataset(out, 24, centre_of=lambda s: s["centre"], centred=False)
    assert (out / "LICENSE").read_text().startswith("BSD License")
    for s in summary["scenes"]:
        assert s["shape"] in ("cube", "sphere", "cylinder") and s["material"] in ("rubber", "metal")
    # Rubber is not black (its Normal input is wired): the object is far from black on average.
    frames = load_transforms(out / "train") + load_transforms(out / "test")
    for fr in frames:
        assert fr.image[fr.mask == MASK_OBJECT].mean() > 0.05


@needs_bpy
@needs_flightgear
def test_planes_end_to_end(tmp_path):
    from rdiff.data.blender.dataset import generate
    from rdiff.data.blender.planes import PlaneSource

    summary = generate(PlaneSource(root=str(FLIGHTGEAR)), tmp_path / "planes", _opts(render=RenderSettings(
        size=32, samples=4)))
    _check_dataset(tmp_path / "planes", 32, tol=0.3)
    for s in summary["scenes"]:
        assert s["model_file"].endswith(".ac") and 0.8 <= s["scale_jitter"] <= 1.0
    assert "GPL-2.0-or-later" in (tmp_path / "planes" / "LICENSE_DATA.md").read_text()


@needs_bpy
def test_chairs_end_to_end(tmp_path):
    if not _have("infinigen.assets.objects.seating.chairs"):
        pytest.skip("infinigen is not installed (pip install --no-deps -r requirements-infinigen.txt)")
    from rdiff.cli import main

    out = tmp_path / "chairs"
    assert main(["data", "chairs", "--out", str(out), "--scenes", "2", "--views", "2", "--test-views", "2",
                 "--test-fraction", "0.5", "--size", "32", "--samples", "4", "--no-progress"]) == 0
    summary = _check_dataset(out, 32, tol=0.3)
    seeds = [s["factory_seed"] for s in summary["scenes"]]
    assert len(set(seeds)) == 2 and {s % 2 for s in seeds} == {0, 1}  # train even, test odd: never shared


@needs_bpy
def test_bench_times_a_source():
    from rdiff.data.blender.bench import bench

    result = bench("clevr1-blender", scenes=1, views=1, settings=TINY)
    assert result["scenes"] == 1 and 0 < result["per_image_s_without"] <= result["per_image_s_with_shadow_labels"] * 2


@needs_bpy
def test_contact_sheet(tmp_path):
    from PIL import Image

    from rdiff.data.blender.dataset import generate
    from rdiff.data.blender.meshes import MeshFolderSource
    from rdiff.data.blender.sheet import contact_sheet

    generate(MeshFolderSource(folder=str(_mesh_folder(tmp_path / "m"))), tmp_path / "out",
             _opts(scenes=2, shadows=False))
    with Image.open(contact_sheet(tmp_path / "out", tmp_path / "sheet.png", n=2, cols=2, masks=2)) as im:
        assert im.size == (2 * (48 + 2) + 2, 2 * (48 + 2) + 2)

