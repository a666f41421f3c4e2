"""The Gradio app end to end through its API (gradio_client), with a tiny untrained checkpoint."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
trimesh = pytest.importorskip("trimesh")

from app_server import make_estimating_checkpoint, running_app  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from demo.examples import load_examples  # noqa: E402
from demo.handlers import PANEL_FIELDS  # noqa: E402
from rdiff.preprocess import prepare_image  # noqa: E402

EXAMPLE = load_examples()[0]
CAMERA = EXAMPLE.camera_row()  # azimuth, elevation, radius, fov (degrees)
OUT = {name: i for i, name in enumerate(PANEL_FIELDS)}  # API outputs: the panel minus the gr.State
COMPOSITE = len(PANEL_FIELDS) - 1  # /inpaint: then the composite


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("app")) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture
def model_calls(server):
    """Counts denoiser forward passes (rendering from a cached triplane does not call forward)."""
    calls = []
    handle = server.model.register_forward_hook(lambda *_: calls.append(1))
    yield calls
    handle.remove()


def reconstruct(client, image, t_r=3, steps=2, seed=0, camera=CAMERA, source=""):
    return client.predict(source, image, *camera, t_r, steps, seed, api_name="/reconstruct")


def check_panel(out) -> None:
    """Every output of a finished run exists and is valid."""
    assert len(out) == len(PANEL_FIELDS) - 1  # the gr.State is not part of the API
    for key in ("image", "depth", "orbit"):
        with Image.open(out[OUT[key]]) as im:
            im.load()
            assert im.mode == "RGB" and min(im.size) >= 64
    video = out[OUT["video"]]
    video = Path(video["video"] if isinstance(video, dict) else video)
    assert video.suffix == ".mp4" and video.read_bytes()[4:8] == b"ftyp"
    mesh = trimesh.load(out[OUT["mesh_file"]], force="mesh")
    assert len(mesh.vertices) > 0 and len(mesh.faces) > 0
    assert out[OUT["plot"]]["type"] == "plotly"
    assert "Input view" in out[OUT["notes"]]


def png(path: Path, array: np.ndarray) -> str:
    Image.fromarray(array).save(path)
    return str(path)


def mask_layer(path: Path, size: int, box: tuple[int, int, int, int] | None) -> str:
    """An RGBA layer like the editor's brush layer: transparent except (painted) inside ``box``."""
    layer = np.zeros((size, size, 4), np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        layer[y0:y1, x0:x1] = (255, 0, 200, 204)
    return png(path, layer)


def huge_png(path: Path, width: int, height: int) -> str:
    """A tiny file whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return str(path)


# ------------------------------------------------------------------------------------------- setup


def test_endpoints_and_queue(server, client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ("/load_model", "/noise_preview", "/reconstruct", "/reconstruct_orbit", "/inpaint",
                 "/inpaint_orbit", "/generate", "/generate_orbit"):
        assert name in api
    fns = {fn.api_name: fn for fn in server.app.fns.values() if fn.api_name}
    heavy = {fns[n].concurrency_id for n in ("reconstruct", "inpaint", "generate", "load_model")}
    assert heavy == {"diffusion"} and fns["reconstruct"].concurrency_limit == 1
    assert fns["reconstruct_orbit"].concurrency_id == fns["noise_preview"].concurrency_id == "preview"
    assert server.app._queue.max_size == 16


def test_load_model_shows_config_and_fallback_notice(server, client, tmp_path):
    out = client.predict(str(server.checkpoint), api_name="/load_model")
    assert "16×16 images" in out[0] and "T = 100" in out[0]
    assert out[-1]["maximum"] == 99 and out[-1]["value"] == 0  # the t_r slider follows T
    shipped = Path(__file__).resolve().parent.parent / "weights" / "clevr1-32"  # T = 1000
    out = client.predict(str(shipped), api_name="/load_model")
    assert "T = 1000" in out[0] and out[-1]["maximum"] == 300  # capped, as when the app starts
    out = client.predict("nobody/no-such-rdiff-model", api_name="/load_model")  # offline in tests
    assert "Could not load 'nobody/no-such-rdiff-model'" in out[0] and "16×16 images" in out[0]
    with pytest.raises(AppError, match="'/nonexistent/no-such-folder' does not exist"):
        client.predict("/nonexistent/no-such-folder", api_name="/load_model")
    broken = tmp_path / "broken-ckpt"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(AppError, match="invalid checkpoint config"):  # a local folder never falls back
        client.predict(str(broken), api_name="/load_model")
    assert "16×16 images" in client.predict("", api_name="/load_model")[0]  # and the default still loads


# ------------------------------------------------------------------------------------- reconstruct


def test_reconstruct_and_orbit_without_diffusion(client, model_calls):
    t0 = time.perf_counter()
    out = reconstruct(client, handle_file(str(EXAMPLE.path())), t_r=3, steps=2)
    diffusion_s = time.perf_counter() - t0
    check_panel(out)
    assert len(model_calls) == 2  # t_r = 3 with 2 steps: two denoiser passes
    assert out[OUT["orbit_azimuth"]] == pytest.approx(CAMERA[0])  # the orbit sliders start at the input view
    assert out[OUT["orbit_elevation"]] == pytest.approx(CAMERA[1])

    views, t0 = [], time.perf_counter()
    for az in (0, 90, 200):
        with Image.open(client.predict(az, 20, api_name="/reconstruct_orbit")) as im:
            views.append(np.asarray(im.convert("RGB")))
    orbit_s = (time.perf_counter() - t0) / 3
    assert len(model_calls) == 2, "the orbit view must re-render the cached triplane, not re-run diffusion"
    assert orbit_s < diffusion_s
    assert views[0].shape == views[1].shape and views[0].min() < 255


def test_noise_preview_matches_t_r(client, server):
    size = server.model.config.image_size
    x = ((prepare_image(str(EXAMPLE.path()), size) + 1) / 2 * 255).round().byte().permute(1, 2, 0).numpy()
    clean = np.asarray(Image.open(client.predict("", handle_file(str(EXAMPLE.path())), 0, 0,
                                                 api_name="/noise_preview")).convert("RGB"))
    step = clean.shape[0] // size
    # t_r = 0: the downsized input with the (tiny) noise of the first timestep, exactly as reconstruct sees it
    assert np.abs(clean[::step, ::step].astype(int) - x).mean() < 8
    noisy = np.asarray(Image.open(client.predict("", handle_file(str(EXAMPLE.path())), 99, 0,
                                                 api_name="/noise_preview")).convert("RGB"))
    assert np.abs(noisy[::step, ::step].astype(int) - x).mean() > 40


@pytest.mark.parametrize("kind", ["gray", "rgba", "gray16"])
def test_unusual_but_valid_images(client, tmp_path, kind):
    rng = np.random.default_rng(0)
    if kind == "gray":
        path = png(tmp_path / "g.png", rng.integers(0, 256, (40, 60), dtype=np.uint8))
    elif kind == "rgba":
        path = png(tmp_path / "a.png", rng.integers(0, 256, (50, 50, 4), dtype=np.uint8))
    else:
        path = str(tmp_path / "g16.png")
        Image.fromarray(rng.integers(0, 65535, (48, 48), dtype=np.uint16)).save(path)
    assert Path(client.predict("", handle_file(path), 10, 0, api_name="/noise_preview")).is_file()
    if kind == "gray16":
        check_panel(reconstruct(client, handle_file(path), t_r=0, steps=1))


# ---------------------------------------------------------------------------------------- inpaint


def test_inpaint_with_painted_mask(client, server, tmp_path):
    size = 128  # the example's size; the brush layer has the background's size
    editor = {"background": handle_file(str(EXAMPLE.path())),
              "layers": [handle_file(mask_layer(tmp_path / "mask.png", size, (40, 30, 90, 100)))],
              "composite": None}
    out = client.predict("", editor, *CAMERA, 3, 2, 0, api_name="/inpaint")
    check_panel(out[:COMPOSITE])
    # The composite keeps the known pixels (outside the painted box): compare a corner with the downsized input.
    m = server.model.config.image_size
    x = ((prepare_image(str(EXAMPLE.path()), m) + 1) / 2 * 255).round().byte().permute(1, 2, 0).numpy()
    composite = np.asarray(Image.open(out[COMPOSITE]).convert("RGB"))
    step = composite.shape[0] // m
    assert np.abs(composite[::step, ::step][:3, :3].astype(int) - x[:3, :3]).max() <= 1
    with Image.open(client.predict(45, 10, api_name="/inpaint_orbit")) as im:
        assert im.size[0] >= 64


def test_inpaint_result_is_the_scene_not_the_composite(server, tmp_path):
    """The result image is the final triplane's render from the input camera, also after Stop; the composite
    (known pixels pasted back) is the separate extra, so it cannot hide a scene that does not match."""
    from demo.handlers import Handlers, StopFlag
    from demo.results import OutputStore

    handlers, stop = Handlers(server.registry, OutputStore(tmp_path)), StopFlag()
    editor = {"background": str(EXAMPLE.path()), "layers": [mask_layer(tmp_path / "m.png", 128, (40, 30, 90, 100))]}

    def progress(value, desc="", **_):
        if value[0] == 1 and "Denoising" in desc:
            stop.request()

    *_, last = handlers.inpaint("", editor, *CAMERA, 10, 1, 0, progress=progress, stop=stop)
    assert len(last) == len(PANEL_FIELDS) + 1 and "Stopped after 1 of" in last[OUT["notes"]]
    state = last[OUT["state"]]
    m = server.model.config.image_size
    x = ((prepare_image(str(EXAMPLE.path()), m) + 1) / 2 * 255).round().byte().permute(1, 2, 0).numpy().astype(int)
    shown = np.asarray(Image.open(last[OUT["image"]]).convert("RGB")).astype(int)
    step = shown.shape[0] // m
    shown = shown[::step, ::step]
    render = state.scene.render(state.scene.camera)[0].rgb.astype(int)
    assert np.abs(shown - render).max() <= 2  # what the 3D scene looks like
    composite = np.asarray(Image.open(last[-1]).convert("RGB")).astype(int)[::step, ::step]
    assert Path(last[-1]) == state.composites[0]
    known = np.ones((m, m), bool)
    known[30 * m // 128 : 100 * m // 128 + 1, 40 * m // 128 : 90 * m // 128 + 1] = False
    assert np.abs(composite[known] - x[known]).max() <= 1  # the composite keeps every known pixel
    assert np.abs(shown[known] - x[known]).mean() > 10  # the untrained model's scene does not: the result shows it


def test_estimate_camera_and_out_of_range_warning(client, server, tmp_path):
    image = handle_file(str(EXAMPLE.path()))
    ckpt = str(make_estimating_checkpoint(tmp_path / "estimating", [0.2, -0.5, 1.0]))
    assert client.predict(ckpt, image, api_name="/estimate_camera") == (40, 2.75, 50.0)  # the sliders' values
    far = str(make_estimating_checkpoint(tmp_path / "far", [3.0, 0.0, 0.0]))  # elevation 110: clamped to the range
    assert client.predict(far, image, api_name="/estimate_camera")[0] == 60
    out = reconstruct(client, image, camera=(0, 85, 3.0, 45), source=ckpt)  # the user's camera, outside
    assert "outside the training cameras (elevation 85°" in out[OUT["notes"]]
    inside = reconstruct(client, image, camera=(0, 30, 3.0, 45), source=ckpt)
    assert "outside the training cameras" not in inside[OUT["notes"]]
    # a model without an estimator leaves the sliders alone
    from demo.handlers import Handlers
    from demo.results import OutputStore

    handlers = Handlers(server.registry, OutputStore(tmp_path / "out"))
    assert all(v is not None and not isinstance(v, (int, float))
               for v in handlers.estimate_camera(str(server.checkpoint), str(EXAMPLE.path())))
    editor = {"background": str(EXAMPLE.path()), "layers": [], "composite": None}
    assert handlers.estimate_camera(ckpt, editor) == (40, 2.75, 50.0)  # the Inpaint editor's value


def test_example_result_is_computed_once_and_shared(server, tmp_path, model_calls):
    from demo.handlers import Handlers
    from demo.results import OutputStore

    handlers = Handlers(server.registry, OutputStore(tmp_path / "out"))
    first = handlers.example_result(str(server.checkpoint), EXAMPLE)
    assert first[0] == str(EXAMPLE.path()) and list(first[1:5]) == CAMERA  # the input and its camera
    panel = first[5:]
    for name in ("image", "depth", "orbit", "video", "mesh_file"):
        assert Path(panel[OUT[name]]).is_file(), name
    assert "Example result" in panel[OUT["notes"]] and EXAMPLE.title in panel[OUT["notes"]]
    calls = len(model_calls)
    assert calls >= 1
    again = handlers.example_result(str(server.checkpoint), EXAMPLE)[5:]  # a second visitor: no model call
    assert len(model_calls) == calls and again[OUT["scene_id"]] == panel[OUT["scene_id"]]
    assert handlers.scenes.get(panel[OUT["scene_id"]]) is not None  # /orbit works on it from any client
    assert all(v is not None for v in handlers.example_result("", None)[:5])  # no example: all skipped


# --------------------------------------------------------------------------------------- generate


def test_generate_batch_with_gallery(client):
    out = client.predict("", 3, 2, 2, api_name="/generate")
    check_panel(out[:-1])
    gallery = out[-1]  # a plain list of both samples (no raw update dict)
    assert isinstance(gallery, list) and len(gallery) == 2
    assert all(Path(g["image"]).is_file() for g in gallery)
    with Image.open(client.predict(100, 30, api_name="/generate_orbit")) as im:
        assert im.size[0] >= 64


def test_generate_eta(client):
    first = [np.asarray(Image.open(client.predict("", 3, 3, 1, eta, api_name="/generate")[0]), dtype=int)
             for eta in (0.0, 1.0, 0.0)]
    assert np.array_equal(first[0], first[2])  # eta = 0 is deterministic by seed
    assert np.abs(first[0] - first[1]).max() > 0  # eta = 1 draws fresh noise at each step
    with pytest.raises(AppError, match="greater than maximum value 1"):
        client.predict("", 3, 3, 1, 1.5, api_name="/generate")


def test_api_names_types_and_descriptions(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    panel = ["image", "depth", "orbit_view", "orbit_azimuth", "orbit_elevation", "turntable", "plot_3d", "mesh_glb",
             "notes", "scene_id"]
    assert [r["label"] for r in api["/reconstruct"]["returns"]] == panel
    assert [r["label"] for r in api["/inpaint"]["returns"]] == [*panel, "composite"]
    assert [r["label"] for r in api["/generate"]["returns"]] == [*panel, "samples"]
    assert [r["label"] for r in api["/sample"]["returns"]] == panel
    assert api["/load_model"]["returns"][1]["label"] == "reconstruct_azimuth"
    types = {(name, p["parameter_name"]): p["python_type"]["type"] for name, e in api.items() for p in e["parameters"]}
    for key in [("/reconstruct", "t_r"), ("/reconstruct", "steps"), ("/inpaint", "steps"), ("/inpaint", "resample"),
                ("/generate", "steps"), ("/generate", "batch_size"), ("/orbit", "sample"), ("/noise_preview", "t_r")]:
        assert types[key] == "int", key
    assert types[("/generate", "eta")] == types[("/reconstruct", "eta")] == "float"
    assert [p["parameter_name"] for p in api["/orbit"]["parameters"]] == ["scene_id", "sample", "azimuth", "elevation"]
    for name, endpoint in api.items():
        assert len(endpoint["description"]) > 40, name
        assert "x_{" not in endpoint["description"] and ":meth:" not in endpoint["description"], name


def test_scenes_are_reachable_by_id_from_any_client(client, server, tmp_path):
    out = client.predict("", 5, 2, 2, api_name="/generate")
    scene_id = out[OUT["scene_id"]]
    assert len(scene_id) == 32
    other = Client(server.url, verbose=False, download_files=str(tmp_path))  # a new session: no state of its own
    with pytest.raises(AppError, match="session has no result yet"):
        other.predict(90, 20, api_name="/generate_orbit")  # refused, no silent None
    views = [np.asarray(Image.open(other.predict(scene_id, i, 90, 20, api_name="/orbit")).convert("RGB"))
             for i in (0, 1)]
    assert views[0].shape == views[1].shape and not np.array_equal(views[0], views[1])  # two different scenes
    second = other.predict(scene_id, 1, api_name="/sample")  # the batch's other sample, all its outputs
    assert "Sample 2 of 2" in second[OUT["notes"]] and second[OUT["scene_id"]] == scene_id
    assert Path(second[OUT["mesh_file"]]).is_file() and Path(second[OUT["image"]]).is_file()
    first = np.asarray(Image.open(out[OUT["image"]]).convert("RGB"))
    assert not np.array_equal(np.asarray(Image.open(second[OUT["image"]]).convert("RGB")), first)
    # /sample does not change what the session that ran it shows (its orbit still renders sample 0)
    own = np.asarray(Image.open(client.predict(90, 20, api_name="/generate_orbit")).convert("RGB"))
    assert np.array_equal(own, views[0])
    with pytest.raises(AppError, match="unknown scene id"):
        other.predict("0" * 32, 0, 0, 30, api_name="/orbit")
    with pytest.raises(AppError, match="sample must be a whole number between 0 and 1"):
        other.predict(scene_id, 2, 0, 30, api_name="/orbit")


def test_scene_store_is_a_bounded_lru():
    from demo.results import ResultState, SceneStore

    store = SceneStore(max_items=2, max_age_s=3600)
    a, b, c = (ResultState("generate", [], [], Path(".")) for _ in range(3))
    ida, idb = store.add(a), store.add(b)
    assert a.scene_id == ida and store.get(ida) is a  # a used: b is now the least recently used
    idc = store.add(c)
    assert len(store) == 2 and store.get(ida) is a and store.get(idc) is c
    with pytest.raises(KeyError):
        store.get(idb)
    store.max_age_s = 0.0
    with pytest.raises(KeyError):
        store.get(ida)  # expired


def test_select_another_sample_renders_without_diffusion(server, tmp_path):
    from demo.handlers import Handlers
    from demo.results import OutputStore

    handlers = Handlers(server.registry, OutputStore(tmp_path))
    *_, last = handlers.generate("", 1, 2, 3)
    state = last[OUT["state"]]
    assert len(state.scenes) == 3 and list(state.files) == [0]
    calls = []
    hook = server.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        *_, picked = handlers.select(state, 2)
    finally:
        hook.remove()
    assert not calls and state.selected == 2 and sorted(state.files) == [0, 2]
    assert picked[OUT["image"]] != last[OUT["image"]] and handlers.mesh(state).endswith("_02_mesh.glb")


def test_stop_ends_the_run_with_a_result(server, tmp_path):
    from demo.handlers import Handlers, StopFlag
    from demo.results import OutputStore

    handlers, stop = Handlers(server.registry, OutputStore(tmp_path)), StopFlag()
    seen = []

    def progress(value, desc="", **_):
        seen.append(value)
        if value[0] == 2 and "Denoising" in desc:
            stop.request()  # as the Stop button does, from another request, while the run goes on

    *_, last = handlers.generate("", 0, 20, 1, progress=progress, stop=stop)
    assert "Stopped after 2 of 20 denoising steps" in last[OUT["notes"]]
    assert max(done for done, total in seen if total == 20) == 2  # no denoising step after the request
    assert Path(last[OUT["mesh_file"]]).is_file()


def test_a_run_clears_the_old_outputs_and_reports_progress_in_the_notes(server, tmp_path):
    """The first yield (the run has started) empties every output but the orbit sliders and the state; the
    previews carry the progress in the notes (the app shows no Gradio progress bar); as soon as denoising ends
    the result image, orbit view and scene go out, then the full result with its 3D files."""
    from demo.handlers import Handlers
    from demo.results import OutputStore

    handlers = Handlers(server.registry, OutputStore(tmp_path), preview_interval_s=0.0)
    yields = list(handlers.reconstruct("", str(EXAMPLE.path()), *CAMERA, 20, 6, 0))
    first, *middle, last = yields
    for key in ("image", "depth", "orbit", "video", "plot", "mesh_file"):
        assert first[OUT[key]] is None, key
    assert "step 1 of 6" in first[OUT["notes"]]
    for key in ("orbit_azimuth", "orbit_elevation", "state"):
        assert first[OUT[key]] == gr.skip(), key  # kept: the session's previous scene stays orbitable
    *previews, first_view = middle
    notes = [v[OUT["notes"]] for v in previews]
    assert any("step 3 of 6" in n for n in notes)
    assert all(isinstance(v[OUT["state"]], dict) for v in previews)  # the state changes only with the result
    assert "rendering" in first_view[OUT["notes"]]
    assert first_view[OUT["state"]] == gr.skip()  # the state changes with the full result only (see restore)
    assert Path(first_view[OUT["image"]]).is_file() and Path(first_view[OUT["orbit"]]).is_file()
    # no render before the first view: its orbit view is the result image (the denoiser's render from the input
    # view); the full result brings the orbit view rendered at the orbit's size, from the same viewpoint
    assert first_view[OUT["orbit"]] == first_view[OUT["image"]]
    assert last[OUT["orbit"]] != last[OUT["image"]] and Path(last[OUT["orbit"]]).is_file()
    shown = np.asarray(Image.open(last[OUT["image"]]).convert("RGB"), dtype=np.float32)
    rendered = np.asarray(Image.open(last[OUT["orbit"]]).convert("RGB"), dtype=np.float32)
    assert shown.shape == rendered.shape  # the same display size: the layout does not jump
    assert np.abs(shown - rendered).mean() < 8.0  # the same view (finer pixels), not another one
    assert isinstance(first_view[OUT["video"]], dict)  # the turntable and the rest come with the last yield
    assert "Input view" in last[OUT["notes"]] and Path(last[OUT["mesh_file"]]).is_file()


def test_azimuth_is_shown_the_same_way_in_notes_and_slider(server, tmp_path):
    from demo.handlers import Handlers
    from demo.results import OutputStore

    *_, last = Handlers(server.registry, OutputStore(tmp_path)).reconstruct("", str(EXAMPLE.path()), -140, 30,
                                                                            3.0, 45, 0, 1, 0)
    assert last[OUT["orbit_azimuth"]] == pytest.approx(220) and "azimuth 220°" in last[OUT["notes"]]


def test_an_input_mistake_yields_nothing(server, tmp_path):
    """Refused before the first yield, so the outputs of the previous result are left as they are."""
    from demo.handlers import Handlers
    from demo.results import OutputStore

    handlers = Handlers(server.registry, OutputStore(tmp_path))
    runs = [handlers.reconstruct("", None, *CAMERA, 0, 1, 0),
            handlers.inpaint("", {"background": str(EXAMPLE.path()), "layers": []}, *CAMERA, 2, 1, 0),
            handlers.generate("", 0, 2, 9)]
    for run, message in zip(runs, ("no input image", "mask is empty", "batch size")):
        with pytest.raises(gr.Error, match=message):
            next(run)


def test_restore_shows_the_sessions_result_again(server, tmp_path):
    """After a run that failed midway (outputs cleared), the panel of the session's current result."""
    from demo.handlers import Handlers
    from demo.results import OutputStore

    handlers = Handlers(server.registry, OutputStore(tmp_path))
    *_, last = handlers.generate("", 4, 2, 2)
    state = last[OUT["state"]]
    again = handlers.restore(state)
    assert again[OUT["image"]] == last[OUT["image"]] and again[OUT["mesh_file"]] == last[OUT["mesh_file"]]
    assert handlers.gallery_shown(state)["visible"] is True and len(handlers.gallery(state)) == 2
    empty = handlers.restore(None)
    assert empty[OUT["image"]] is None and empty[OUT["notes"]] == ""


def test_example_assets():
    examples = load_examples()
    assert len(examples) >= 3
    for e in examples:
        with Image.open(e.path()) as im:
            assert im.size == (128, 128) and im.mode == "RGB"
        assert 0 <= e.azimuth < 360 and 0 < e.elevation < 90 and 2 < e.radius < 4 and 30 < e.fov < 60


# ------------------------------------------------------------------------------------- bad input


BAD_IMAGES = {
    "text file": (lambda p: (p.write_text("not an image"), str(p))[1], "not a readable image"),
    "truncated png": (lambda p: (p.write_bytes(EXAMPLE.path().read_bytes()[:700]), str(p))[1], "corrupt"),
    "huge": (lambda p: huge_png(p, 12000, 12000), "megapixels"),
    "tiny": (lambda p: png(p, np.zeros((4, 4, 3), np.uint8)), "at least 8x8"),
}


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_image_is_a_readable_error(client, tmp_path, name):
    make, message = BAD_IMAGES[name]
    path = make(tmp_path / "bad.png")
    with pytest.raises(AppError, match=message):
        reconstruct(client, handle_file(path))
    with pytest.raises(AppError, match=message):
        client.predict("", handle_file(path), 5, 0, api_name="/noise_preview")


@pytest.mark.parametrize("box, message", [(None, "mask is empty"), ((0, 0, 128, 128), "covers the whole image")])
def test_bad_masks(client, tmp_path, box, message):
    editor = {"background": handle_file(str(EXAMPLE.path())),
              "layers": [handle_file(mask_layer(tmp_path / "m.png", 128, box))], "composite": None}
    with pytest.raises(AppError, match=message):
        client.predict("", editor, *CAMERA, 3, 1, 0, api_name="/inpaint")


def test_missing_inputs_and_bad_values(client):
    with pytest.raises(AppError, match="no input image"):
        reconstruct(client, None)
    with pytest.raises(AppError, match="no input image"):
        client.predict("", None, *CAMERA, 3, 1, 0, api_name="/inpaint")
    with pytest.raises(AppError, match="greater than maximum value 99"):  # the slider checks its range
        reconstruct(client, handle_file(str(EXAMPLE.path())), t_r=500)
    with pytest.raises(AppError, match="greater than maximum value 4"):
        client.predict("", 0, 2, 9, api_name="/generate")
    with pytest.raises(AppError, match="no-such-folder"):
        reconstruct(client, handle_file(str(EXAMPLE.path())), source="/nonexistent/no-such-folder")


def test_app_keeps_serving_after_errors(client, tmp_path):
    with pytest.raises(AppError):
        reconstruct(client, handle_file(BAD_IMAGES["text file"][0](tmp_path / "x.png")))
    check_panel(reconstruct(client, handle_file(str(EXAMPLE.path())), t_r=0, steps=1))
    out = reconstruct(client, handle_file(str(EXAMPLE.path())), t_r=0, steps=1, source="nobody/no-such-rdiff-model")
    assert "Could not load 'nobody/no-such-rdiff-model'" in out[OUT["notes"]]
