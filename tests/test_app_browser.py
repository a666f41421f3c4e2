"""Real headless Chromium: upload into the Inpaint editor, paint a stroke, inpaint; splats; the model picker."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager

import pytest

pytestmark = pytest.mark.browser

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from app_server import running_app

    with running_app(tmp_path_factory.mktemp("app")) as srv:
        yield srv


def _record(errors: list[str], error) -> None:
    errors.append(error.stack or str(error))


@contextmanager
def app_page(browser, url: str, height: int):
    """A page on the app (1400 px wide) and the list its JavaScript errors are collected in."""
    page = browser.new_page(viewport={"width": 1400, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda e: _record(errors, e))
    try:
        page.goto(url)
        yield page, errors
    finally:
        page.close()


def test_inpaint_with_brush_stroke(browser, server, tmp_path):
    from demo.examples import load_examples

    with app_page(browser, server.url, 1000) as (page, errors):
        page.get_by_role("tab", name="Inpaint").click()
        editor = page.locator("#inpaint-editor")
        canvas = editor.locator("canvas").first
        canvas.wait_for(timeout=30_000)  # the editor's drawing engine is set up: uploads can be handled
        editor.locator("input[type=file]").first.set_input_files(str(load_examples()[1].path()))
        page.wait_for_timeout(1000)  # let the editor draw the uploaded background

        editor.get_by_role("button", name="Brush", exact=True).click()
        box = canvas.bounding_box()
        x, y = box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.35
        page.mouse.move(x, y)
        page.mouse.down()
        for i in range(1, 16):
            page.mouse.move(x + 6 * i, y + 4 * i)
        page.mouse.up()

        steps = page.locator("input[aria-label='number input for Denoising steps']:visible")
        steps.fill("3")
        steps.press("Enter")
        page.locator("#inpaint-run").click()

        # The notes appear with the final result; an empty mask would have raised an error instead.
        page.locator("#inpaint-notes").get_by_text("Input view").wait_for(timeout=180_000)
        image = page.locator("#inpaint-image img")
        image.wait_for(timeout=10_000)
        assert image.evaluate("img => img.complete && img.naturalWidth") >= 64
        assert page.locator(".toast-body.error").count() == 0
        if os.environ.get("RDIFF_SCREENSHOTS"):
            page.screenshot(path=os.path.join(os.environ["RDIFF_SCREENSHOTS"], "inpaint.png"), full_page=True)
        assert not errors, errors


def test_reconstruct_shows_orbitable_gaussian_splats_and_live_view(browser, server, tmp_path):
    """The splat viewer (gr.Model3D on the .ply) draws the scene in the browser and redraws while dragged; the
    live view (demo.live_viewer) draws it too and follows the orbit sliders."""
    import numpy as np
    from PIL import Image

    from demo.examples import load_examples

    with app_page(browser, server.url, 1400) as (page, errors):
        page.locator("#reconstruct-run").wait_for(timeout=30_000)
        page.locator("#reconstruct-input input[type=file]").first.set_input_files(str(load_examples()[0].path()))
        page.wait_for_timeout(1500)
        page.locator("#reconstruct-run").click()
        page.locator("#reconstruct-notes").get_by_text("Input view").wait_for(timeout=180_000)
        canvas = page.locator("#reconstruct-splats canvas")
        canvas.wait_for(timeout=60_000)
        page.wait_for_timeout(3000)  # the splat file loads and sorts
        canvas.screenshot(path=str(tmp_path / "splats.png"))
        pixels = np.asarray(Image.open(tmp_path / "splats.png").convert("RGB")).astype(np.int16)
        assert pixels.reshape(-1, 3).std(axis=0).max() > 8, "the splat viewer drew an empty canvas"
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        for i in range(20):
            page.mouse.move(box["x"] + box["width"] / 2 + 8 * i, box["y"] + box["height"] / 2)
        page.mouse.up()
        page.wait_for_timeout(500)
        canvas.screenshot(path=str(tmp_path / "splats_dragged.png"))
        moved = np.asarray(Image.open(tmp_path / "splats_dragged.png").convert("RGB")).astype(np.int16)
        assert np.abs(moved - pixels).mean() > 1.0, "dragging did not change the view"
        # the live view: drawn in the browser from the result's baked volume, turned by its orbit sliders
        live = page.locator("#reconstruct-live canvas")
        page.wait_for_function("() => document.querySelector('#reconstruct-live canvas').dataset.frames")
        view = lambda: [float(v) for v in live.get_attribute("data-view").split(",")]  # noqa: E731
        az0, el0 = view()
        slider = page.locator("#reconstruct-orbit-azimuth input[type=range]")
        slider.scroll_into_view_if_needed()
        slider.focus()
        slider.press("ArrowRight")
        page.wait_for_function(f"() => document.querySelector('#reconstruct-live canvas').dataset.view !== "
                               f"'{az0:.1f},{el0:.1f}'")
        assert view() == [float(slider.input_value()), float(page.locator(
            "#reconstruct-orbit-elevation input[type=range]").input_value())]
        live.screenshot(path=str(tmp_path / "live.png"))
        shown = np.asarray(Image.open(tmp_path / "live.png").convert("RGB")).astype(np.int16)
        assert shown.reshape(-1, 3).std(axis=0).max() > 8, "the live view drew an empty canvas"
        if os.environ.get("RDIFF_SCREENSHOTS"):
            page.screenshot(path=os.path.join(os.environ["RDIFF_SCREENSHOTS"], "reconstruct.png"), full_page=True)
        assert not errors, errors


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    """The app serving the tiny shipped models of tests/app_server.py (clevr1-32, chairs-64, plain-16)."""
    from app_server import make_shipped, running_app

    weights, assets = make_shipped(tmp_path_factory.mktemp("shipped"))
    # no example result on page open here (test_page_opens_with_an_example_result has its own server): its
    # splat viewer keeps software WebGL busy enough to stall the next page of the shared browser
    with running_app(tmp_path_factory.mktemp("app"), default="clevr1-32", weights=weights, assets=assets,
                     example_result=False) as srv:
        yield srv


def test_model_picker_switches_examples_and_cameras(browser, shipped_server):
    """Choosing another shipped model in the picker shows its examples and camera; an example click uses them."""
    from app_server import CHAIR_EXAMPLE
    from playwright.sync_api import expect

    from demo.examples import load_examples

    def slider(label: str):
        return page.locator(f"input[aria-label='number input for {label}']:visible")

    def pick_model(name: str):
        page.locator("#model-picker input").click()
        page.get_by_role("option", name=name, exact=True).click()
        page.locator("#model-status").get_by_text(name).wait_for(timeout=60_000)

    with app_page(browser, shipped_server.url, 1400) as (page, errors):
        gallery = page.locator("#reconstruct-examples")
        thumbs = gallery.locator(".gallery-item button")
        thumbs.first.wait_for(timeout=30_000)
        assert thumbs.count() == len(load_examples())  # the default clevr1-32's examples

        pick_model("chairs-64")
        page.wait_for_function("() => document.querySelectorAll('#reconstruct-examples .gallery-item').length == 1",
                               timeout=30_000)
        expect(slider("Azimuth (°)")).to_have_value("200")  # chairs-64's default camera
        thumbs.first.click()
        for label, key in (("Azimuth (°)", "azimuth"), ("Elevation (°)", "elevation")):  # the example's camera
            expect(slider(label)).to_have_value(re.compile(rf"^{CHAIR_EXAMPLE[key]:g}(\.0)?$"), timeout=10_000)
        page.locator("#reconstruct-input img").first.wait_for(timeout=10_000)  # the chair image was set

        page.get_by_role("tab", name="Inpaint").click()  # the Inpaint tab follows the same model
        page.locator("#inpaint-examples .gallery-item").first.wait_for(timeout=10_000)
        assert page.locator("#inpaint-examples .gallery-item").count() == 1

        pick_model("plain-16")  # no examples: both galleries hidden
        page.locator("#inpaint-examples").wait_for(state="hidden", timeout=30_000)
        expect(slider("Azimuth (°)")).to_have_value("10")

        picker = page.locator("#model-picker input")  # a typed folder (custom value) loads on Enter too
        picker.click()
        picker.fill(str(shipped_server.checkpoint))
        picker.press("Enter")
        page.locator("#model-status").get_by_text(str(shipped_server.checkpoint)).wait_for(timeout=60_000)
        pick_model("clevr1-32")  # and back: its examples again
        page.locator("#inpaint-examples .gallery-item").first.wait_for(timeout=30_000)
        assert page.locator("#inpaint-examples .gallery-item").count() == len(load_examples())
        assert page.locator(".toast-body.error").count() == 0
        if os.environ.get("RDIFF_SCREENSHOTS"):
            page.screenshot(path=os.path.join(os.environ["RDIFF_SCREENSHOTS"], "model_picker.png"), full_page=True)
        assert not errors, errors


VISIBLE_TRACKERS = """() => [...document.querySelectorAll('[data-testid=status-tracker]')]
    .filter(t => !t.classList.contains('hide') && getComputedStyle(t).opacity !== '0'
                 && t.querySelector('.progress-text, .eta-bar, .progress-bar'))
    .map(t => (t.closest('[id]') || {}).id)"""
ERROR_BADGES = """() => [...document.querySelectorAll('[data-testid=status-tracker].error')]
    .filter(t => !t.classList.contains('hide')).length"""
TWO_LINE_LABELS = """() => [...document.querySelectorAll('[data-testid=block-label]')]
    .filter(l => l.offsetParent !== null && l.innerText.trim() && l.getBoundingClientRect().height > 32)
    .map(l => l.innerText.trim())"""


def test_run_feedback_layout_and_input_mistakes(browser, server):
    """One progress display (the notes; no Gradio bar on every output, none flickering at each preview), the
    old outputs cleared when a run starts, an input mistake reported once (a toast, no 'Error' badge on the
    outputs), run buttons without scrolling, one-line labels."""
    import time

    from demo.examples import load_examples

    with app_page(browser, server.url, 900) as (page, errors):
        page.locator("#reconstruct-run").wait_for(timeout=30_000)
        for tab in ("Reconstruct", "Inpaint", "Generate"):
            page.get_by_role("tab", name=tab).click()
            button = page.locator(f"#{tab.lower()}-run")
            button.wait_for(timeout=10_000)
            box = button.bounding_box()
            assert box["y"] + box["height"] <= 900, f"the {tab} button is below the fold ({box})"
            assert not page.evaluate(TWO_LINE_LABELS), tab
        page.get_by_role("tab", name="Reconstruct").click()

        page.locator("#reconstruct-run").click()  # no image: an input mistake
        toast = page.locator(".toast-body.error")
        toast.first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)
        assert toast.count() == 1 and "no input image" in toast.first.inner_text()
        assert page.evaluate(ERROR_BADGES) == 0, "error badges over the outputs"
        assert "Starting" not in page.locator("#reconstruct-notes").inner_text()
        page.locator(".toast-close").first.click()

        page.locator("#reconstruct-input input[type=file]").first.set_input_files(str(load_examples()[0].path()))
        page.wait_for_timeout(1500)
        page.locator("#reconstruct-run").click()
        page.locator("#reconstruct-notes").get_by_text("Input view").wait_for(timeout=180_000)
        page.locator("#reconstruct-depth img").wait_for(timeout=30_000)
        wrapped = page.evaluate(TWO_LINE_LABELS)
        assert not wrapped, f"labels wrapped under the image buttons: {wrapped}"

        for label, value in (("t_r (input noise level)", "40"), ("Denoising steps", "30")):
            box = page.locator(f"input[aria-label='number input for {label}']:visible")
            box.fill(value)
            box.press("Enter")
        page.wait_for_timeout(500)
        # Every change of the notes is recorded in the page (sampling from here would miss some: the page's
        # thread is busy drawing the splats in software WebGL): its text, whether the old depth is still
        # shown and which Gradio progress bars are visible.
        page.evaluate("""(trackers) => {
            window.__seen = [];
            const notes = document.querySelector('#reconstruct-notes');
            new MutationObserver(() => window.__seen.push([notes.innerText,
                document.querySelectorAll('#reconstruct-depth img').length, eval(trackers)()]))
                .observe(notes, {subtree: true, childList: true, characterData: true});
        }""", VISIBLE_TRACKERS)
        hook = server.model.register_forward_pre_hook(lambda *_: time.sleep(0.15))  # ~5 s of denoising
        try:
            page.locator("#reconstruct-run").click()
            page.locator("#reconstruct-notes").get_by_text("Denoising: step").wait_for(timeout=60_000)
            page.locator("#reconstruct-notes").get_by_text("Input view").wait_for(timeout=180_000)
        finally:
            hook.remove()
        seen = page.evaluate("() => window.__seen")
        running = [(text, depth, bars) for text, depth, bars in seen if "Denoising: step" in text]
        steps = {text.split("step ")[1].split(" ")[0] for text, _, _ in running}
        assert len(steps) >= 3, f"the notes did not follow the run: {steps}"
        assert not [bars for *_, bars in seen if bars], "Gradio progress bars shown"
        assert all(depth == 0 for _, depth, _ in running), "the previous run's depth stayed while the new one ran"
        page.locator("#reconstruct-depth img").wait_for(timeout=60_000)  # and the new result arrives
        if os.environ.get("RDIFF_SCREENSHOTS"):
            page.screenshot(path=os.path.join(os.environ["RDIFF_SCREENSHOTS"], "run_feedback.png"), full_page=True)
        assert not errors, errors


def test_upload_checks_and_camera_estimate(browser, server, tmp_path):
    """A file that is not an image, uploaded into the Inpaint editor, is named under it (the editor itself stays
    silent); an image uploaded to Reconstruct fills the camera sliders from the model's camera estimator, and
    its Run button waits for the estimate."""
    from app_server import make_estimating_checkpoint
    from playwright.sync_api import expect

    from demo.examples import load_examples

    (tmp_path / "notes.txt").write_text("not an image")
    estimating = make_estimating_checkpoint(tmp_path / "estimating", [0.2, -0.5, 1.0])  # 40°, 2.75, 50°
    with app_page(browser, server.url, 1400) as (page, errors):
        page.get_by_role("tab", name="Inpaint").click()
        editor = page.locator("#inpaint-editor")
        editor.locator("canvas").first.wait_for(timeout=30_000)
        message = page.locator("#inpaint-upload-message")
        editor.locator("input[type=file]").first.set_input_files(str(tmp_path / "notes.txt"))
        expect(message).to_contain_text('"notes.txt" is not an image', timeout=10_000)
        editor.locator("input[type=file]").first.set_input_files(str(load_examples()[1].path()))
        expect(message).to_have_text("", timeout=10_000)  # a readable image clears it
        # the editor's own decoding error for the text file is the expected consequence of that input
        errors[:] = [e for e in errors if "could not be decoded" not in e]

        picker = page.locator("#model-picker input")
        picker.click()
        picker.fill(str(estimating))
        picker.press("Enter")
        page.locator("#model-status").get_by_text(str(estimating)).wait_for(timeout=60_000)
        page.get_by_role("tab", name="Reconstruct").click()
        elevation = page.locator("input[aria-label='number input for Elevation (°)']:visible")
        expect(elevation).not_to_have_value("40")
        page.evaluate("""() => { window.__runHeld = false;  // was the run button held while estimating?
          new MutationObserver(() => { const b = document.querySelector('#reconstruct-run');
            if (b && b.disabled && /Estimating/.test(b.innerText)) window.__runHeld = true; })
            .observe(document.body, {attributes: true, childList: true, subtree: true, characterData: true}); }""")
        page.locator("#reconstruct-input input[type=file]").first.set_input_files(str(load_examples()[0].path()))
        expect(elevation).to_have_value("40", timeout=30_000)
        run = page.locator("#reconstruct-run")
        expect(run).to_be_enabled()
        expect(run).to_have_text("Reconstruct")
        assert page.evaluate("() => window.__runHeld"), "Run must wait for the camera estimate"
        expect(page.locator("input[aria-label='number input for Distance (scene units)']:visible")).to_have_value(
            "2.75")
        # .last: on a quick machine the Inpaint upload's own estimate toast may still be showing
        expect(page.locator(".toast-body").get_by_text("Camera estimated from the image").last).to_be_visible()
        if os.environ.get("RDIFF_SCREENSHOTS"):
            page.screenshot(path=os.path.join(os.environ["RDIFF_SCREENSHOTS"], "camera_estimate.png"))
        assert not errors, errors


def test_page_opens_with_an_example_result(browser, tmp_path):
    """A visitor sees a 3D result before running anything: the default model's first example, reconstructed."""
    from app_server import make_shipped, running_app
    from playwright.sync_api import expect

    weights, assets = make_shipped(tmp_path / "shipped")
    with (running_app(tmp_path / "app", default="clevr1-32", weights=weights, assets=assets) as server,
          app_page(browser, server.url, 1400) as (page, errors)):
        notes = page.locator("#reconstruct-notes")
        expect(notes).to_contain_text("Example result", timeout=60_000)
        image = page.locator("#reconstruct-image img")
        image.wait_for(timeout=10_000)
        assert image.evaluate("img => img.complete && img.naturalWidth") >= 64
        assert page.locator("#reconstruct-input img").count() == 1  # the example is the input
        page.locator("#reconstruct-splats canvas").wait_for(timeout=60_000)  # the 3D viewers are filled
        if os.environ.get("RDIFF_SCREENSHOTS"):
            page.screenshot(path=os.path.join(os.environ["RDIFF_SCREENSHOTS"], "page_open.png"), full_page=True)
        assert page.locator(".toast-body.error").count() == 0
        assert not errors, errors
