"""scripts/make_release.py: a trained run becomes a shipped model folder with a card that loads and says what it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import tiny_config
from huggingface_hub.repocard import metadata_load
from PIL import Image

from rdiff import RenderDiffusion
from rdiff.data.clevr1 import generate_clevr1
from rdiff.hub import model_summary

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_release.py"


def test_release_folder_card_and_sheets(tmp_path):
    import torch

    data = tmp_path / "data"
    generate_clevr1(data, scenes=6, views=3, size=16, seed=1, test_fraction=0.34, progress=False)
    torch.manual_seed(0)
    RenderDiffusion(tiny_config()).eval().save_pretrained(tmp_path / "run" / "model")
    training = tmp_path / "training.md"
    training.write_text("- trained for a test")
    out = tmp_path / "scratch-folder"
    subprocess.run([sys.executable, str(SCRIPT), "--run", str(tmp_path / "run"), "--data", str(data / "test"),
                    "--out", str(out), "--name", "toy-16", "--training", str(training), "--steps", "1",
                    "--samples", "20", "--sample-steps", "2", "--sample-scale", "1"],
                   check=True, capture_output=True, timeout=600)

    assert RenderDiffusion.from_pretrained(str(out)).config.image_size == 16  # the run's model, loadable
    card = (out / "README.md").read_text()
    meta = metadata_load(out / "README.md")
    assert meta["library_name"] == "rdiff" and meta["license"] == "mit"
    summary = model_summary(out)  # the app's line on what the model knows: the CLEVR1 data, parsed from YAML
    assert summary and summary.startswith("one CLEVR object") and "16x16 pixels" in summary
    assert "--model toy-16" in card and "scratch-folder" not in card  # named by --name, not the scratch folder
    assert "- trained for a test" in card
    # 20 samples in batches of 16: two batches, seeds 0 and 16, as the card says
    assert "batches of 16, their noise drawn from\nseeds 0, 16)" in card
    with Image.open(out / "samples_64.png") as sheet:
        assert sheet.size == (5 * 16, 5 * 16)  # a 5 x 5 grid of 16 px samples
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"0", "40"} and "copy_input" in metrics["baselines"]
    assert (out / "orbit_examples.png").is_file()
