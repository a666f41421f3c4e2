"""The Gradio layout: a model picker and three tabs (Reconstruct, Inpaint, Generate).

The model picker lists the shipped models by name (``weights/<name>/``, :func:`rdiff.hub.shipped_models`)
and takes a typed Hub id or local folder too. Choosing a model loads it (``/load_model``), sets the camera
sliders to its config's default camera and shows its examples (``assets/<name>/``, :mod:`demo.examples`)
in the Reconstruct and Inpaint tabs; the galleries are hidden for a model without examples. The examples
shown are kept per session (``gr.State``): clicking one sets the image and camera of that model's example.

Every task ends in the same result panel (:class:`ResultPanel`): the result image (the final triplane
rendered from the input camera, the same scene as every 3D view; Inpaint adds the 2D composite, known
pixels pasted around the fill, as a labelled extra), depth, a live orbit preview (sliders re-render the
triplane cached in ``gr.State``: no diffusion is re-run), an mp4 turntable, an interactive plotly mesh
view and the GLB mesh (``gr.Model3D`` + download).

Queue and concurrency (see :func:`build_app`): the work is CPU-bound PyTorch, and two denoising runs
at once only split the same cores and finish later, so all diffusion events (the three tasks, picking
another generated sample, loading a model) share one concurrency group, ``"diffusion"``, limited to
``concurrency`` jobs (default 1, env ``RDIFF_CONCURRENCY``); at most ``max_queue`` requests wait
(default 16), beyond that new requests are refused at once instead of waiting minutes. The cheap
previews (noised input x_{t_r}, orbit re-renders: a few milliseconds to ~0.2 s) run in their own
group, ``"preview"`` (2 at a time), so they stay responsive while a long run is going.

Feedback (see :meth:`ResultPanel.wire_run`): the run events show no Gradio progress tracker (it would be
drawn over every output and hidden at every preview yield); the handlers write the progress into the notes,
clear the old outputs once the run has started and leave them on an input mistake, whose message shows once
(a toast, no "Error" badges). A run that fails midway restores the session's current result.

State: each result panel keeps a :class:`demo.results.ResultState` (the run's Scene objects: triplane,
world-from-triplane rotation, camera, model; plus the files already rendered) in a per-session ``gr.State``;
the orbit sliders and the gallery re-render from it. Models are cached by source in the app's
:class:`demo.models.ModelRegistry`. "Stop" sets a per-session :class:`demo.handlers.StopFlag`
(not queued); the run ends after its current step and still returns a result. Cancelling the event
instead (gradio_client ``job.cancel()``, or the page being closed) closes the handler's generator at
its next yield (previews come every 0.5 s) and frees the worker at once; it returns nothing, and the
session's previous result stays. docs/reliability.md has the measurements behind these settings.

API endpoints (``gradio_client``; ``Client(url).view_api()`` lists them with descriptions and types):
``/load_model``, ``/estimate_camera``, ``/noise_preview``, ``/reconstruct``, ``/inpaint``, ``/generate``,
``/orbit``, ``/sample``, ``/reconstruct_orbit``, ``/inpaint_orbit``, ``/generate_orbit``; undocumented:
``/model_examples`` (the example galleries of the session's last loaded model, run after ``/load_model``).
Outputs have names chosen here (``image``, ``depth``, ``orbit_view``, ..., ``scene_id``:
:func:`demo.components.named`), step counts are typed ``int`` (:class:`demo.components.IntSlider`) and
``/generate``'s last output is the plain list of its samples. Every run stores its result in
:class:`demo.results.SceneStore` (an LRU, 64 results, 2 h after last use) under the ``scene_id`` it returns:
``/orbit`` (scene_id, sample, azimuth, elevation) and ``/sample`` (scene_id, sample: all panel outputs of that
sample) work from any client. The ``/*_orbit`` endpoints re-render the calling session's last result (keep one
``Client`` per session) and refuse a session without one.
The inpaint editor value is ``{"background": image, "layers": [mask_rgba], "composite": None}``:
the mask is the alpha channel of ``layers[0]`` (painted = fill in); a layer of another size is scaled to
the image when it has the same shape, else refused. Images reach the handlers unconverted (any mode).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from demo.components import CheckedEditor, CheckedImage, IntSlider, RdiffBlocks, named
from demo.examples import ASSETS, Example, load_examples
from demo.handlers import MAX_BATCH, MAX_RESAMPLE, PANEL_FIELDS, Handlers, ModelInfo, StopFlag
from demo.live_viewer import live_viewer
from demo.models import ModelRegistry
from demo.results import OutputStore
from rdiff.config import RenderDiffusionConfig
from rdiff.sampling import InpaintSettings

log = logging.getLogger("rdiff.demo")

DIFFUSION = "diffusion"  # concurrency group of the heavy events
PREVIEW = "preview"  # concurrency group of the cheap re-renders
PREVIEW_CONCURRENCY = 2
MAX_FILE_SIZE = "50mb"
STATE_TTL_S = 7200  # a session's cached scenes are dropped 2 h after its last run (files: OutputStore, 2 h)
STATE_SESSIONS = 200  # sessions whose gr.State is kept (each holds a few MB of triplanes at most)

CSS = """
.pixelated img, .pixelated canvas { image-rendering: pixelated; }
.run-notes { min-height: 3.5em; }
.upload-message:empty { display: none; }
.upload-message { color: var(--error-text-color); background: var(--error-background-fill);
                  border: 1px solid var(--error-border-color); border-radius: 6px; padding: 6px 10px; }
"""

#: Page script (runs once on load). The image editor decodes an upload in the browser and, for a file that is
#: not an image, only logs an error and stays empty; this checks each file picked for the editor and says so
#: under it (cleared by the next readable image).
UPLOAD_CHECK_JS = """
() => {
  const say = (text) => {
    const box = document.getElementById("inpaint-upload-message");
    if (box) box.textContent = text;
  };
  document.addEventListener("change", async (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file" || !input.closest("#inpaint-editor")) return;
    const file = input.files && input.files[0];
    if (!file) return;
    try {
      (await createImageBitmap(file)).close();
      say("");
    } catch (err) {
      say(`"${file.name}" is not an image the browser can read (PNG, JPEG, WebP, GIF or BMP): ` +
          "the editor stays empty. Upload an image file, or pick an example.");
    }
  }, true);
}
"""

INTRO = """
# RenderDiffusion · `rdiff`
Image diffusion whose denoiser predicts the clean image by **volume-rendering a triplane** it infers
from the noisy image. The final triplane is a 3D scene: every result below can be orbited, played as
a turntable, spun as Gaussian splats in your browser and downloaded as a mesh.
([paper](https://arxiv.org/abs/2211.09869), CVPR 2023, Anciukevičius et al.; model card: `weights/<model>/README.md`)

**What the shipped models can do.** Each knows only what it was trained on: the line under the model picker says
what, for the chosen model (its model card says more). Inputs like its training images reconstruct faithfully at
t_r = 0. A photo of anything else is out of distribution: at t_r = 0 it comes back as colour mush, and at
t_r ≥ 40 the prior turns it into the nearest thing the model knows.
"""

MAX_TR_SLIDER = 300  # t_r beyond ~300 of 1000 keeps little of the input; the slider stays fine-grained below

TR_INFO = ("Noise the input to timestep t_r before denoising (the image on the right: what the model sees). "
           "0 = most faithful (one pass). "
           "Around 40 makes reconstruction robust to inputs unlike the training images: "
           "the diffusion prior fixes them.")


@dataclass
class CameraSliders:
    azimuth: gr.Slider
    elevation: gr.Slider
    radius: gr.Slider
    fov: gr.Slider

    @classmethod
    def build(cls, config: RenderDiffusionConfig, tab: str) -> CameraSliders:
        """The camera sliders of ``tab`` (their API names, as /load_model's outputs: ``<tab>_azimuth``, ...)."""
        with gr.Accordion("Input camera (must match the photo's viewpoint; estimated on upload where the model "
                          "ships a camera estimator)", open=True):
            with gr.Row():
                az = gr.Slider(0, 360, value=config.default_azimuth % 360, step=1, label="Azimuth (°)")
                el = gr.Slider(-10, 89, value=config.default_elevation, step=1, label="Elevation (°)")
            with gr.Row():
                r = gr.Slider(1.5, 6.0, value=config.default_radius, step=0.05, label="Distance (scene units)")
                fov = gr.Slider(10, 90, value=round(math.degrees(config.default_fov_x), 1), step=0.5,
                                label="Horizontal field of view (°)")
        for slider, what in ((az, "azimuth"), (el, "elevation"), (r, "radius"), (fov, "fov_deg")):
            named(slider, f"{tab}_{what}")
        return cls(az, el, r, fov)

    @property
    def inputs(self) -> list[gr.Slider]:
        return [self.azimuth, self.elevation, self.radius, self.fov]

    @staticmethod
    def defaults(config: RenderDiffusionConfig) -> list[Any]:
        return [config.default_azimuth % 360, config.default_elevation, config.default_radius,
                round(math.degrees(config.default_fov_x), 1)]


@dataclass
class ResultPanel:
    """The outputs shared by all tasks, in :data:`demo.handlers.PANEL_FIELDS` order."""

    image: gr.Image
    depth: gr.Image
    orbit: gr.Image
    orbit_azimuth: gr.Slider
    orbit_elevation: gr.Slider
    video: gr.Video
    plot: gr.Plot
    mesh_file: gr.File
    notes: gr.Markdown
    state: gr.State
    model3d: gr.Model3D  # not in PANEL_FIELDS: filled by show_mesh() after each update
    splats3d: gr.Model3D  # likewise: the Gaussian splats, orbited in the browser
    live3d: gr.HTML  # likewise: the baked volume, ray-marched in the browser (demo.live_viewer)
    scene_id: gr.Textbox | None = None
    composite: gr.Image | None = None  # Inpaint only, not in PANEL_FIELDS: known pixels + the fill (2D)

    @classmethod
    def build(cls, name: str, composite: bool = False) -> ResultPanel:
        """The panel of tab ``name``; ``composite``: also show the inpainting composite (a labelled extra).

        Labels are short enough for one line next to the image's button (long ones wrapped under it); the
        caption below the images says what each one is.
        """
        state = gr.State(None, time_to_live=STATE_TTL_S)
        notes = gr.Markdown("", label="Notes", elem_id=f"{name}-notes", elem_classes=["run-notes"])
        small = dict(type="filepath", interactive=False, elem_classes=["pixelated"], height=220,
                     buttons=["download"])
        with gr.Row(equal_height=True):
            image = gr.Image(label="Result (3D scene)", elem_id=f"{name}-image", **small)
            extra = gr.Image(label="Composite (2D)", elem_id=f"{name}-composite", **small) if composite else None
            depth = gr.Image(label="Depth: yellow = near", elem_id=f"{name}-depth", **small)
            orbit = gr.Image(label="Orbit view", elem_id=f"{name}-orbit", format="png", **small)
        caption = ("**Result**: the final triplane rendered from the input camera, the scene every 3D view "
                   "shows. **Orbit view**: the same scene re-rendered from the sliders below (no diffusion). "
                   "**Live 3D**: drag it to spin the scene in your browser (a baked copy of the scene, ray-marched "
                   "on your machine; the sliders turn it too).")
        if composite:
            caption += (" **Composite**: your known pixels pasted around the fill, a 2D image only: it can look "
                        "intact where the 3D scene is not (e.g. after Stop).")
        gr.Markdown(caption, elem_classes=["panel-caption"])
        with gr.Row():
            az = gr.Slider(0, 360, value=0, step=1, label="Orbit azimuth (°)", elem_id=f"{name}-orbit-azimuth")
            el = gr.Slider(-30, 89, value=30, step=1, label="Orbit elevation (°)", elem_id=f"{name}-orbit-elevation")
        with gr.Row(equal_height=True):
            live3d = live_viewer(f"{name}-live", (f"{name}-orbit-azimuth", f"{name}-orbit-elevation"))
            video = gr.Video(label="Turntable", interactive=False, autoplay=True, loop=True, height=280,
                             elem_id=f"{name}-video")
            plot = gr.Plot(label="Interactive 3D view (drag to rotate)", elem_id=f"{name}-plot")
        with gr.Row():
            splats3d = gr.Model3D(label="Gaussian splats (drag)", interactive=False, height=280, scale=3,
                                  elem_id=f"{name}-splats", camera_position=(45, 65, 4.5))
            model3d = gr.Model3D(label="Mesh (GLB)", interactive=False, height=280, scale=3, elem_id=f"{name}-mesh")
            with gr.Column(scale=2, min_width=200):
                mesh_file = gr.File(label="Download mesh (GLB)", interactive=False, height=90)
                gr.Markdown("The splats are orbited in your browser. The mesh is the density iso-surface "
                            "(marching cubes) without small detached floaters, coloured by the opaque material "
                            "under the surface; the download is the same GLB (+Y up, linear vertex colours as "
                            "glTF requires).")
        with gr.Accordion("Use this scene from the API (gradio_client)", open=False):
            scene_id = gr.Textbox(label="Scene id", interactive=False, buttons=["copy"], elem_id=f"{name}-scene-id")
            gr.Markdown("Any client can re-render this result or fetch another sample of its batch with the id: "
                        "`Client(url).predict(scene_id, 0, 90, 20, api_name=\"/orbit\")` (sample, azimuth, "
                        "elevation) or `predict(scene_id, 1, api_name=\"/sample\")`. The app keeps recent "
                        "results only (see the API page).")
        for component, api_name in ((image, "image"), (depth, "depth"), (orbit, "orbit_view"), (az, "orbit_azimuth"),
                                    (el, "orbit_elevation"), (video, "turntable"), (plot, "plot_3d"),
                                    (mesh_file, "mesh_glb"), (notes, "notes"), (scene_id, "scene_id")):
            named(component, api_name)
        if extra is not None:
            named(extra, "composite")
        return cls(image=image, depth=depth, orbit=orbit, orbit_azimuth=az, orbit_elevation=el, video=video, plot=plot,
                   mesh_file=mesh_file, notes=notes, state=state, model3d=model3d, splats3d=splats3d,
                   live3d=live3d, scene_id=scene_id, composite=extra)

    @property
    def outputs(self) -> list[gr.components.Component]:
        return [getattr(self, f) for f in PANEL_FIELDS]

    def wire_run(self, event: Any, handlers: Handlers, extra: gr.components.Component | None = None,
                 restore_extra: Callable[[Any], Any] | None = None) -> None:
        """The panel's side of a run ``event`` (its button's click).

        Runs show no Gradio progress bar (one per output, hidden at every preview): the handler writes the
        progress into the notes. At the click the notes say a run is starting; the handler clears the old
        outputs once the run has started (an input mistake leaves them, and its message shows once, as a
        toast); a run that fails midway gets the session's current result back (``restore_extra(state)``: the
        value of ``extra``, the task's output after the panel's). The 3D viewers are hidden with the mesh file
        emptied and shown, filled, when the run succeeds.
        """
        self.show_mesh(event, handlers)
        restore = handlers.restore if restore_extra is None else (lambda st: (*handlers.restore(st),
                                                                             restore_extra(st)))
        outputs = self.outputs if extra is None else [*self.outputs, extra]
        failed = event.failure(restore, self.state, outputs, api_visibility="private", queue=False,
                               show_progress="hidden")
        self.show_mesh(failed, handlers)

    def show_mesh(self, event: Any, handlers: Handlers) -> None:
        """After ``event`` succeeds, show the scene's GLB and its Gaussian splats in the Model3D viewers."""
        event.success(lambda st: gr.update(value=handlers.mesh(st), visible=True), self.state, self.model3d,
                      api_visibility="private", queue=False, show_progress="hidden")
        event.success(lambda st: gr.update(value=handlers.splats(st), visible=True), self.state, self.splats3d,
                      api_visibility="private", queue=False, show_progress="hidden")
        event.success(handlers.live, self.state, self.live3d, api_visibility="private", queue=False,
                      show_progress="hidden")

    def wire_clearing(self) -> None:
        """Hide the 3D viewers whenever the mesh file is emptied (a new run clears its outputs); the result's
        files show them again. Hidden, not emptied: emptying a gr.Model3D whose Babylon.js viewer is still
        loading its environment texture throws inside the viewer ('postProcessManager' of null)."""
        hidden = gr.update(visible="hidden")  # still in the DOM: the viewer is not torn down
        self.mesh_file.change(lambda f: (gr.skip(), gr.skip(), gr.skip()) if f else (hidden, hidden, ""),
                              self.mesh_file, [self.model3d, self.splats3d, self.live3d], api_visibility="private",
                              queue=False, show_progress="hidden")

    def wire_orbit(self, handlers: Handlers, api_name: str, task: str) -> None:
        """The orbit sliders re-render the session's scene (UI); ``/<api_name>`` does it for an API client's
        session, refusing (not returning None) when that session has no result."""
        preview = dict(concurrency_id=PREVIEW, concurrency_limit=PREVIEW_CONCURRENCY, show_progress="hidden")
        gr.on([self.orbit_azimuth.input, self.orbit_elevation.input], fn=handlers.orbit,
              inputs=[self.state, self.orbit_azimuth, self.orbit_elevation], outputs=self.orbit,
              api_name=f"{api_name}_ui", api_visibility="private", trigger_mode="always_last", **preview)
        gr.on([], fn=handlers.session_orbit, inputs=[self.state, self.orbit_azimuth, self.orbit_elevation],
              outputs=self.orbit, api_name=api_name, **preview,
              api_description=f"Re-render the calling session's last {task} result from (azimuth, elevation) in "
                              "degrees on its input camera's sphere (no diffusion; a few ms to 0.2 s). Needs a "
                              f"/{task} run from the same Client first; /orbit with a scene_id works from any "
                              "client.")


GPU_DURATION_S = 120  # ZeroGPU: the longest a run may hold the GPU (a long inpaint with resampling)


def on_gpu(fn):
    """``spaces.GPU`` for a Hugging Face ZeroGPU Space (the GPU is attached while ``fn`` runs, generators too);
    ``fn`` unchanged where the ``spaces`` package is not installed (it is a no-op on other Spaces itself)."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=GPU_DURATION_S)(fn)


def _gallery_props(examples: list[Example] | None) -> dict[str, Any]:
    examples = examples or []
    return dict(value=[(str(e.path()), e.title) for e in examples], visible=bool(examples),
                columns=max(1, len(examples)))


def gallery_update(examples: list[Example] | None) -> dict[str, Any]:
    """An example gallery showing ``examples`` (hidden when there are none)."""
    return gr.update(**_gallery_props(examples))


def example_values(examples: list[Example] | None, index: Any) -> tuple:
    """Image and camera (azimuth, elevation, radius, fov) of example ``index``; unchanged if there is none."""
    try:
        e = (examples or [])[int(index)]
    except (IndexError, TypeError, ValueError):
        return tuple(gr.skip() for _ in range(5))
    return (str(e.path()), *e.camera_row())


def _examples(name: str, component: gr.components.Component, cams: CameraSliders, examples: gr.State,
              initial: list[Example], label: str = "Examples (click one: sets the image and the camera)") -> gr.Gallery:
    """A row of example thumbnails; clicking one loads the image and sets the camera it was rendered from.

    ``examples`` is the session's list of the current model's examples (the gallery shows the same list).
    """
    gallery = gr.Gallery(label=label, height=150, allow_preview=False, object_fit="contain", interactive=False,
                         elem_id=f"{name}-examples", **_gallery_props(initial))

    def pick(current: list[Example] | None, evt: gr.SelectData):
        return example_values(current, evt.index)

    gallery.select(pick, examples, [component, *cams.inputs], api_visibility="private", queue=False)
    return gallery


STARTING_JS = "() => '⏳ **Starting…** (waiting for the model, or in the queue behind other runs)'"


@dataclass
class TaskTab:
    """One task's tab: its inputs on the left (the run/stop buttons among them), its result panel on the right.

    Built inside ``with TaskTab.layout(name, title, intro) as tab:``: the inputs in ``with tab.inputs_column:``
    (``tab.buttons(label)`` where the run/stop row goes), then :meth:`build_panel`. ``inputs`` are the task
    handler's inputs after the model and before the stop flag, ``extra`` its output after the panel's (if any).
    :func:`wire_task` connects the run and stop buttons, the progress notes and the failure restore.
    """

    name: str  # tab id, elem_id prefix and endpoint name (/<name>, /<name>_orbit)
    inputs_column: gr.Column
    panel_column: gr.Column
    run: gr.Button | None = None
    stop: gr.Button | None = None
    panel: ResultPanel | None = None
    inputs: list[gr.components.Component] = field(default_factory=list)
    extra: gr.components.Component | None = None
    cameras: CameraSliders | None = None  # the input camera (Reconstruct, Inpaint: set by /load_model)
    examples: gr.Gallery | None = None  # the example gallery (Reconstruct, Inpaint)

    @classmethod
    @contextmanager
    def layout(cls, name: str, title: str, intro: str) -> Iterator[TaskTab]:
        with gr.Tab(title, id=name):
            gr.Markdown(intro)
            with gr.Row():  # the columns are filled inside the row (a re-entered block takes the current parent)
                yield cls(name, gr.Column(scale=2, min_width=360), gr.Column(scale=3))

    def buttons(self, label: str) -> None:
        """The run and stop buttons, in one row."""
        with gr.Row():
            self.run = gr.Button(label, variant="primary", elem_id=f"{self.name}-run", scale=3)
            self.stop = gr.Button("Stop", variant="stop", scale=1, min_width=80, elem_id=f"{self.name}-stop")

    def build_panel(self, composite: bool = False) -> ResultPanel:
        with self.panel_column:
            self.panel = ResultPanel.build(self.name, composite=composite)
        if composite:
            self.extra = self.panel.composite
        return self.panel


@dataclass
class ReconstructTab(TaskTab):
    image: gr.Image | None = None
    t_r: gr.Slider | None = None
    seed: gr.Number | None = None
    noised: gr.Image | None = None  # the noise preview: the model's input x_{t_r}


def eta_slider(tab: str) -> gr.Slider:
    """DDIM's eta: how much fresh noise each sampling step adds (0: deterministic DDIM, 1: DDPM's level)."""
    with gr.Accordion("Sampler", open=False):
        return gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="DDIM η (stochasticity)",
                         info="0 = deterministic DDIM; 1 = as much fresh noise per step as DDPM (more varied, "
                              "needs more steps)", elem_id=f"{tab}-eta")


def reconstruct_tab(config: RenderDiffusionConfig, model_examples: gr.State, examples: list[Example]) -> ReconstructTab:
    intro = ("Monocular 3D reconstruction: the image is noised to **t_r** and denoised; the final "
             "triplane is the reconstructed scene.")
    with ReconstructTab.layout("reconstruct", "Reconstruct", intro) as tab:
        with tab.inputs_column:
            tab.image = CheckedImage(label="Input image", type="filepath", image_mode=None, height=240,
                                     sources=["upload", "clipboard"], elem_id="reconstruct-input")
            tab.buttons("Reconstruct")  # right under the input: visible without scrolling
            examples_column = gr.Column()
            tab.cameras = CameraSliders.build(config, "reconstruct")
            with examples_column:
                tab.examples = _examples("reconstruct", tab.image, tab.cameras, model_examples, examples)
            with gr.Row():
                tab.t_r = named(IntSlider(0, min(config.timesteps - 1, MAX_TR_SLIDER), value=0, step=1,
                                          label="t_r (input noise level)", info=TR_INFO, scale=3), "t_r_slider")
                tab.noised = named(gr.Image(label="Noised input", interactive=False, scale=2, buttons=[], min_width=120,
                                            elem_classes=["pixelated"], height=150, format="png",
                                            elem_id="reconstruct-noised"), "noised_input")
            with gr.Row():
                steps = IntSlider(1, 50, value=10, step=1, label="Denoising steps", info="at most t_r + 1 are used",
                                  scale=3)
                tab.seed = gr.Number(0, label="Seed", precision=0, minimum=0, scale=2, min_width=100)
            eta = eta_slider("reconstruct")
        tab.build_panel()
    tab.inputs = [tab.image, *tab.cameras.inputs, tab.t_r, steps, tab.seed, eta]
    return tab


def inpaint_tab(config: RenderDiffusionConfig, model_examples: gr.State, examples: list[Example]) -> TaskTab:
    intro = ("3D-aware inpainting (RePaint): upload an image, **paint over the region to fill in** "
             "with the brush, then run. The painted layer is the mask. Start each stroke on the image: the "
             "editor ignores strokes that begin in the margin around it.")
    with TaskTab.layout("inpaint", "Inpaint", intro) as tab:
        with tab.inputs_column:
            # image_mode=None: images reach the handler as uploaded (Gradio's RGBA conversion would
            # clip a 16-bit PNG to white; rdiff.preprocess converts every mode properly).
            editor = CheckedEditor(
                label="Image and mask", type="pil", image_mode=None, sources=["upload", "clipboard"],
                brush=gr.Brush(default_size=12, colors=["rgba(255, 0, 200, 0.8)"], color_mode="fixed"),
                eraser=gr.Eraser(default_size=12), transforms=(), format="png", height=340,
                layers=gr.LayerOptions(allow_additional_layers=False, layers=["mask"]),
                elem_id="inpaint-editor",
            )
            tab.buttons("Inpaint")
            gr.HTML('<div id="inpaint-upload-message" class="upload-message" role="alert"></div>', padding=False)
            examples_column = gr.Column()
            tab.cameras = CameraSliders.build(config, "inpaint")
            with examples_column:
                tab.examples = _examples("inpaint", editor, tab.cameras, model_examples, examples)
            with gr.Row():
                steps = IntSlider(2, 250, value=InpaintSettings().steps, step=1, label="Denoising steps")
                resample = IntSlider(1, MAX_RESAMPLE, value=1, step=1, label="RePaint resampling",
                                     info="re-noise and repeat each step; more = more coherent, slower")
            seed = gr.Number(0, label="Seed", precision=0, minimum=0)
        tab.build_panel(composite=True)
    tab.inputs = [editor, *tab.cameras.inputs, steps, resample, seed]
    return tab


def generate_tab() -> TaskTab:
    intro = ("Unconditional generation from pure noise, seen from the model's default camera. "
             "With a batch, pick a sample in the gallery to see its 3D views.")
    with TaskTab.layout("generate", "Generate", intro) as tab:
        with tab.inputs_column:
            seed = gr.Number(0, label="Seed", precision=0, minimum=0)
            steps = IntSlider(2, 250, value=50, step=1, label="Denoising steps")
            batch = IntSlider(1, MAX_BATCH, value=1, step=1, label="Batch size")
            eta = eta_slider("generate")
            tab.buttons("Generate")
        with tab.panel_column:
            tab.extra = named(gr.Gallery(label="Samples (click one for its 3D views)", visible=False, columns=4,
                                         height=180, allow_preview=False, object_fit="contain",
                                         elem_id="generate-gallery"), "samples")
        tab.build_panel()
    tab.inputs = [seed, steps, batch, eta]
    return tab


def model_picker(registry: ModelRegistry, status: str, examples: list[Example]) -> tuple[gr.Dropdown, gr.Markdown,
                                                                                             gr.State]:
    """The model dropdown, its status line and the session's examples of the current model (``gr.State``)."""
    choices = registry.shipped()
    if registry.default_source not in choices:  # a Hub id or folder given at launch: offered too
        choices.append(registry.default_source)
    with gr.Row():
        model_box = gr.Dropdown(choices, value=registry.default_source, label="Model", scale=4,
                                allow_custom_value=True, filterable=True, elem_id="model-picker",
                                info="a shipped model, or type a Hugging Face Hub id (user/model) or a local "
                                     "checkpoint folder and press Enter")
    model_status = named(gr.Markdown(status, label="Model status", elem_id="model-status"), "model_status")
    return model_box, model_status, gr.State(examples)


def wire_model_picker(model_box: gr.Dropdown, model_status: gr.Markdown, model_examples: gr.State,
                      reconstruct: ReconstructTab, inpaint: TaskTab, handlers: Handlers,
                      examples_of: Callable[[ModelInfo], list[Example]], concurrency: int) -> None:
    """Choosing a model loads it (``/load_model``: status, both tabs' cameras, the t_r slider), then shows its
    examples (``/model_examples``, undocumented)."""

    def load(model_source: str, progress=gr.Progress()):
        """Load a model (cached after the first load) and return its status, the default cameras of the
        Reconstruct and Inpaint tabs and the t_r slider's range (an update: maximum and value).

        Args:
            model_source: a shipped model's name, a Hugging Face Hub id or a local checkpoint folder ("" = default).
        """
        progress((0, None), desc="Loading the model")
        m: ModelInfo = handlers.model_info(model_source, reload=True)
        if m.notice:
            gr.Warning(m.notice)
        cams = CameraSliders.defaults(m.config)
        t_r = gr.update(maximum=min(m.config.timesteps - 1, MAX_TR_SLIDER), value=0)
        return (m.markdown, *cams, *cams, t_r, examples_of(m))

    def show_examples(current: list[Example] | None):
        return gallery_update(current), gallery_update(current)

    # The gr.State output is not part of the API: /load_model returns the status, the 8 camera
    # sliders and the t_r slider, as before. The galleries follow in a second, cheap event.
    load_outputs = [model_status, *reconstruct.cameras.inputs, *inpaint.cameras.inputs, reconstruct.t_r,
                    model_examples]
    load_evt = model_box.change(load, inputs=model_box, outputs=load_outputs, api_name="load_model",
                                concurrency_id=DIFFUSION, concurrency_limit=concurrency,
                                show_progress_on=model_status)  # one progress bar, not one per slider
    load_evt.success(show_examples, model_examples, [reconstruct.examples, inpaint.examples],
                     api_name="model_examples", api_visibility="undocumented", concurrency_limit=None,
                     show_progress="hidden")


def task_endpoints(handlers: Handlers) -> dict[str, Callable]:
    """The three tasks' event functions by endpoint name.

    Wrappers: Gradio injects gr.Progress by signature, names API parameters after these arguments and
    takes each endpoint's description (and, for MCP, the parameters') from the docstring.
    """

    @on_gpu
    def reconstruct(model_source, image, azimuth, elevation, radius, fov_deg, t_r, steps, seed, eta=0.0, stop=None,
                    progress=gr.Progress()):
        """Monocular 3D reconstruction: noise the image to t_r, denoise it, and return the final triplane's
        render from the input camera, its depth, an orbit view, a turntable mp4, a 3D plot, the GLB mesh,
        notes and the scene_id (for /orbit and /sample).

        Args:
            model_source: a shipped model's name, a Hugging Face Hub id or a local checkpoint folder ("" = default).
            image: the input image (any size and mode; centre-cropped and downsized to the model's size).
            azimuth: input camera azimuth in degrees.
            elevation: input camera elevation in degrees.
            radius: input camera distance from the scene centre (scene units).
            fov_deg: input camera horizontal field of view in degrees.
            t_r: noise level the input is noised to before denoising (0 = most faithful, one pass).
            steps: denoising steps (at most t_r + 1 are used).
            seed: random seed.
            eta: DDIM's eta in [0, 1] (0 = deterministic; only matters for t_r > 0 with several steps).
        """
        yield from handlers.reconstruct(model_source, image, azimuth, elevation, radius, fov_deg, t_r, steps,
                                        seed, eta, progress=progress, stop=stop)

    @on_gpu
    def inpaint(model_source, image_and_mask, azimuth, elevation, radius, fov_deg, steps, resample, seed, stop,
                progress=gr.Progress()):
        """3D-aware inpainting (RePaint): fill the masked region; returns the final triplane's render from the
        input camera and the other panel outputs as /reconstruct, then the composite (the known pixels pasted
        around the fill: 2D only).

        Args:
            model_source: a shipped model's name, a Hugging Face Hub id or a local checkpoint folder ("" = default).
            image_and_mask: {"background": image, "layers": [mask], "composite": None}; the mask is the alpha of
                layers[0] (painted = fill in), of the image's size or at least its shape.
            azimuth: input camera azimuth in degrees.
            elevation: input camera elevation in degrees.
            radius: input camera distance from the scene centre (scene units).
            fov_deg: input camera horizontal field of view in degrees.
            steps: denoising steps.
            resample: RePaint resampling (each step re-noised and repeated this many times).
            seed: random seed.
        """
        yield from handlers.inpaint(model_source, image_and_mask, azimuth, elevation, radius, fov_deg, steps,
                                    resample, seed, progress=progress, stop=stop)

    @on_gpu
    def generate(model_source, seed, steps, batch_size, eta=0.0, stop=None, progress=gr.Progress()):
        """Unconditional generation of batch_size 3D scenes from the model's default camera; returns the first
        sample's panel outputs (as /reconstruct) and the list of all samples' images. /sample with the
        scene_id gives any sample's outputs, /orbit renders any sample.

        Args:
            model_source: a shipped model's name, a Hugging Face Hub id or a local checkpoint folder ("" = default).
            seed: random seed.
            steps: denoising steps.
            batch_size: number of scenes generated.
            eta: DDIM's eta in [0, 1] (0 = deterministic DDIM, 1 = DDPM's noise level).
        """
        yield from handlers.generate(model_source, seed, steps, batch_size, eta, progress=progress, stop=stop)

    return dict(reconstruct=reconstruct, inpaint=inpaint, generate=generate)


def wire_task(tab: TaskTab, fn: Callable, model_box: gr.Dropdown, handlers: Handlers, concurrency: int,
              restore_extra: Callable[[Any], Any] | None = None) -> Any:
    """The events of a task tab: its run (``/<tab.name>``: the panel's outputs, then ``tab.extra``), the
    "Starting…" note at the click, the panel's failure restore and 3D viewers, and Stop (a per-session
    :class:`StopFlag`, not queued). ``restore_extra(state)``: the value of ``tab.extra`` after a failed run.
    Returns the run event. (The orbit sliders: :meth:`ResultPanel.wire_orbit`, wired after the API-only
    endpoints so that the API page keeps its order.)
    """
    panel = tab.panel
    tab.run.click(None, None, panel.notes, js=STARTING_JS, queue=False, api_visibility="private",
                  show_progress="hidden")
    flag = gr.State(StopFlag())
    outputs = [*panel.outputs, *([tab.extra] if tab.extra is not None else [])]
    event = tab.run.click(fn, [model_box, *tab.inputs, flag], outputs, api_name=tab.name, concurrency_id=DIFFUSION,
                          concurrency_limit=concurrency, show_progress="hidden")
    panel.wire_run(event, handlers, tab.extra, restore_extra)
    panel.wire_clearing()
    # Not queued (it must run while the job holds the queue); the job ends after its current step.
    tab.stop.click(StopFlag.request, flag, None, queue=False, api_visibility="private")
    return event


def run_button_hold(tab: TaskTab) -> tuple[dict, dict]:
    """Event settings that disable ``tab``'s run button (labelled as waiting for the camera estimate) and give it
    back; not queued, so they land at once."""
    label = tab.run.value
    quick = dict(queue=False, api_visibility="private", show_progress="hidden", outputs=tab.run)
    hold = dict(fn=lambda: gr.Button("Estimating the camera…", interactive=False), **quick)
    release = dict(fn=lambda: gr.Button(label, interactive=True), **quick)
    return hold, release


def wire_scene_api(handlers: Handlers, sample_outputs: list[gr.components.Component], concurrency: int) -> None:
    """``/orbit`` and ``/sample``: API only (no UI event), for any client with a run's scene_id (kept in
    ``handlers.scenes``, an LRU). ``sample_outputs``: the panel outputs without the state."""
    with gr.Column(visible=False):
        api_scene = gr.Textbox(label="scene_id")
        api_sample = gr.Number(0, label="sample", precision=0, minimum=0)
        api_az = gr.Number(0.0, label="azimuth")
        api_el = gr.Number(30.0, label="elevation")
        api_view = named(gr.Image(label="view", type="filepath", format="png"), "orbit_view")

    def orbit(scene_id, sample, azimuth, elevation):
        """Render sample `sample` (0 = the first; batches of /generate have more) of the run `scene_id` from
        (azimuth, elevation) in degrees on its input camera's sphere, without diffusion. Works from any client.

        Args:
            scene_id: the scene_id output of a /reconstruct, /inpaint or /generate run.
            sample: which sample of the run's batch (0-based).
            azimuth: viewing azimuth in degrees.
            elevation: viewing elevation in degrees.
        """
        return handlers.scene_orbit(scene_id, sample, azimuth, elevation)

    @on_gpu
    def sample(scene_id, sample, progress=gr.Progress()):
        """All panel outputs (image, depth, orbit view, turntable, 3D plot, mesh, notes, scene_id) of sample
        `sample` of the run `scene_id`, e.g. another sample of a /generate batch; its 3D outputs are rendered
        on first request. Works from any client.

        Args:
            scene_id: the scene_id output of a /reconstruct, /inpaint or /generate run.
            sample: which sample of the run's batch (0-based).
        """
        return handlers.scene_sample(scene_id, sample, progress=progress)

    gr.on([], orbit, [api_scene, api_sample, api_az, api_el], api_view, api_name="orbit",
          concurrency_id=PREVIEW, concurrency_limit=PREVIEW_CONCURRENCY, show_progress="hidden")
    gr.on([], sample, [api_scene, api_sample], sample_outputs, api_name="sample", concurrency_id=DIFFUSION,
          concurrency_limit=concurrency, show_progress="hidden")


def build_app(model_source: str | Path | None = None, *, registry: ModelRegistry | None = None,
              store: OutputStore | None = None, concurrency: int | None = None, max_queue: int = 16,
              assets: Path | None = None, example_result: bool = True) -> gr.Blocks:
    """Build the app (queue configured; call :func:`launch` or ``.launch()`` on the result).

    Args:
        model_source: default model (a shipped model's name, Hub id or local folder); else env
            ``RDIFF_MODEL``; else the shipped ``clevr1-32``. Other sources that fail to load fall back to it.
        registry: model cache (tests pass one, e.g. with another folder of shipped models); made from
            ``model_source`` if None.
        store: where result files go (a fresh temporary folder if None).
        concurrency: diffusion jobs run at once (default env ``RDIFF_CONCURRENCY`` or 1).
        max_queue: requests allowed to wait in the queue.
        assets: the folder of the per-model example folders (default ``assets/``: ``assets/<model>/``).
        example_result: when a page opens, show the default model's first example reconstructed in the
            Reconstruct tab (computed once, shared by all visitors).
    """
    source = str(model_source or os.environ.get("RDIFF_MODEL") or "") or None
    registry = registry or ModelRegistry(source)
    store = store or OutputStore()
    concurrency = concurrency or int(os.environ.get("RDIFF_CONCURRENCY", "1"))
    assets = ASSETS if assets is None else Path(assets)
    handlers = Handlers(registry, store, concurrent_jobs=concurrency)

    def examples_of(m: ModelInfo) -> list[Example]:
        return load_examples(m.name, assets)

    try:
        info = handlers.model_info(registry.default_source)
        config, status, examples = info.config, info.markdown, examples_of(info)
    except gr.Error as e:  # the app still starts; runs will report the problem again
        config, examples = RenderDiffusionConfig(), []
        status = f"⚠️ **The default model could not be loaded:** {e.message}"
        log.warning("default model not loaded: %s", e.message)

    with RdiffBlocks(title="RenderDiffusion (rdiff)", delete_cache=(1800, 3600)) as app:
        gr.Markdown(INTRO)
        model_box, model_status, model_examples = model_picker(registry, status, examples)
        rec = reconstruct_tab(config, model_examples, examples)
        inp = inpaint_tab(config, model_examples, examples)
        gen = generate_tab()

        # ----------------------------------------------------------------------------------- events
        wire_model_picker(model_box, model_status, model_examples, rec, inp, handlers, examples_of, concurrency)
        fns = task_endpoints(handlers)
        wire_task(rec, fns["reconstruct"], model_box, handlers, concurrency)
        wire_task(inp, fns["inpaint"], model_box, handlers, concurrency, restore_extra=handlers.composite)
        gen_evt = wire_task(gen, fns["generate"], model_box, handlers, concurrency,
                            restore_extra=handlers.gallery_restored)
        # The gallery's value is a plain list (the API returns it as is); its visibility follows here (UI only).
        gen_evt.success(handlers.gallery_shown, gen.panel.state, gen.extra, api_visibility="private",
                        queue=False, show_progress="hidden")

        @on_gpu
        def select(state, evt: gr.SelectData, progress=gr.Progress()):
            yield from handlers.select(state, evt.index, progress=progress)

        gen_sel = gen.extra.select(select, gen.panel.state, gen.panel.outputs, api_visibility="private",
                                   concurrency_id=DIFFUSION, concurrency_limit=concurrency, show_progress="hidden")
        gen.panel.show_mesh(gen_sel, handlers)

        wire_scene_api(handlers, gen.panel.outputs[:-1], concurrency)
        for tab in (rec, inp, gen):
            tab.panel.wire_orbit(handlers, f"{tab.name}_orbit", tab.name)

        # An uploaded image's camera (elevation, distance, FOV) from the model's estimator, if it has one;
        # examples set their own known cameras and so are not estimated.
        # (queued: its toast says what was estimated)
        # The run button waits for the estimate (a click before it lands would run with the old camera).
        # always_last: an image uploaded while the previous one's estimate runs is estimated after it, not skipped.
        estimate = dict(concurrency_id=PREVIEW, concurrency_limit=PREVIEW_CONCURRENCY, show_progress="hidden",
                        trigger_mode="always_last")
        hold, release = run_button_hold(rec)
        rec.image.upload(**hold).then(on_gpu(handlers.estimate_camera), [model_box, rec.image],
                                      rec.cameras.inputs[1:], api_name="estimate_camera", **estimate).then(**release)
        estimated = gr.State(None)  # the Inpaint editor re-fires upload when shown again: estimate once per image
        hold, release = run_button_hold(inp)
        inp.inputs[0].upload(**hold).then(
            on_gpu(handlers.estimate_camera_once), [model_box, inp.inputs[0], estimated],
            [*inp.cameras.inputs[1:], estimated], api_visibility="private", **estimate).then(**release)
        if example_result:
            @on_gpu
            def example(source, examples, current):
                return handlers.example_result(source, (examples or [None])[0], current)

            # its own queue group: page opens never take the diffusion runs' slots
            shown = app.load(example, [model_box, model_examples, rec.image],
                             [rec.image, *rec.cameras.inputs, *rec.panel.outputs], api_visibility="private",
                             concurrency_id="example", concurrency_limit=2, show_progress="hidden")
            rec.panel.show_mesh(shown, handlers)
        gr.on([rec.image.change, rec.t_r.change, rec.seed.change], fn=handlers.noise_preview,
              inputs=[model_box, rec.image, rec.t_r, rec.seed], outputs=rec.noised, api_name="noise_preview",
              concurrency_id=PREVIEW, concurrency_limit=PREVIEW_CONCURRENCY, trigger_mode="always_last",
              show_progress="minimal")

    app.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    app.rdiff_registry = registry  # type: ignore[attr-defined]  # for tests and debugging
    return app


def mcp_available() -> bool:
    """Whether Gradio's MCP server can run (the ``mcp`` package of ``pip install "gradio[mcp]"``)."""
    import importlib.util

    return importlib.util.find_spec("mcp") is not None


def launch(app: gr.Blocks, **kwargs: Any):
    """``app.launch`` with this app's CSS and upload limit (Gradio 6 takes css at launch).

    ``mcp_server=True`` (or env ``GRADIO_MCP_SERVER=True``, read by Gradio) also serves every public endpoint
    as an MCP tool (described by its docstring), at ``/gradio_api/mcp/``; it needs ``gradio[mcp]``.
    """
    options: dict[str, Any] = dict(css=CSS, js=UPLOAD_CHECK_JS, max_file_size=MAX_FILE_SIZE, show_error=False,
                                   state_session_capacity=STATE_SESSIONS)
    options.update(kwargs)
    return app.launch(**options)
