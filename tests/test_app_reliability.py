"""Reliability and security of the app beyond the happy path (see docs/reliability.md).

Complements tests/test_app_api.py (bad image files, empty/full masks, t_r and batch slider limits,
unknown Hub id fallback), tests/test_model.py (truncated/garbage/NaN checkpoints, config mismatch,
pickle files never read) and tests/test_preprocess.py (property-based image/mask preprocessing):

* inputs those do not reach: unusual images in the Inpaint editor, mask layers of another size,
  step/resample/t_r values the sliders or the handlers refuse, a corrupt editor upload;
* tampered checkpoints (header and data bytes) and config/weights mismatch through the app;
* cancelling a running job (gradio_client ``job.cancel()``) and the Stop button free the worker;
* a failing job of one session never touches another session's cached scene;
* a full queue is refused with a clear message;
* no pickle is ever loaded (a booby-trapped pickle through the app; ``torch.load`` only with
  ``weights_only=True`` anywhere in the code base).

After every refused request a good request must still succeed.
"""

from __future__ import annotations

import ast
import json
import pickle
import re
import shutil
import struct
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

gr = pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

from app_server import running_app  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from gradio_client.utils import QueueError, Status  # noqa: E402

from demo.examples import load_examples  # noqa: E402
from demo.handlers import PANEL_FIELDS, Handlers  # noqa: E402
from demo.results import OutputStore  # noqa: E402
from rdiff import CheckpointError, RenderDiffusion  # noqa: E402
from rdiff.preprocess import prepare_image  # noqa: E402

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = load_examples()[0]
CAMERA = EXAMPLE.camera_row()
OUT = {name: i for i, name in enumerate(PANEL_FIELDS)}
COMPOSITE = len(PANEL_FIELDS) - 1  # /inpaint: after the panel's outputs (the gr.State is not one), the composite
SLOW_STEP_S = 0.05  # per denoiser pass while a test needs a long-running job (sleeps: no CPU used)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("app")) as srv:
        yield srv


@pytest.fixture
def new_client(server, tmp_path):
    """A fresh gradio_client session (its own session hash, so its own gr.State)."""
    made = []

    def make() -> Client:
        made.append(Client(server.url, verbose=False, download_files=str(tmp_path / f"dl{len(made)}")))
        return made[-1]

    return make


@pytest.fixture
def client(new_client):
    return new_client()


@pytest.fixture
def slow_model(server):
    """Make every denoiser pass of the app's model take ``SLOW_STEP_S`` (a sleep); counts the passes."""
    calls: list[float] = []

    def hook(*_):
        calls.append(time.monotonic())
        time.sleep(SLOW_STEP_S)

    handle = server.model.register_forward_pre_hook(hook)
    yield calls
    handle.remove()


def reconstruct(client, image=None, t_r=0, steps=1, seed=0, source="", camera=CAMERA):
    image = handle_file(str(EXAMPLE.path())) if image is None else image
    return client.predict(source, image, *camera, t_r, steps, seed, api_name="/reconstruct")


def still_serving(client) -> None:
    """A good request succeeds (after a refused one)."""
    out = reconstruct(client)
    assert Path(out[OUT["image"]]).is_file() and Path(out[OUT["mesh_file"]]).is_file()


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def save_png(path: Path, array: np.ndarray) -> str:
    Image.fromarray(array).save(path)
    return str(path)


def mask_layer(path: Path, width: int, height: int, box: tuple[int, int, int, int]) -> str:
    layer = np.zeros((height, width, 4), np.uint8)
    x0, y0, x1, y1 = box
    layer[y0:y1, x0:x1] = (255, 0, 200, 204)
    return save_png(path, layer)


def inpaint(client, background: str, layer: str, steps=2, resample=1, seed=0):
    editor = {"background": handle_file(background), "layers": [handle_file(layer)], "composite": None}
    return client.predict("", editor, *CAMERA, steps, resample, seed, api_name="/inpaint")


# ----------------------------------------------------------------------------------- bad input


def test_inpaint_editor_keeps_16_bit_grayscale_and_rgba(client, tmp_path):
    """The editor passes uploads on unconverted: a 16-bit PNG is scaled, not clipped to white."""
    arr = np.full((64, 64), 1000, np.uint16)
    arr[:, :32] = 60000  # left half light grey (233 in 8 bits), right half almost black (4)
    g16 = tmp_path / "g16.png"
    Image.fromarray(arr).save(g16)
    assert Image.open(g16).mode.startswith("I;16")
    layer = mask_layer(tmp_path / "m64.png", 64, 64, (24, 24, 40, 40))
    out = pixels(inpaint(client, str(g16), layer)[COMPOSITE])
    step = out.shape[0] // 16  # the 16 x 16 result, enlarged
    assert np.abs(out[step // 2, step // 2] - 233).max() <= 2  # known pixels kept, correctly scaled
    assert np.abs(out[step // 2, -step // 2] - 4).max() <= 2

    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :32, 3] = 255  # opaque red left, transparent right: composited on white
    out = pixels(inpaint(client, save_png(tmp_path / "rgba.png", rgba), layer)[COMPOSITE])
    assert np.abs(out[step // 2, step // 2] - (200, 0, 0)).max() <= 2
    assert np.abs(out[step // 2, -step // 2] - 255).max() <= 2

    grey = np.full((48, 64), 90, np.uint8)  # non-square grayscale: centre-cropped
    mask = mask_layer(tmp_path / "m48.png", 64, 48, (24, 16, 40, 32))
    out = pixels(inpaint(client, save_png(tmp_path / "grey.png", grey), mask)[COMPOSITE])
    assert np.abs(out[step // 2, step // 2] - 90).max() <= 2


def test_mask_layer_of_another_size(client, tmp_path):
    background = str(EXAMPLE.path())  # 128 x 128
    # same shape, half the size (e.g. a mask made for a downsized copy): scaled up and used
    half = mask_layer(tmp_path / "half.png", 64, 64, (0, 0, 32, 64))  # paints the left half
    out = inpaint(client, background, half)
    result = pixels(out[COMPOSITE])
    size = 16  # the tiny model's image size
    x = ((prepare_image(background, size) + 1) / 2 * 255).round().permute(1, 2, 0).numpy().astype(int)
    step = result.shape[0] // size
    known = result[::step, ::step][:, size // 2 + 1 :]  # the unpainted right half is kept
    assert np.abs(known - x[:, size // 2 + 1 :]).max() <= 2
    # another shape: the mask cannot be placed on the image
    wide = mask_layer(tmp_path / "wide.png", 48, 32, (10, 10, 20, 20))
    with pytest.raises(AppError, match="the mask is 48x32 pixels but the image is 128x128"):
        inpaint(client, background, wide)
    still_serving(client)


@st.composite
def editor_values(draw):
    """An ImageEditor value as the app receives it: a background and a brush layer of any size and mode."""
    bw, bh = draw(st.integers(8, 80)), draw(st.integers(8, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    bg_mode = draw(st.sampled_from(["RGB", "RGBA", "L", "I;16", "P"]))
    if bg_mode == "I;16":
        background = Image.fromarray(rng.integers(0, 65536, (bh, bw), dtype=np.uint16))
    else:
        background = Image.fromarray(rng.integers(0, 256, (bh, bw, 4), dtype=np.uint8), "RGBA").convert(bg_mode)
    kind = draw(st.sampled_from(["same", "half", "double", "other"]))
    lw, lh = {"same": (bw, bh), "half": (max(1, bw // 2), max(1, bh // 2)), "double": (2 * bw, 2 * bh),
              "other": (draw(st.integers(1, 90)), draw(st.integers(1, 90)))}[kind]
    painted = rng.random((lh, lw)) < draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    layer_mode = draw(st.sampled_from(["RGBA", "L", "LA"]))
    rgba = np.zeros((lh, lw, 4), np.uint8)
    rgba[painted] = (255, 0, 200, 204)
    layer = Image.fromarray(rgba, "RGBA")
    layer = layer if layer_mode == "RGBA" else Image.fromarray(rgba[..., 3]).convert(layer_mode)
    return {"background": background, "layers": [layer], "composite": None}


@settings(max_examples=80, deadline=None)
@given(editor=editor_values())
def test_editor_image_and_mask_property(editor):
    """Any background/layer pair: a clear InputError, or a model-ready image and a binary, partial mask."""
    from demo.handlers import editor_image_and_mask
    from rdiff.preprocess import InputError

    (bw, bh), (lw, lh) = editor["background"].size, editor["layers"][0].size
    same_shape = abs(lw * bh - lh * bw) <= 0.02 * max(lw * bh, lh * bw)
    try:
        image, mask = editor_image_and_mask(editor, 16)
    except InputError as e:
        message = str(e)
        event("refused: " + re.sub(r"\d+", "N", message.split(":")[0]))
        assert message
        if min(lw, lh) < 8:
            assert message.startswith("the painted mask could not be used: image is only")
        elif not same_shape:
            assert f"the mask is {lw}x{lh} pixels but the image is {bw}x{bh}" in message
        return
    event("accepted" if (lw, lh) == (bw, bh) else "accepted, scaled")
    assert same_shape
    assert image.shape == (3, 16, 16) and float(image.min()) >= -1 and float(image.max()) <= 1
    assert mask.shape == (16, 16) and set(mask.unique().tolist()) == {0.0, 1.0}


def test_corrupt_editor_uploads(client, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    layer = mask_layer(tmp_path / "m.png", 128, 128, (30, 30, 60, 60))
    with pytest.raises(AppError, match="not a readable image|could not be read"):
        inpaint(client, str(text), layer)
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(EXAMPLE.path().read_bytes()[:600])
    with pytest.raises(AppError, match="corrupt|could not be read"):
        inpaint(client, str(truncated), layer)
    with pytest.raises(AppError, match="corrupt|could not be read"):
        inpaint(client, str(EXAMPLE.path()), str(text))
    still_serving(client)


SLIDER_LIMITS = [  # Gradio's own range check of the slider or number, before the handler runs
    pytest.param("/reconstruct", lambda img: ("", img, *CAMERA, 3, 0, 0), "Value 0 is less than minimum value 1",
                 id="steps-0"),
    pytest.param("/reconstruct", lambda img: ("", img, *CAMERA, 3, 51, 0),
                 "Value 51 is greater than maximum value 50", id="steps-51"),
    pytest.param("/reconstruct", lambda img: ("", img, *CAMERA, -1, 2, 0), "Value -1 is less than minimum value 0",
                 id="t_r-negative"),
    pytest.param("/reconstruct", lambda img: ("", img, *CAMERA, 3, 2, -5), "Value -5 is less than minimum value 0",
                 id="seed-negative"),
    pytest.param("/reconstruct", lambda img: ("", img, 400, *CAMERA[1:], 3, 2, 0), "greater than maximum value 360",
                 id="azimuth-400"),
    pytest.param("/generate", lambda img: ("", 0, 251, 1), "Value 251 is greater than maximum value 250",
                 id="generate-steps-251"),
    pytest.param("/generate", lambda img: ("", 0, 1, 1), "Value 1 is less than minimum value 2",
                 id="generate-steps-1"),
    pytest.param("/noise_preview", lambda img: ("", img, 100, 0), "Value 100 is greater than maximum value 99",
                 id="preview-t_r-100"),
]


@pytest.mark.parametrize("endpoint, args, message", SLIDER_LIMITS)
def test_values_out_of_slider_range(client, endpoint, args, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args(handle_file(str(EXAMPLE.path()))), api_name=endpoint)


def test_inpaint_out_of_range_and_handler_checks(client, server, tmp_path):
    layer = mask_layer(tmp_path / "m.png", 128, 128, (30, 30, 60, 60))
    with pytest.raises(AppError, match="Value 1 is less than minimum value 2"):
        inpaint(client, str(EXAMPLE.path()), layer, steps=1)
    with pytest.raises(AppError, match="Value 21 is greater than maximum value 20"):
        inpaint(client, str(EXAMPLE.path()), layer, resample=21)
    # within the slider's range but not a whole number: the handler's own check
    with pytest.raises(AppError, match="t_r must be a whole number between 0 and 99, got 3.5"):
        reconstruct(client, t_r=3.5, steps=2)
    still_serving(client)

    # the handlers check every value themselves too (for direct calls and other front ends)
    handlers = Handlers(server.registry, OutputStore(tmp_path / "out"))
    image = str(EXAMPLE.path())
    cases = [
        (lambda: handlers.reconstruct("", image, *CAMERA, 100, 2, 0), "t_r must be a whole number between 0 and 99"),
        (lambda: handlers.reconstruct("", image, *CAMERA, 3, 5000, 0), "steps must be a whole number between 1"),
        (lambda: handlers.reconstruct("", image, *CAMERA, 3, float("nan"), 0), "steps must be a whole number"),
        (lambda: handlers.reconstruct("", image, 0, 10, 0.5, 40, 3, 2, 0), "radius must be between"),
        (lambda: handlers.reconstruct("", image, *CAMERA, 3, 2, 2**40), "seed must be a whole number"),
        (lambda: handlers.reconstruct("", image, *CAMERA, "many", 2, 0), "t_r must be a number"),
        (lambda: handlers.generate("", 0, 0, 1), "steps must be a whole number between 1"),
        (lambda: handlers.generate("", 0, 2, 99), "batch size must be a whole number between 1 and 4"),
    ]
    for run, message in cases:
        with pytest.raises(gr.Error, match=message):
            list(run())
    with pytest.raises(gr.Error, match="resample must be a whole number between 1 and 20"):
        list(handlers.inpaint("", {"background": image, "layers": [layer]}, *CAMERA, 2, 50, 0))
    *_, last = handlers.generate("", 0, 2, 1)
    with pytest.raises(gr.Error, match="azimuth must be between"):
        handlers.orbit(last[OUT["state"]], 1e9, 0)


# ------------------------------------------------------------------------------ checkpoints


def _copy_checkpoint(server, dst: Path) -> Path:
    shutil.copytree(server.checkpoint, dst)
    return dst


def _header(data: bytes) -> tuple[int, dict]:
    n = struct.unpack("<Q", data[:8])[0]
    return n, json.loads(data[8 : 8 + n])


def test_tampered_checkpoint_through_the_app(server, client, tmp_path):
    weights = "model.safetensors"
    data = (server.checkpoint / weights).read_bytes()
    n, header = _header(data)
    tampered = {}
    # the header's length prefix
    tampered["length"] = struct.pack("<Q", n + 4096) + data[8:]
    # a data offset inside the JSON header (same length, still valid JSON)
    name = next(k for k in header if k != "__metadata__")
    start, end = header[name]["data_offsets"]
    old = f'"data_offsets":[{start},{end}]'.encode()
    new = f'"data_offsets":[{start},{end + 1 if len(str(end + 1)) == len(str(end)) else end - 1}]'.encode()
    assert old in data[: 8 + n] and len(new) == len(old)
    tampered["offsets"] = data.replace(old, new, 1)
    # bytes of a float32 in the data section set to NaN
    floats = [k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32"]
    at = 8 + n + header[floats[0]]["data_offsets"][0]
    tampered["data"] = data[:at] + b"\xff\xff\xff\x7f" + data[at + 4 :]
    messages = {"length": "corrupt or truncated", "offsets": "corrupt or truncated", "data": "NaN or infinite"}
    for kind, payload in tampered.items():
        folder = _copy_checkpoint(server, tmp_path / kind)
        (folder / weights).write_bytes(payload)
        with pytest.raises(CheckpointError, match=messages[kind]):
            RenderDiffusion.from_pretrained(folder)
        with pytest.raises(AppError, match=messages[kind]):
            client.predict(str(folder), api_name="/load_model")
        with pytest.raises(AppError, match=messages[kind]):
            reconstruct(client, source=str(folder))
        still_serving(client)  # the default model was not replaced by the broken one


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_flipped_header_byte_is_refused_or_harmless(tiny_checkpoint, data):
    """Any single flipped bit pattern in the safetensors header: CheckpointError, or (e.g. a flip inside the
    header's padding) exactly the original weights."""
    raw = (tiny_checkpoint / "model.safetensors").read_bytes()
    n, header = _header(raw)
    pos = data.draw(st.integers(0, 8 + n - 1), label="position")
    xor = data.draw(st.integers(1, 255), label="xor")
    flipped = bytearray(raw)
    flipped[pos] ^= xor
    folder = tiny_checkpoint.parent / f"flip-{pos}-{xor}"
    folder.mkdir(exist_ok=True)
    shutil.copy(tiny_checkpoint / "config.json", folder / "config.json")
    (folder / "model.safetensors").write_bytes(bytes(flipped))
    try:
        model = RenderDiffusion.from_pretrained(folder)
    except CheckpointError as e:
        assert "model.safetensors" in str(e) or "config" in str(e)
        return
    finally:
        shutil.rmtree(folder)
    original = RenderDiffusion.from_pretrained(tiny_checkpoint).state_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())


def test_tampered_dtype_is_refused(tiny_checkpoint, tmp_path):
    raw = (tiny_checkpoint / "model.safetensors").read_bytes()
    n, _ = _header(raw)
    i = raw.index(b'"dtype":"F32"', 8) + len(b'"dtype":"')
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "dtype")
    (folder / "model.safetensors").write_bytes(raw[:i] + b"I" + raw[i + 1 :])  # same size: passes safetensors
    with pytest.raises(CheckpointError, match="dtype mismatch"):
        RenderDiffusion.from_pretrained(folder)


def test_config_that_does_not_match_its_weights_through_the_app(server, client, tmp_path):
    folder = _copy_checkpoint(server, tmp_path / "mismatch")
    config = json.loads((folder / "config.json").read_text())
    config["triplane_channels"] = 12
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(AppError, match="checkpoint weights do not match its config"):
        client.predict(str(folder), api_name="/load_model")
    with pytest.raises(AppError, match="do not match its config"):
        client.predict(str(folder), 0, 2, 1, api_name="/generate")
    still_serving(client)


# ------------------------------------------------------------------------------- security


class _Trap:
    """Unpickling this creates ``marker``: proof that something unpickled the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def no_unpickling(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("the model loader unpickled something")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(module, name, refuse)


def test_pickle_checkpoints_are_never_loaded_through_the_app(server, client, tmp_path, no_unpickling):
    marker = tmp_path / "UNPICKLED"
    payload = pickle.dumps({"encoder.weight": _Trap(marker)})
    bin_only = _copy_checkpoint(server, tmp_path / "bin-only")
    (bin_only / "model.safetensors").unlink()
    (bin_only / "pytorch_model.bin").write_bytes(payload)
    disguised = _copy_checkpoint(server, tmp_path / "disguised")
    (disguised / "model.safetensors").write_bytes(payload)  # a pickle under the safetensors name
    for folder, message in ((bin_only, "no model.safetensors"), (disguised, "corrupt or truncated")):
        with pytest.raises(AppError, match=message):
            client.predict(str(folder), api_name="/load_model")
        with pytest.raises(CheckpointError, match=message):
            RenderDiffusion.from_pretrained(folder)
    assert not marker.exists(), "a pickle was executed"
    still_serving(client)


def _python_files() -> list[Path]:
    files = [ROOT / "app.py"]
    for folder in ("rdiff", "demo", "scripts", "benchmarks"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return [f for f in files if f.is_file()]


def test_no_unsafe_deserialisation_in_the_code_base():
    """torch.load only with weights_only=True; no pickle/joblib/dill loads; no np.load(allow_pickle=True)."""
    problems = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        aliases = {}  # local name -> module, e.g. "pk" -> "pickle", "load" -> "torch.load"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    aliases[a.asname or a.name] = a.name
            elif isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                name = f"{aliases.get(func.value.id, func.value.id)}.{func.attr}"
            elif isinstance(func, ast.Name):
                name = aliases.get(func.id, func.id)
            else:
                continue
            kw = {k.arg: k.value for k in node.keywords}
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name == "torch.load":
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                if not ok:
                    problems.append(f"{where}: torch.load without weights_only=True")
            elif name.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "cloudpickle", "_pickle") and (
                name.rsplit(".", 1)[-1] in ("load", "loads", "Unpickler")
            ):
                problems.append(f"{where}: {name}")
            elif name in ("numpy.load", "np.load") and not (
                isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False
            ) and "allow_pickle" in kw:
                problems.append(f"{where}: np.load with allow_pickle")
    assert not problems, problems
    # the scan does see the one legitimate use (training's optimiser state)
    assert "weights_only=True" in (ROOT / "rdiff" / "training" / "checkpoint.py").read_text()


# ---------------------------------------------------------------------------- cancellation


def test_cancel_frees_the_worker(server, new_client, slow_model):
    """gradio_client's job.cancel() on a running generator: stopped at its next yield, worker free at once."""
    a, b = new_client(), new_client()
    layer = mask_layer(Path(a.output_dir) / "m.png", 128, 128, (30, 30, 90, 90))
    editor = {"background": handle_file(str(EXAMPLE.path())), "layers": [handle_file(layer)], "composite": None}
    # 100 steps (T) x 20 resamplings = ~2000 denoiser passes at 0.05 s: about 100 s if left to run
    started = time.monotonic()
    long_job = a.submit("", editor, *CAMERA, 250, 20, 0, api_name="/inpaint")
    while len(slow_model) < 10:
        assert time.monotonic() - started < 60, "the long job did not start"
        time.sleep(0.05)
    short = b.submit("", handle_file(str(EXAMPLE.path())), *CAMERA, 0, 1, 0, api_name="/reconstruct")
    time.sleep(1.0)
    assert not short.done(), "with concurrency 1 the second job waits while the first runs"

    t_cancel = time.monotonic()
    assert long_job.cancel()
    out = short.result(timeout=30)
    freed_s = time.monotonic() - t_cancel
    assert Path(out[OUT["image"]]).is_file()
    assert freed_s < 15, f"the second job finished {freed_s:.1f} s after the cancel"
    assert long_job.status().code == Status.CANCELLED
    passes = len(slow_model)
    time.sleep(1.0)
    assert len(slow_model) == passes, "the cancelled generator kept running in the background"
    assert passes < 200  # far from the ~2000 passes of the full job
    print(f"\n[cancel] second job done {freed_s:.2f} s after job.cancel(); long job stopped after "
          f"{passes} of ~2000 denoiser passes")
    still_serving(b)


def test_closing_the_page_stops_the_run(server, new_client, slow_model):
    """A browser tab closed mid-run (its event stream disconnects): the run stops at its next yield."""
    fn = next(i for i, f in server.app.fns.items() if f.api_name == "generate")
    session = "closed-tab-" + str(time.monotonic_ns())
    body = {"data": ["", 0, 100, 1, None], "fn_index": fn, "session_hash": session, "event_data": None,
            "trigger_id": None}
    assert httpx.post(server.url + "gradio_api/queue/join", json=body, timeout=10).status_code == 200
    with httpx.stream("GET", server.url + "gradio_api/queue/data", params={"session_hash": session},
                      timeout=30) as stream:
        for _ in stream.iter_lines():  # as the page does: read progress messages until ~10 steps ran
            if len(slow_model) >= 10:
                break
    time.sleep(1.5)  # the generator's next yield (previews every 0.5 s) notices the disconnect
    passes = len(slow_model)
    time.sleep(1.0)
    assert len(slow_model) == passes < 60, "the run went on after its page was closed"
    t0 = time.monotonic()
    still_serving(new_client())
    assert time.monotonic() - t0 < 15


def _stop_fn_index(server, tab: str) -> int:
    """The Stop button's event (private: not callable by gradio_client, so it is posted as the page does)."""
    button = next(b for b in server.app.blocks.values() if getattr(b, "elem_id", None) == f"{tab}-stop")
    return next(i for i, fn in server.app.fns.items() if any(t[0] == button._id for t in fn.targets))


def test_stop_button_ends_the_run_with_a_result(server, new_client, slow_model):
    a, b = new_client(), new_client()
    job = a.submit("", 0, 100, 1, api_name="/generate")  # ~100 passes at 0.05 s
    started = time.monotonic()
    while len(slow_model) < 5:
        assert time.monotonic() - started < 60
        time.sleep(0.05)
    body = {"data": [None], "fn_index": _stop_fn_index(server, "generate"), "session_hash": a.session_hash,
            "event_data": None, "trigger_id": None}
    r = httpx.post(server.url + "gradio_api/run/predict", json=body, timeout=10)
    assert r.status_code == 200, r.text
    out = job.result(timeout=60)
    assert "Stopped after" in out[OUT["notes"]]  # the scene of the estimate so far, with its files
    assert Path(out[OUT["mesh_file"]]).is_file()
    assert len(slow_model) < 60
    # only the clicking session is stopped: b's run goes to the end
    out = b.predict("", 0, 8, 1, api_name="/generate")
    assert "Stopped" not in out[OUT["notes"]]


def test_full_queue_is_refused_with_a_clear_message(tmp_path):
    with running_app(tmp_path, max_queue=1) as srv:
        calls = []

        def slow(*_):  # a pre-hook must return None (anything else replaces the inputs)
            calls.append(1)
            time.sleep(SLOW_STEP_S)

        hook = srv.model.register_forward_pre_hook(slow)
        try:
            clients = [Client(srv.url, verbose=False, download_files=str(tmp_path / f"d{i}")) for i in range(3)]
            running = clients[0].submit("", 0, 100, 1, api_name="/generate")
            while not calls:
                time.sleep(0.05)
            waiting = clients[1].submit("", 0, 2, 1, api_name="/generate")
            deadline = time.monotonic() + 10
            while waiting.status().code != Status.IN_QUEUE and time.monotonic() < deadline:
                time.sleep(0.05)
            refused = clients[2].submit("", 0, 2, 1, api_name="/generate")
            with pytest.raises(QueueError, match="Queue is full"):
                refused.result(timeout=30)
            running.cancel()
            assert Path(waiting.result(timeout=60)[OUT["image"]]).is_file()  # the waiting one still runs
        finally:
            hook.remove()


# ------------------------------------------------------------------------------- isolation


def test_failed_job_never_touches_another_sessions_scene(server, new_client, tmp_path):
    a, b = new_client(), new_client()
    reconstruct(a, seed=1, t_r=5, steps=2)
    a_view = pixels(a.predict(120, 25, api_name="/reconstruct_orbit"))
    other = load_examples()[1]
    reconstruct(b, handle_file(str(other.path())), camera=other.camera_row(), t_r=5, steps=2, seed=2)
    b_view = pixels(b.predict(120, 25, api_name="/reconstruct_orbit"))
    assert np.abs(a_view - b_view).max() > 0, "B's scene is B's own"

    # B: a bad upload, a broken model, and a run that raises midway (while A keeps using its scene)
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    with pytest.raises(AppError, match="not a readable image"):
        reconstruct(b, handle_file(str(bad)))
    broken = _copy_checkpoint(server, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(AppError, match="corrupt or truncated"):
        reconstruct(b, source=str(broken))

    fail, passes = threading.Event(), []

    def explode(*_):
        if fail.is_set():
            passes.append(1)
            if len(passes) == 3:  # the third denoising step of B's run
                raise RuntimeError("simulated failure in the middle of a run")

    hook = server.model.register_forward_pre_hook(explode)
    try:
        fail.set()
        job = b.submit("", handle_file(str(EXAMPLE.path())), *CAMERA, 9, 5, 3, api_name="/reconstruct")
        views = [pixels(a.predict(120, 25, api_name="/reconstruct_orbit")) for _ in range(3)]
        with pytest.raises(AppError, match="Reconstruction failed unexpectedly .*simulated failure"):
            job.result(timeout=60)
        assert len(passes) == 3
    finally:
        fail.clear()
        hook.remove()
    for view in [*views, pixels(a.predict(120, 25, api_name="/reconstruct_orbit"))]:
        assert np.array_equal(view, a_view), "A's cached scene changed"
    # B's failures left B's own last scene in place too, and B still gets results
    assert np.array_equal(pixels(b.predict(120, 25, api_name="/reconstruct_orbit")), b_view)
    still_serving(b)
    assert np.array_equal(pixels(a.predict(120, 25, api_name="/reconstruct_orbit")), a_view)

