"""Latency a user feels, in a real (headless) Chromium on the app serving a shipped model:

* **first result**: click Reconstruct (t_r = 0, the example the page opened with) -> the result image on
  screen (the depth, turntable, mesh and splats stream in after it);
* **orbit slider**: one step of the orbit-azimuth slider -> the new orbit view on screen;
* **splat orbit**: frames the browser draws per second while the Gaussian splats are dragged (gr.Model3D's
  viewer renders in requestAnimationFrame, so the callback rate while dragging is its frame rate);
* **live view** (``demo/live_viewer.js``, no WebGL): one orbit-slider step (its input event, timed in the page)
  -> the live canvas redrawn at the new view (client-side, no server call); frames it draws per second while
  dragged (one pointer move per display frame, dispatched in the page), and its time per frame.

    python benchmarks/bench_browser.py                      # clevr1-32, ~1 min
    python benchmarks/bench_browser.py --model chairs-64 --out benchmarks/results/bench_browser_chairs.json

Run it on an idle machine (the numbers include the server's model calls). Needs Chromium (Debian
``chromium``) and playwright (in requirements-dev.txt). Writes results/bench_browser.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_render import write_report  # noqa: E402

CHROMIUM = "/usr/bin/chromium"

#: Resolves with the time (performance.now) at which ``selector``'s image shows a new picture: its source
#: changes from ``old``, or it goes away (a run clears its outputs; a re-run of the same input may return the
#: same file) and comes back, loaded.
WAIT_FOR_NEW_IMAGE = """async ([selector, old]) => {
  const img = () => document.querySelector(selector);
  const loaded = (i) => i && i.src && i.complete && i.naturalWidth > 0;
  const deadline = performance.now() + 60000;
  const tick = async () => {
    if (performance.now() > deadline) throw new Error(`no new image in ${selector} within 60 s`);
    await new Promise((r) => setTimeout(r, 2));
  };
  let gone = false;
  while (true) {
    const i = img();
    gone = gone || !i || !i.src;
    if (loaded(i) && (gone || i.src !== old)) return performance.now();
    await tick();
  }
}"""

#: Resolves when the notes, having changed since the click, say the result is there (they arrive with the result
#: image, which a re-run of the same input may return under the same URL) and the result image is loaded.
WAIT_FOR_RESULT = """async ([notes, selector, before]) => {
  const deadline = performance.now() + 60000;
  let started = false;  // the notes left their text from before the click (a run's final notes may repeat it)
  while (true) {
    const text = (document.querySelector(notes) || {}).innerText || "";
    if (performance.now() > deadline) throw new Error(`no result within 60 s (notes: ${text.slice(0, 80)})`);
    started = started || text !== before;
    if (!started) { await new Promise((r) => setTimeout(r, 2)); continue; }  // the click not shown yet
    const i = document.querySelector(selector);
    if (/Denoising done|Input view/.test(text) && !/Example result/.test(text) && i && i.complete && i.naturalWidth > 0)
      return performance.now();
    await new Promise((r) => setTimeout(r, 2));
  }
}"""

#: Records, in the page, the time of the last input event and of the live view's first redraw after it (a
#: MutationObserver on its canvas's data-view), so the latency excludes the driver's round trips.
RECORD_INPUT = """(selector) => { if (window.__rdiffRecording) return; window.__rdiffRecording = true;
  document.addEventListener("input", () => { window.__rdiffLastInput = performance.now(); window.__rdiffDrawn = null; },
    true);
  new MutationObserver(() => { if (window.__rdiffDrawn == null) window.__rdiffDrawn = performance.now(); })
    .observe(document.querySelector(selector), { attributes: true, attributeFilter: ["data-view"] }); }"""

#: Resolves with the milliseconds from the slider's last input event to the live view's redraw at a view other
#: than ``old``.
WAIT_FOR_LIVE_VIEW = """async ([selector, old]) => {
  const deadline = performance.now() + 10000;
  while (true) {
    const c = document.querySelector(selector);
    if (c && c.dataset.view !== old && window.__rdiffDrawn != null)
      return window.__rdiffDrawn - window.__rdiffLastInput;
    if (performance.now() > deadline) throw new Error("the live view did not turn within 10 s");
    await new Promise((r) => setTimeout(r, 1));
  }
}"""

#: A drag of the live view for ``ms`` milliseconds, in the page: one pointer move per display frame (as a mouse
#: delivers them); resolves with the frames it drew per second and its median time per frame.
DRAG_LIVE = """async ([selector, ms]) => {
  const c = document.querySelector(selector), r = c.getBoundingClientRect();
  const x = r.left + r.width / 2, y = r.top + r.height / 2, f0 = Number(c.dataset.frames), times = [];
  const api = c.closest("[id$=-live]").rdiffLive;
  const ev = (type, dx) => c.dispatchEvent(new PointerEvent(type, { clientX: x + dx, clientY: y, pointerId: 7,
                                                                   bubbles: true }));
  ev("pointerdown", 0);
  const start = performance.now();
  let i = 0;
  while (performance.now() - start < ms) {
    await new Promise((res) => requestAnimationFrame(res));
    ev("pointermove", 20 * Math.sin(++i / 10));
    times.push(api.frameMs());
  }
  ev("pointerup", 0);
  times.sort((a, b) => a - b);
  return [(Number(c.dataset.frames) - f0) / ((performance.now() - start) / 1000), times[times.length >> 1]];
}"""

COUNT_FRAMES = """async (ms) => {
  let frames = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) { await new Promise((r) => requestAnimationFrame(r)); frames++; }
  return frames / (ms / 1000);
}"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_PHASE = ["start", 0]  # the phase being measured, and the watchdog's seconds per phase (0: off)


def _phase(name: str) -> None:
    """Name the phase being measured (printed, and named by the watchdog if it stalls) and re-arm the watchdog."""
    _PHASE[0] = name
    print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
    if _PHASE[1]:
        signal.alarm(_PHASE[1])


def _watchdog(seconds: int) -> None:
    """Abort with the stalled phase's name when one phase takes longer than ``seconds`` instead of hanging
    (page.evaluate has no timeout of its own); if the clean-up after that stalls too, exit hard 30 s later."""
    def hard_exit(*_):
        print(f"bench_browser: clean-up after the timeout stalled too; exiting (phase: {_PHASE[0]})", flush=True)
        os._exit(3)

    def expire(*_):
        signal.signal(signal.SIGALRM, hard_exit)
        signal.alarm(30)
        raise TimeoutError(f"bench_browser: no progress within {seconds} s, stalled in: {_PHASE[0]}")

    _PHASE[1] = seconds
    signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)


def _src(page, selector: str) -> str:
    return page.evaluate("(s) => { const i = document.querySelector(s); return i ? i.src : ''; }", selector)


def measure(url: str, repeats: int, webgl: bool = True) -> dict:
    """In Chromium: first result, orbit slider and (with ``webgl``) the splat viewer's frame rate. Without
    ``webgl`` the page's 3D viewers (gr.Model3D) cannot draw, which takes their software rendering off the CPU
    (a browser with a GPU does it there)."""
    from playwright.sync_api import sync_playwright

    out: dict = {}
    args = ["--no-sandbox", "--disable-gpu"] + ([] if webgl else ["--disable-3d-apis"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        _phase("browser: page load and example result")
        page.goto(url)
        page.locator("#reconstruct-notes").get_by_text("Example result").wait_for(timeout=120_000)
        page.wait_for_timeout(2000)  # the example's 3D files load

        first = []
        _phase("browser: first result")
        for _ in range(repeats):
            before = page.locator("#reconstruct-notes").inner_text()
            start = page.evaluate("() => performance.now()")
            page.locator("#reconstruct-run").click()
            first.append(page.evaluate(WAIT_FOR_RESULT, ["#reconstruct-notes", "#reconstruct-image img", before])
                         - start)
            page.locator("#reconstruct-notes").get_by_text("Input view").wait_for(timeout=120_000)
            page.wait_for_timeout(1500)
        out["first_result_ms"] = {"median": statistics.median(first), "all": first}
        print("first result", [round(v) for v in first], flush=True)

        _phase("browser: orbit slider")
        slider = page.locator("#reconstruct-orbit-azimuth input[type=range]")
        slider.scroll_into_view_if_needed()
        steps = []
        for i in range(repeats * 2):
            old = _src(page, "#reconstruct-orbit img")
            start = page.evaluate("() => performance.now()")
            slider.focus()
            slider.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")  # one slider step (1 degree)
            steps.append(page.evaluate(WAIT_FOR_NEW_IMAGE, ["#reconstruct-orbit img", old]) - start)
            page.wait_for_timeout(300)
        out["orbit_slider_ms"] = {"median": statistics.median(steps), "all": steps}

        _phase("browser: live view slider and drag")
        live = "#reconstruct-live canvas"
        page.evaluate(RECORD_INPUT, live)
        steps = []
        for i in range(repeats * 2):
            old = page.locator(live).get_attribute("data-view")
            slider.focus()
            slider.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
            steps.append(page.evaluate(WAIT_FOR_LIVE_VIEW, [live, old]))
            page.wait_for_timeout(300)  # the server's orbit view of the same step lands
        out["live_slider_ms"] = {"median": statistics.median(steps), "all": steps}
        page.locator(live).scroll_into_view_if_needed()
        out["live_drag_fps"], frame_ms = page.evaluate(DRAG_LIVE, [live, 3000])
        out["live_frame_ms"] = {"median": frame_ms, "all": [frame_ms]}

        out["idle_page_fps"] = page.evaluate(COUNT_FRAMES, 1000)
        if not webgl:
            browser.close()
            return out
        _phase("browser: splat drag")
        canvas = page.locator("#reconstruct-splats canvas")
        canvas.scroll_into_view_if_needed()
        page.wait_for_timeout(2000)
        box = canvas.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.evaluate(f"() => {{ window.__fps = ({COUNT_FRAMES})(3000); }}")  # counts while we drag
        t0 = time.time()
        i = 0
        while time.time() - t0 < 3.2:  # keep dragging for the 3 s being counted
            i += 1
            page.mouse.move(x + 60 * ((i % 20) - 10) / 10, y, steps=2)
        page.mouse.up()
        out["splat_drag_fps"] = page.evaluate("() => window.__fps")
        browser.close()
    return out


def measure_api(url: str, repeats: int) -> dict:
    """The server's share, through gradio_client: click-to-first-result and one orbit re-render."""
    from gradio_client import Client, handle_file

    from demo.examples import load_examples

    _phase("api")
    client = Client(url, verbose=False)
    example = load_examples()[0]
    first, orbit = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        job = client.submit("", handle_file(str(example.path())), *example.camera_row(), 0, 1, 0,
                            api_name="/reconstruct")
        while not any(o and o[0] for o in job.outputs()):  # the first update carrying the result image
            if job.done() or time.perf_counter() - start > 120:
                raise RuntimeError(f"/reconstruct gave no result image: {job.exception()}")
            time.sleep(0.002)
        first.append(1000 * (time.perf_counter() - start))
        job.result()
    for i in range(repeats * 2):
        start = time.perf_counter()
        client.predict(30 + i, 30, api_name="/reconstruct_orbit")
        orbit.append(1000 * (time.perf_counter() - start))
    return {"api_first_result_ms": {"median": statistics.median(first), "all": first},
            "api_orbit_ms": {"median": statistics.median(orbit), "all": orbit}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="clevr1-32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-webgl", action="store_true",
                        help="Chromium without WebGL: the 3D viewers cannot draw (no software rendering on the CPU); "
                             "no splat frame rate")
    parser.add_argument("--timeout", type=int, default=300,
                        help="abort (naming the stalled phase) when one phase takes longer than this many seconds")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_browser.json"))
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    _watchdog(args.timeout)
    _phase(f"server: loading {args.model}")
    from demo.app import build_app, launch
    from demo.results import OutputStore

    with tempfile.TemporaryDirectory() as tmp:
        app = build_app(args.model, store=OutputStore(Path(tmp)))
        port = _port()
        launch(app, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            url = f"http://127.0.0.1:{port}/"
            result = {**measure_api(url, args.repeats), **measure(url, args.repeats, webgl=not args.no_webgl)}
            signal.alarm(0)  # measured: nothing after this may lose the results
            _PHASE[1] = 0
        finally:
            app.close()
    report = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "loadavg": os.getloadavg(), "model": args.model, "webgl": not args.no_webgl, **result}
    for key in ("api_first_result_ms", "api_orbit_ms", "first_result_ms", "orbit_slider_ms", "live_slider_ms",
                "live_frame_ms"):
        print(f"{key}: median {result[key]['median']:.0f} ms  (all: {[round(v) for v in result[key]['all']]})")
    if "splat_drag_fps" in result:
        print(f"splat drag: {result['splat_drag_fps']:.1f} frames/s")
    print(f"live view drag: {result['live_drag_fps']:.1f} frames/s")
    print(f"page frame rate at rest: {result['idle_page_fps']:.1f} frames/s")
    write_report(report, args.out)


if __name__ == "__main__":
    main()
