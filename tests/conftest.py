"""Shared fixtures. Tests run single-threaded: on a 2-core machine this avoids OpenMP contention."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the network
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
import torch

from rdiff import RenderDiffusion, RenderDiffusionConfig

torch.set_num_threads(1)

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (apt-get install chromium), driven through playwright
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def tiny_config(**overrides) -> RenderDiffusionConfig:
    """A model small enough to train for a few hundred steps inside a unit test."""
    base = dict(
        image_size=16, triplane_size=16, triplane_channels=8, base_channels=16, channel_mults=(1, 2),
        decoder_hidden=32, decoder_layers=1, coarse_samples=12, fine_samples=12, timesteps=100,
    )
    base.update(overrides)
    return RenderDiffusionConfig(**base)


@pytest.fixture
def tiny_model() -> RenderDiffusion:
    torch.manual_seed(0)
    return RenderDiffusion(tiny_config()).eval()


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model):
    """A saved tiny model folder (config.json + model.safetensors)."""
    folder = tmp_path / "tiny-ckpt"
    tiny_model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (playwright), shared by a test module; skips where Chromium or playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()
