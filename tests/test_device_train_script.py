"""scripts/device_train.sh: train for a time, bring back a split portable checkpoint, join it, continue it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from rdiff.data.clevr1 import generate_clevr1

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "device_train.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("split") is None,
                                reason="needs bash and coreutils split")

CONFIG = """data = "{data}"
out_dir = "unused"
batch_size = 4
rays_per_image = 64
novel_view_weight = 1.0
object_ray_fraction = 0.5
max_steps = {steps}
warmup_steps = 2
checkpoint_every = 100
sample_every = 2
threads = 1
[model]
image_size = 16
triplane_size = 16
triplane_channels = 4
base_channels = 8
channel_mults = [1, 2]
coarse_samples = 8
fine_samples = 8
"""


def _run(args: list[str], out: Path, run: Path, checkpoints: Path) -> str:
    env = dict(os.environ, OUT=str(out), RDIFF_DEVICE_RUN=str(run), RDIFF_CHECKPOINTS=str(checkpoints))
    done = subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.timeout(300)
def test_device_train_round_trip(tmp_path):
    data = tmp_path / "data"
    generate_clevr1(data, scenes=4, views=3, size=16, seed=3, test_fraction=0.25, progress=False)
    name = "tiny"
    committed = tmp_path / "checkpoints"
    config = tmp_path / f"{name}.toml"
    config.write_text(CONFIG.format(data=data / "train", steps=3))
    out = tmp_path / "out"
    assert "step 3 images 12" in _run([str(config), "5"], out, tmp_path / "run1", committed)
    parts = sorted(p.name for p in (out / name).iterdir())
    assert parts == ["ema.safetensors.part-aa", "model.safetensors.part-aa", "state.json.part-aa"]
    assert (out / "log.jsonl").is_file() and (out / "samples_last.png").is_file()
    _run(["--join", str(out / name)], out, tmp_path / "unused", committed)
    weights = load_file(str(out / name / "ema.safetensors"))
    assert weights and json.loads((out / name / "state.json").read_text())["step"] == 3
    # The next call continues the committed checkpoint (checkpoints/<config name>/).
    shutil.copytree(out / name, committed / name)
    config.write_text(CONFIG.format(data=data / "train", steps=5))
    assert "step 5 images 20" in _run([str(config), "5"], tmp_path / "out2", tmp_path / "run2", committed)
