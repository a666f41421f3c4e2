"""scripts/dataset_cache.py: a dataset packed to JPEG + PNG masks comes back loadable, close and complete."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from rdiff.data import load_transforms
from rdiff.data.clevr1 import generate_clevr1

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "dataset_cache.py"


def test_pack_unpack_round_trip(tmp_path):
    data = tmp_path / "toy"
    generate_clevr1(data, scenes=4, views=3, size=32, seed=2, test_fraction=0.25, progress=False)
    hidden = data / "train" / ".scene-in-flight"  # an unfinished scene is left out
    hidden.mkdir()
    (hidden / "junk.png").write_bytes(b"x")
    archive = tmp_path / "cache" / "toy.tar.gz"
    for args in (["pack", str(data), str(archive)], ["unpack", str(archive), str(tmp_path / "back")]):
        subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True, timeout=120)
    back = tmp_path / "back"
    assert not (back / "train" / ".scene-in-flight").exists()
    assert not list(back.rglob("images/*.png")) and list(back.rglob("*.jpg"))
    for split in ("train", "test"):
        a, b = load_transforms(data / split), load_transforms(back / split)
        assert [f.scene for f in a] == [f.scene for f in b] and len(a) > 0
        mse = np.mean([((x.image - y.image) ** 2).mean() for x, y in zip(a, b)])
        assert 10 * np.log10(1 / mse) > 38  # JPEG q95 4:4:4
        assert all((x.mask == y.mask).all() and np.allclose(x.c2w, y.c2w) for x, y in zip(a, b))
    assert (back / "scenes.json").read_text() == (data / "scenes.json").read_text()


def test_unpack_refuses_paths_leaving_the_folder(tmp_path):
    import io
    import tarfile

    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("toy/ok.txt", "toy/../../escaped.txt"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    run = subprocess.run([sys.executable, str(SCRIPT), "unpack", str(archive), str(tmp_path / "out" / "data")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "OutsideDestinationError" in run.stderr
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "escaped.txt").exists()
