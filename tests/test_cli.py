"""The `rdiff` command line, run in-process through rdiff.cli.main."""

from __future__ import annotations

import json

import imageio_ffmpeg
import numpy as np
import pytest
import trimesh
from PIL import Image

from rdiff.cli import main


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def _outputs(out, stem):
    assert Image.open(out / f"{stem}.png").size == (16, 16)
    assert Image.open(out / f"{stem}_depth.png").mode == "RGB"
    reader = imageio_ffmpeg.read_frames(str(out / f"{stem}_orbit.mp4"))
    meta = next(reader)
    frames = list(reader)
    assert len(frames) == 6 and meta["size"][0] >= 16


def test_reconstruct_writes_image_depth_video(tiny_checkpoint, photo, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["reconstruct", str(photo), "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                 "--tr", "5", "--steps", "2", "--frames", "6", "--elevation", "30", "--azimuth", "10"])
    assert code == 0
    _outputs(out, "photo")
    assert "photo.png" in capsys.readouterr().out


def test_inpaint_and_generate(tiny_checkpoint, photo, tmp_path):
    mask = np.zeros((40, 50), np.uint8)
    mask[10:25, 15:35] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    assert main(["inpaint", str(photo), str(tmp_path / "mask.png"), "--checkpoint", str(tiny_checkpoint),
                 "--out", str(out), "--steps", "3", "--frames", "6"]) == 0
    _outputs(out, "photo_inpainted")  # the final scene's view
    assert Image.open(out / "photo_inpainted_composite.png").size == (16, 16)  # and the 2D composite
    assert main(["generate", "--n", "2", "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                 "--steps", "2", "--frames", "6", "--seed", "4"]) == 0
    _outputs(out, "generated_s4_00")
    _outputs(out, "generated_s4_01")
    assert not list(out.glob("generated_*_composite.png"))


def test_sampler_and_eta_options(tiny_checkpoint, tmp_path, capsys):
    from rdiff.cli import build_parser, sampler_from_args
    from rdiff.diffusion import DDIM, DDPM

    parse = build_parser().parse_args
    assert sampler_from_args(parse(["generate", "--eta", "0.5"]), "ddim") == DDIM(eta=0.5)
    assert sampler_from_args(parse(["generate"]), "ddim") == DDIM()
    assert sampler_from_args(parse(["generate", "--sampler", "ddpm"]), "ddim") == DDPM()
    with pytest.raises(ValueError, match="needs --sampler ddim"):
        sampler_from_args(parse(["generate", "--sampler", "ddpm", "--eta", "1"]), "ddim")
    with pytest.raises(ValueError, match="eta must be in"):
        sampler_from_args(parse(["generate", "--eta", "2"]), "ddim")
    images = {}
    for eta in ("0", "1"):  # the same seed: eta = 1 draws fresh noise each step, so the samples differ
        out = tmp_path / f"eta{eta}"
        assert main(["generate", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--steps", "3",
                     "--frames", "6", "--eta", eta]) == 0
        images[eta] = np.asarray(Image.open(out / "generated_s0.png"), dtype=int)
    assert np.abs(images["0"] - images["1"]).max() > 0
    assert main(["reconstruct", "x.png", "--checkpoint", str(tiny_checkpoint), "--sampler", "ddpm",
                 "--eta", "0.3"]) == 2
    assert "needs --sampler ddim" in capsys.readouterr().err


def test_mesh_export_formats(tiny_checkpoint, photo, tmp_path, monkeypatch):
    from rdiff.scene import Scene

    def blob_mesh(self, resolution=64, level=None, **_):  # a density blob so marching cubes has a surface
        axis = np.linspace(-1, 1, 24)
        x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
        from skimage.measure import marching_cubes

        v, f, _, _ = marching_cubes(10 * np.exp(-(x**2 + y**2 + z**2) * 8), level=5.0)
        return trimesh.Trimesh(v, f)

    monkeypatch.setattr(Scene, "mesh", blob_mesh)
    for fmt in ("glb", "obj", "ply"):
        out = tmp_path / fmt
        assert main(["reconstruct", str(photo), "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                     "--frames", "6", "--mesh-format", fmt]) == 0
        mesh = trimesh.load(out / f"photo.{fmt}", force="mesh")
        assert len(mesh.faces) > 100


def test_bad_inputs_exit_with_message(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["reconstruct", str(tmp_path / "notes.txt"), "--checkpoint", str(tiny_checkpoint),
                 "--out", str(tmp_path)]) == 2
    assert "not a readable image" in capsys.readouterr().err
    assert main(["reconstruct", str(tmp_path / "missing.png"), "--checkpoint", str(tiny_checkpoint)]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["reconstruct", str(tmp_path / "notes.txt"), "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_data_and_eval_commands(tiny_checkpoint, tmp_path, capsys):
    data = tmp_path / "clevr"
    assert main(["data", "clevr1", "--out", str(data), "--scenes", "3", "--views", "2", "--size", "16",
                 "--test-fraction", "0.34", "--no-progress"]) == 0
    assert (data / "train" / "transforms.json").exists() and (data / "test" / "transforms.json").exists()
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(data / "test"), "--tr", "0,3",
                 "--steps", "2", "--json", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert "psnr" in printed and "t_r" in printed
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert set(metrics) == {"0", "3"}
