"""Load: the app in its own process, driven by 8 concurrent gradio_client sessions across all tabs.

Every request must complete (none fails, none is refused: the queue holds up to 16 waiting requests,
and each of the 8 sessions has at most one in flight) within bounded time, and the server's resident
memory must stay bounded, also while it downsizes a real 10000 x 10000 upload. Peak RSS and times are
printed (``pytest -s``) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
psutil = pytest.importorskip("psutil")

from app_server import app_subprocess  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from demo.examples import load_examples  # noqa: E402
from demo.handlers import PANEL_FIELDS  # noqa: E402

pytestmark = pytest.mark.timeout(420)

CLIENTS = 8
JOB_TIMEOUT_S = 180  # one request, including its wait in the queue behind the other sessions' jobs
RSS_LIMIT = 2.5 * 2**30  # bytes, server process (tiny model: ~0.5 GB at rest)
OUT = {name: i for i, name in enumerate(PANEL_FIELDS)}
EXAMPLES = load_examples()


class RssSampler:
    """Samples a process's resident memory (and that of its children, e.g. ffmpeg) in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = self.peak_with_children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        try:
            rss = self.process.memory_info().rss
            children = 0
            for child in self.process.children(recursive=True):
                try:
                    children += child.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            return
        self.peak = max(self.peak, rss)
        self.peak_with_children = max(self.peak_with_children, rss + children)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with app_subprocess(tmp_path_factory.mktemp("app-process")) as proc:
        yield proc


def new_client(server, tmp_path: Path, name: str) -> Client:
    return Client(server.url, verbose=False, download_files=str(tmp_path / name))


def image_ok(path: str) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        assert im.mode == "RGB" and min(im.size) >= 64
        return np.asarray(im)


def panel_ok(out) -> None:
    assert len(out) >= len(PANEL_FIELDS) - 1
    for key in ("image", "depth", "orbit"):
        image_ok(out[OUT[key]])
    assert Path(out[OUT["mesh_file"]]).is_file()
    assert "Input view" in out[OUT["notes"]]


@dataclass
class SessionLog:
    times: dict[str, float] = field(default_factory=dict)
    error: BaseException | None = None


def run_session(client: Client, i: int, log: SessionLog, start: threading.Barrier) -> None:
    """One user: noise preview, reconstruct + orbit, inpaint + orbit, generate + orbit (tiny step counts)."""
    ex = EXAMPLES[i % len(EXAMPLES)]
    cam = ex.camera_row()
    mask = np.zeros((128, 128, 4), np.uint8)
    mask[32 + 4 * i : 80 + 4 * i, 30:90] = (255, 0, 200, 204)
    mask_path = Path(client.output_dir) / f"mask{i}.png"
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(mask_path)
    editor = {"background": handle_file(str(ex.path())), "layers": [handle_file(str(mask_path))], "composite": None}

    def call(name: str, *args, api_name: str):
        t0 = time.monotonic()
        out = client.submit(*args, api_name=api_name).result(timeout=JOB_TIMEOUT_S)
        log.times[name] = time.monotonic() - t0
        return out

    try:
        start.wait(timeout=60)  # all sessions fire their first request together
        image_ok(call("noise_preview", "", handle_file(str(ex.path())), 5 + i, i, api_name="/noise_preview"))
        panel_ok(call("reconstruct", "", handle_file(str(ex.path())), *cam, 3, 2, i, api_name="/reconstruct"))
        image_ok(call("reconstruct_orbit", 30 * i, 20, api_name="/reconstruct_orbit"))
        panel_ok(call("inpaint", "", editor, *cam, 2, 1, i, api_name="/inpaint"))
        image_ok(call("inpaint_orbit", 10 * i, 25, api_name="/inpaint_orbit"))
        out = call("generate", "", i, 2, 1 + i % 2, api_name="/generate")
        panel_ok(out)
        image_ok(call("generate_orbit", 45 * i, 30, api_name="/generate_orbit"))
    except BaseException as e:  # noqa: BLE001 - reported by the test
        log.error = e


def test_eight_concurrent_clients_across_all_tabs(server, tmp_path):
    clients = [new_client(server, tmp_path, f"c{i}") for i in range(CLIENTS)]
    assert len({c.session_hash for c in clients}) == CLIENTS
    logs = [SessionLog() for _ in clients]
    start = threading.Barrier(CLIENTS)
    with RssSampler(server.pid) as rss:
        rest = rss.peak
        t0 = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            for i, (c, log) in enumerate(zip(clients, logs)):
                pool.submit(run_session, c, i, log, start)
        wall = time.monotonic() - t0
    errors = [(i, repr(log.error)) for i, log in enumerate(logs) if log.error is not None]
    assert not errors, f"failed sessions: {errors}"
    requests = sum(len(log.times) for log in logs)
    assert requests == CLIENTS * 7
    slowest = {k: max(log.times[k] for log in logs) for k in logs[0].times}
    print(f"\n[load] {CLIENTS} clients, {requests} requests in {wall:.1f} s; server RSS at start {mib(rest)}, "
          f"peak {mib(rss.peak)} (with child processes {mib(rss.peak_with_children)})")
    print("[load] slowest request per endpoint (incl. queueing): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in slowest.items()))
    assert rss.peak < RSS_LIMIT, f"server peak RSS {mib(rss.peak)}"
    # the cheap re-renders run in their own concurrency group: never stuck behind 8 sessions' diffusion
    assert slowest["reconstruct_orbit"] < JOB_TIMEOUT_S / 3


@pytest.fixture(scope="session")
def image_10k(tmp_path_factory) -> Path:
    """A real 10000 x 10000 RGB PNG (flat blue, a red centre square), written once per test session."""
    path = tmp_path_factory.mktemp("big") / "10k.png"
    img = Image.new("RGB", (10_000, 10_000), (20, 40, 220))
    img.paste((230, 20, 20), (3_000, 3_000, 7_000, 7_000))
    img.save(path, compress_level=1)
    del img
    return path


def test_10k_image_is_downsized_with_bounded_memory(server, tmp_path, image_10k):
    """The worst case the concurrency settings allow: 2 noise previews and 1 reconstruction of it at once."""
    clients = [new_client(server, tmp_path, f"big{i}") for i in range(3)]
    size_mb = image_10k.stat().st_size / 1e6
    camera = EXAMPLES[0].camera_row()
    with RssSampler(server.pid) as rss:
        rest = rss.peak
        t0 = time.monotonic()
        with ThreadPoolExecutor(3) as pool:
            previews = [pool.submit(c.predict, "", handle_file(str(image_10k)), 0, 0, api_name="/noise_preview")
                        for c in clients[:2]]
            rec = pool.submit(clients[2].predict, "", handle_file(str(image_10k)), *camera, 0, 1, 0,
                              api_name="/reconstruct")
            previews = [image_ok(f.result(timeout=JOB_TIMEOUT_S)) for f in previews]
            out = rec.result(timeout=JOB_TIMEOUT_S)
        wall = time.monotonic() - t0
    panel_ok(out)
    for preview in previews:  # downsized to the model's 16 x 16 (shown enlarged): red centre, blue corners
        h, w, _ = preview.shape
        centre, corner = preview[h // 2, w // 2].astype(int), preview[2, 2].astype(int)
        assert centre[0] > 150 and centre[2] < 100 and corner[2] > 150 and corner[0] < 100
    print(f"\n[10k] {size_mb:.1f} MB PNG: 2 noise previews + 1 reconstruct at once in {wall:.1f} s; server RSS "
          f"before {mib(rest)}, peak {mib(rss.peak)} (+{mib(rss.peak - rest)})")
    assert rss.peak < RSS_LIMIT, f"server peak RSS {mib(rss.peak)}"
    # and the server still serves normal requests
    panel_ok(clients[0].predict("", handle_file(str(EXAMPLES[0].path())), *camera, 0, 1, 0, api_name="/reconstruct"))
