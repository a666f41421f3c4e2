"""The shipped training configs (configs/*.toml) load, and a fine-tune's init_from is accepted by its model."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdiff import RenderDiffusion
from rdiff.training import load_train_config
from rdiff.training.loop import load_init_weights

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))


def test_there_are_configs():
    assert {p.stem for p in CONFIGS} >= {"clevr1", "chairs64", "planes64"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_its_init_from_fits(path: Path):
    cfg = load_train_config(path)
    assert cfg.model.image_size in (32, 64) and cfg.batch_size > 0
    if not cfg.init_from:
        return
    source = ROOT / cfg.init_from
    assert source.is_dir(), f"{path.name}: init_from {cfg.init_from} is not in the repository"
    start = RenderDiffusion.from_pretrained(str(source))
    model = RenderDiffusion(cfg.model)
    load_init_weights(model, start, cfg.init_from)  # raises on a config or weight mismatch
    mine, theirs = model.state_dict(), start.state_dict()
    if cfg.model.background == "ray" and start.config.background != "ray":
        theirs.pop("renderer.background_logit", None)  # replaced by the per-ray background (same colour at first)
    assert set(theirs) <= set(mine)
    assert all(mine[k].equal(theirs[k]) for k in theirs)
