"""The app's model picker: shipped models by name; choosing one switches the cameras and the example galleries.

The app serves the tiny shipped models of ``tests/app_server.py`` (clevr1-32 with the CLEVR examples,
chairs-64 with one example and other default cameras, plain-16 without examples).
"""

from __future__ import annotations

import math

import pytest
from PIL import Image

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from app_server import CHAIR_EXAMPLE, CHAIR_SUMMARY, SHIPPED, make_shipped, running_app  # noqa: E402
from gradio_client import Client  # noqa: E402

from demo.app import example_values, gallery_update  # noqa: E402
from demo.examples import load_examples  # noqa: E402

CAMERA_FIELDS = ("default_azimuth", "default_elevation", "default_radius", "default_fov_x")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    return make_shipped(tmp_path_factory.mktemp("shipped"))


@pytest.fixture(scope="module")
def server(shipped, tmp_path_factory):
    weights, assets = shipped
    with running_app(tmp_path_factory.mktemp("app"), default="clevr1-32", weights=weights, assets=assets) as srv:
        yield srv


@pytest.fixture
def client(server, tmp_path):
    """A fresh session per test (the examples shown are per session)."""
    return Client(server.url, verbose=False, download_files=str(tmp_path))


def cameras(name: str) -> list[float]:
    """The camera sliders' values for the tiny shipped model ``name`` (as CameraSliders.defaults)."""
    from conftest import tiny_config

    c = tiny_config(**SHIPPED[name])
    return [c.default_azimuth % 360, c.default_elevation, c.default_radius, round(math.degrees(c.default_fov_x), 1)]


def by_elem_id(app) -> dict:
    return {getattr(b, "elem_id", None): b for b in app.blocks.values()}


def titles(update: dict) -> list[str]:
    return [g["caption"] for g in update["value"] or []]


def test_picker_lists_the_shipped_models_by_name(server, shipped):
    weights, _ = shipped
    blocks = by_elem_id(server.app)
    picker = blocks["model-picker"]
    assert isinstance(picker, gr.Dropdown) and picker.label == "Model" and picker.allow_custom_value
    assert [label for label, _ in picker.choices] == [value for _, value in picker.choices] == list(SHIPPED)
    assert picker.value == "clevr1-32"
    assert "**Model:** `clevr1-32`" in blocks["model-status"].value and str(weights) not in blocks["model-status"].value
    assert "Trained on" not in blocks["model-status"].value  # its (tiny) folder has no model card
    clevr = [e.title for e in load_examples()]
    for tab in ("reconstruct", "inpaint"):
        gallery = blocks[f"{tab}-examples"]
        assert gallery.visible and [g["caption"] for g in gallery.value] == clevr


def test_choosing_a_model_sets_cameras_status_and_examples(client, shipped):
    weights, _ = shipped
    out = client.predict("chairs-64", api_name="/load_model")
    assert len(out) == 10  # status, 2 x 4 camera sliders, t_r: the examples' gr.State is not in the API
    assert "**Model:** `chairs-64`" in out[0] and str(weights) not in out[0] and "T = 50" in out[0]
    assert f"**Trained on:** {CHAIR_SUMMARY}." in out[0]
    assert list(out[1:5]) == list(out[5:9]) == pytest.approx(cameras("chairs-64"))
    assert out[-1]["maximum"] == 49 and out[-1]["value"] == 0
    rec, inp = client.predict(api_name="/model_examples")
    for gallery in (rec, inp):
        assert gallery["visible"] is True and titles(gallery) == [CHAIR_EXAMPLE["title"]]
        with Image.open(gallery["value"][0]["image"]) as im:  # the chair example's image (downloaded)
            assert im.size == (64, 64) and im.convert("RGB").getpixel((5, 5)) == (150, 40, 40)

    out = client.predict("plain-16", api_name="/load_model")  # a model without examples: galleries hidden
    assert "Trained on" not in out[0]  # nor a model card
    assert list(out[1:5]) == pytest.approx(cameras("plain-16")) and out[-1]["maximum"] == 79
    rec, inp = client.predict(api_name="/model_examples")
    assert rec["visible"] is False and inp["visible"] is False and not rec["value"]

    out = client.predict(str(weights / "clevr1-32"), api_name="/load_model")  # by folder: shown by name
    assert "**Model:** `clevr1-32`" in out[0] and str(weights) not in out[0]
    assert list(out[1:5]) == pytest.approx(cameras("clevr1-32"))
    rec, _ = client.predict(api_name="/model_examples")
    assert rec["visible"] is True and titles(rec) == [e.title for e in load_examples()]


def test_hub_id_falls_back_to_the_default_and_its_examples(client):
    client.predict("plain-16", api_name="/load_model")
    out = client.predict("nobody/no-such-rdiff-model", api_name="/load_model")  # offline in tests
    assert "Could not load 'nobody/no-such-rdiff-model'" in out[0] and "**Model:** `clevr1-32`" in out[0]
    rec, _ = client.predict(api_name="/model_examples")  # the loaded (fallback) model's examples
    assert rec["visible"] is True and titles(rec) == [e.title for e in load_examples()]


def test_a_users_folder_has_no_examples(client, server):
    out = client.predict(str(server.checkpoint), api_name="/load_model")
    assert f"`{server.checkpoint}`" in out[0]
    rec, inp = client.predict(api_name="/model_examples")
    assert rec["visible"] is False and inp["visible"] is False


def test_examples_are_per_session(server, tmp_path):
    a, b = (Client(server.url, verbose=False, download_files=str(tmp_path)) for _ in range(2))
    a.predict("chairs-64", api_name="/load_model")
    b.predict("plain-16", api_name="/load_model")
    assert titles(a.predict(api_name="/model_examples")[0]) == [CHAIR_EXAMPLE["title"]]
    assert b.predict(api_name="/model_examples")[0]["visible"] is False


def test_failed_load_keeps_the_examples(client, tmp_path):
    client.predict("chairs-64", api_name="/load_model")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(gradio_client.exceptions.AppError, match="not an rdiff checkpoint folder"):
        client.predict(str(broken), api_name="/load_model")
    assert titles(client.predict(api_name="/model_examples")[0]) == [CHAIR_EXAMPLE["title"]]


def test_clicking_an_example_uses_the_current_models_examples(shipped):
    _, assets = shipped
    chairs, clevr = load_examples("chairs-64", assets), load_examples("clevr1-32", assets)
    image, *camera = example_values(chairs, 0)
    assert image == str(assets / "chairs-64" / "chair.png")
    assert camera == [CHAIR_EXAMPLE[k] for k in ("azimuth", "elevation", "radius", "fov")]
    assert example_values(clevr, 2) == (str(clevr[2].path()), *clevr[2].camera_row())
    for examples, index in ((chairs, 1), ([], 0), (None, 0), (chairs, None)):  # stale click: nothing changes
        assert all(isinstance(v, dict) and v.get("__type__") == "update" and len(v) == 1
                   for v in example_values(examples, index))
    assert gallery_update([])["visible"] is False and gallery_update(chairs)["visible"] is True


def test_gallery_click_is_wired_to_the_session_examples(server):
    """The galleries' select events read the session's examples (gr.State), not a list fixed at build time."""
    blocks = by_elem_id(server.app)
    state = next(b for b in server.app.blocks.values() if isinstance(b, gr.State) and isinstance(b.value, list)
                 and b.value and hasattr(b.value[0], "camera_row"))
    for tab, image_id in (("reconstruct", "reconstruct-input"), ("inpaint", "inpaint-editor")):
        gallery = blocks[f"{tab}-examples"]
        (fn,) = [fn for fn in server.app.fns.values() if (gallery._id, "select") in fn.targets]
        assert [c._id for c in fn.inputs] == [state._id]
        assert fn.outputs[0]._id == blocks[image_id]._id and len(fn.outputs) == 5
