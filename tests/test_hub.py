"""Shipped models by name: listing, name resolution (load_model, the CLI, app.py) and per-model examples."""

from __future__ import annotations

import json
import re

import pytest
from app_server import CHAIR_EXAMPLE, SHIPPED, make_shipped
from PIL import Image

import rdiff.hub as hub
from demo.examples import ASSETS, Example, examples_folder, load_examples, make_examples
from demo.models import ModelRegistry
from rdiff.cli import main
from rdiff.hub import (
    DEFAULT_MODEL,
    SHIPPED_WEIGHTS,
    load_model,
    model_summary,
    resolve_source,
    shipped_folder,
    shipped_models,
    shipped_name,
)
from rdiff.model import CheckpointError


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """``(weights, assets)`` with the tiny models clevr1-32, chairs-64 and plain-16 (tests/app_server.py)."""
    return make_shipped(tmp_path_factory.mktemp("shipped"))


# ---------------------------------------------------------------------------------------- listing


def test_shipped_models_lists_folders_with_a_config_default_first(shipped, tmp_path):
    weights, _ = shipped
    assert shipped_models(weights) == ["clevr1-32", "chairs-64", "plain-16"]  # not-a-model has no config.json
    (tmp_path / "b-model").mkdir()
    (tmp_path / "b-model" / "config.json").write_text("{}")
    (tmp_path / "a-model").mkdir()
    (tmp_path / "a-model" / "config.json").write_text("{}")
    (tmp_path / "config.json").write_text("{}")  # a file, not a model folder
    assert shipped_models(tmp_path) == ["a-model", "b-model"]  # no default among them: sorted
    assert shipped_models(tmp_path / "missing") == []


def test_the_repository_ships_the_default_model():
    names = shipped_models()
    assert names[0] == DEFAULT_MODEL == "clevr1-32"
    assert shipped_folder(DEFAULT_MODEL) == SHIPPED_WEIGHTS


def test_model_summary_comes_from_the_model_cards_front_matter(shipped, tmp_path):
    from app_server import CHAIR_SUMMARY

    weights, _ = shipped
    assert model_summary("chairs-64", weights) == CHAIR_SUMMARY  # by name
    assert model_summary(weights / "chairs-64") == CHAIR_SUMMARY  # by folder
    assert model_summary("plain-16", weights) is None  # no card
    assert model_summary("nobody/some-model", weights) is None  # a Hub id: no local card (none is fetched)
    assert model_summary("", weights) is None and model_summary("  ") is None
    card = tmp_path / "README.md"
    card.write_text("---\nlicense: mit\n---\n# no summary\n")
    assert model_summary(tmp_path) is None
    card.write_text("---\nsummary: [unclosed\n---\n")  # broken YAML: nothing usable, no error
    assert model_summary(tmp_path) is None
    card.write_text('---\nsummary: "  two\\n  lines  "\n---\n')
    assert model_summary(tmp_path) == "two lines"
    card.write_text("---\nsummary: 7\n---\n")  # not text
    assert model_summary(tmp_path) is None


def test_every_model_in_the_repository_says_what_it_was_trained_on():
    for name in shipped_models():
        summary = model_summary(name)
        assert summary and re.search(r"\d+x\d+ pixels", summary) and "cameras" in summary, name  # data, size, cameras


def test_names_resolve_to_folders_and_other_sources_are_unchanged(shipped, tmp_path):
    weights, _ = shipped
    assert resolve_source("chairs-64", weights) == str(weights / "chairs-64")
    assert resolve_source(" chairs-64 ", weights) == str(weights / "chairs-64")
    for source in ("user/chairs-64", "no-such-model", "./chairs-64", "/abs/chairs-64", "~/chairs-64", "..", ""):
        assert resolve_source(source, weights) == source
    assert resolve_source("not-a-model", weights) == "not-a-model"  # no config.json: not shipped
    assert shipped_name("chairs-64", weights) == "chairs-64"
    assert shipped_name(weights / "chairs-64", weights) == "chairs-64"  # its folder, by path
    assert shipped_name(str(weights / "chairs-64") + "/", weights) == "chairs-64"
    assert shipped_name("user/chairs-64", weights) is None
    assert shipped_name(tmp_path, weights) is None and shipped_name(None, weights) is None


# ------------------------------------------------------------------------------------ load_model


def test_load_model_by_name(shipped):
    weights, _ = shipped
    loaded = load_model("chairs-64", fallback=None, weights=weights)
    assert loaded.source == str(weights / "chairs-64") and loaded.name == loaded.label == "chairs-64"
    assert loaded.notice is None and loaded.model.config.default_azimuth == 200.0
    loaded = load_model(weights / "plain-16", fallback=None, weights=weights)  # a path still works
    assert loaded.name == "plain-16" and loaded.model.config.timesteps == 80


def test_load_model_by_name_from_the_repository():
    loaded = load_model(DEFAULT_MODEL, fallback=None)
    assert loaded.source == str(SHIPPED_WEIGHTS) and loaded.name == DEFAULT_MODEL
    assert loaded.model.config.image_size == 32


def test_unknown_name_is_a_hub_id_and_falls_back_to_a_named_default(shipped):
    weights, _ = shipped
    loaded = load_model("no-such-model", fallback="chairs-64", weights=weights)  # offline in tests
    assert loaded.notice.startswith("Could not load 'no-such-model'") and "chairs-64/" in loaded.notice
    assert loaded.name == "chairs-64" and loaded.source == str(weights / "chairs-64")
    with pytest.raises(CheckpointError, match="could not load model 'no-such-model'"):
        load_model("no-such-model", fallback=None, weights=weights)


def test_user_folder_has_no_name(tiny_checkpoint, shipped):
    weights, _ = shipped
    loaded = load_model(tiny_checkpoint, fallback=None, weights=weights)
    assert loaded.name is None and loaded.label == str(tiny_checkpoint)


def test_registry_caches_a_shipped_model_under_its_name(shipped):
    weights, _ = shipped
    registry = ModelRegistry("chairs-64", device="cpu", weights=weights)
    assert registry.default_source == "chairs-64" and registry.shipped() == list(SHIPPED)
    assert registry.key("") == registry.key(str(weights / "chairs-64")) == "chairs-64"
    assert registry.get(str(weights / "chairs-64")) is registry.get("chairs-64") is registry.get(None)
    assert ModelRegistry(str(weights / "plain-16"), weights=weights).default_source == "plain-16"
    assert ModelRegistry().default_source == DEFAULT_MODEL


# --------------------------------------------------------------------------------------- examples


def test_examples_per_model(shipped):
    _, assets = shipped
    clevr = load_examples("clevr1-32", assets)
    assert [e.title for e in clevr] == [e.title for e in load_examples()]  # the repository's own
    assert all(e.path().parent == assets / "clevr1-32" for e in clevr)
    (chair,) = load_examples("chairs-64", assets)
    assert chair.path() == assets / "chairs-64" / "chair.png" and chair.path().is_file()
    assert chair.camera_row() == [CHAIR_EXAMPLE[k] for k in ("azimuth", "elevation", "radius", "fov")]
    for model in ("plain-16", "user/model", "/some/folder", "../assets", "", None):  # no examples
        assert load_examples(model, assets) == []
    assert examples_folder("chairs-64", assets) == assets / "chairs-64"


def test_example_whose_image_is_missing_is_skipped(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    entries = [dict(CHAIR_EXAMPLE, file="missing.png"), CHAIR_EXAMPLE]
    (folder / "examples.json").write_text(json.dumps({"examples": entries}))
    Image.new("RGB", (8, 8)).save(folder / "chair.png")
    assert [e.file for e in load_examples("m", tmp_path)] == ["chair.png"]


def test_repository_examples_live_in_the_default_models_folder():
    examples = load_examples()
    assert examples and all(e.path().parent == ASSETS / DEFAULT_MODEL for e in examples)
    assert not (ASSETS / "examples.json").exists()  # moved to assets/clevr1-32/
    assert load_examples(DEFAULT_MODEL) == examples


def test_make_examples_rewrites_the_shipped_clevr_examples(tmp_path):
    made = make_examples(tmp_path, size=16)
    assert [e.to_json() for e in made] == [e.to_json() for e in load_examples()]
    doc = json.loads((tmp_path / "examples.json").read_text())
    assert "folder" not in doc["examples"][0]
    assert all(isinstance(e, Example) and e.path().is_file() for e in made)


# -------------------------------------------------------------------------------------------- CLI


def test_cli_help_lists_the_shipped_models(capsys):
    for command in ("reconstruct", "inpaint", "generate", "eval"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        assert "--model MODEL, --checkpoint MODEL" in out and "shipped model (clevr1-32" in out


def test_cli_model_by_name(shipped, tmp_path, monkeypatch, capsys):
    weights, _ = shipped
    monkeypatch.setattr(hub, "WEIGHTS_DIR", weights)
    out = tmp_path / "out"
    assert main(["generate", "--model", "chairs-64", "--out", str(out), "--steps", "1", "--frames", "2",
                 "--mesh-resolution", "16"]) == 0
    assert Image.open(out / "generated_s0.png").size == (16, 16)
    assert "Could not load" not in capsys.readouterr().err  # the name was found, no fallback
    photo = out / "generated_s0.png"
    assert main(["reconstruct", str(photo), "--checkpoint", "plain-16", "--out", str(out / "r"), "--steps", "1",
                 "--frames", "2", "--mesh-resolution", "16"]) == 0
    assert (out / "r" / "generated_s0_orbit.mp4").is_file()


def test_cli_real_shipped_model_by_name(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "--model", DEFAULT_MODEL, "--out", str(out), "--steps", "1", "--frames", "2",
                 "--mesh-resolution", "16"]) == 0
    assert Image.open(out / "generated_s0.png").size == (32, 32)
    assert "Could not load" not in capsys.readouterr().err


def test_app_py_model_by_name(shipped, monkeypatch):
    import app as app_py

    weights, _ = shipped
    monkeypatch.setattr(hub, "WEIGHTS_DIR", weights)
    launched = []
    monkeypatch.setattr(app_py, "launch", lambda blocks, **_: launched.append(blocks))
    app_py.main(["--model", "chairs-64"])
    (blocks,) = launched
    assert blocks.rdiff_registry.default_source == "chairs-64"
    by_id = {getattr(b, "elem_id", None): b for b in blocks.blocks.values()}
    picker, status = by_id["model-picker"], by_id["model-status"]
    assert picker.value == "chairs-64" and [v for _, v in picker.choices] == list(SHIPPED)
    assert "**Model:** `chairs-64`" in status.value and str(weights) not in status.value
    azimuth = next(b for b in blocks.blocks.values() if getattr(b, "label", None) == "Azimuth (°)")
    assert azimuth.value == 200.0
    assert by_id["reconstruct-examples"].visible == bool(load_examples("chairs-64"))  # the repository's assets/
    blocks.close()
