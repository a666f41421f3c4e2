"""The live viewer's JavaScript (demo/live_viewer.js) in Chromium: it draws what the reference marcher
(rdiff.baked_volume.render_baked) draws, and dragging or setView turns it, with no server."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_config

from demo.live_viewer import JS, TEMPLATE
from rdiff import RenderDiffusion
from rdiff.baked_volume import BakedVolume, bake_volume, render_baked
from rdiff.cameras import orbit_cameras
from rdiff.sampling import reconstruct

pytestmark = pytest.mark.browser

#: Runs the viewer's js_on_load body as Gradio's gr.HTML would: with ``element``, ``props`` and ``watch``.
HARNESS = """([js, value]) => {
  const element = document.getElementById('root');
  const props = { value };
  new Function('element', 'props', 'watch', js)(element, props, () => {});
  return true;
}"""


@pytest.fixture(scope="module")
def page(browser):
    pg = browser.new_page(viewport={"width": 400, "height": 400})
    yield pg
    pg.close()


def _volume() -> BakedVolume:
    torch.manual_seed(0)
    model = RenderDiffusion(tiny_config(background="ray")).eval()
    with torch.no_grad():
        model.renderer.ray_background.mlp[-1].weight.normal_(0, 1.0)  # a background that varies per ray
        model.field.decoder.out.bias[0] = 1.5  # some density everywhere, so the grid is not empty
    scene = reconstruct(model, torch.zeros(1, 3, 16, 16), orbit_cameras(40.0, 25.0, 3.0, math.radians(45))).scenes[0]
    return bake_volume(scene, resolution=16, min_alpha=1e-3)


def _load(page, payload: dict) -> None:
    page.set_content(f'<div id="host"><div id="root">{TEMPLATE}</div></div>')
    page.evaluate(HARNESS, [JS, json.dumps(payload)])
    page.wait_for_function("() => document.querySelector('canvas').dataset.frames", timeout=20000)


def _pixels(page) -> np.ndarray:
    data = page.evaluate("""() => { const c = document.querySelector('canvas');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""")
    size = int(math.isqrt(len(data) // 4))
    return np.asarray(data, np.float32).reshape(size, size, 4)[..., :3] / 255


def _frames(page) -> int:
    return int(page.evaluate("document.querySelector('canvas').dataset.frames"))


def test_javascript_draws_what_the_reference_marcher_draws(page):
    vol = _volume()
    assert (vol.alpha > 0).mean() > 0.5
    _load(page, vol.payload(size=24))
    first = _pixels(page)
    assert first.shape == (24, 24, 3)
    np.testing.assert_allclose(first, render_baked(vol, vol.azimuth, vol.elevation, 24), atol=1.5 / 255)
    n = _frames(page)
    page.evaluate("document.getElementById('host').rdiffLive.setView(200, 50)")  # the sliders' entry point
    page.wait_for_function(f"() => Number(document.querySelector('canvas').dataset.frames) > {n}")
    turned = _pixels(page)
    np.testing.assert_allclose(turned, render_baked(vol, 200, 50, 24), atol=1.5 / 255)
    assert np.abs(turned - first).mean() > 0.01  # another view looks different


def test_dragging_orbits_without_the_server(page):
    vol = _volume()
    _load(page, vol.payload(size=16))
    start = page.evaluate("document.getElementById('host').rdiffLive.view()")
    box = page.locator("canvas").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 50, y + 20, steps=5)
    page.mouse.up()
    page.wait_for_timeout(100)
    az, el = page.evaluate("document.getElementById('host').rdiffLive.view()")
    assert az == pytest.approx(start[0] - 30.0) and el == pytest.approx(start[1] + 12.0)  # 0.6 degrees per pixel
    assert page.evaluate("document.querySelector('canvas').dataset.view") == f"{az:.1f},{el:.1f}"
    info = page.locator(".live3d-info").inner_text()
    assert "ms per frame" in info and f"elevation {el:.0f}" in info


def test_a_broken_payload_says_so_instead_of_drawing(page):
    page.set_content(f'<div id="host"><div id="root">{TEMPLATE}</div></div>')
    page.evaluate(HARNESS, [JS, json.dumps({"version": 7})])
    page.wait_for_function("() => document.querySelector('.live3d-info').textContent.includes('cannot')")
    assert not page.evaluate("document.querySelector('canvas').dataset.frames")
