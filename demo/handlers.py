"""Event handlers, one method per action; plain Python (call them directly in tests, no browser needed).

The three diffusion tasks are generators: while denoising they yield a preview of the current x0
estimate (throttled) and report every denoising step to the progress callback; the last yield is the
full result. Each update is built by name as a :class:`PanelValues` (unset fields: ``gr.skip()``, untouched)
and turned into Gradio's tuple, in :data:`PANEL_FIELDS` order, in one place (:meth:`PanelValues.outputs`),
followed by the task's extra output if it has one (Inpaint: the composite; Generate: the samples).
User mistakes (:class:`InputError`, :class:`CheckpointError`, out-of-range values) become ``gr.Error``
with a readable message; anything unexpected is logged and reported without a traceback.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Any

import gradio as gr
import numpy as np
import torch
from PIL import Image

from demo.examples import Example
from demo.models import ModelRegistry
from demo.results import (
    DISPLAY_SIZE,
    BakedScenes,
    OutputStore,
    ResultState,
    SceneStore,
    enlarge,
    ensure_files,
    make_state,
    notes_markdown,
    orbit_image,
)
from rdiff.cameras import Cameras, orbit_cameras
from rdiff.config import RenderDiffusionConfig
from rdiff.diffusion import DDIM
from rdiff.model import CheckpointError, RenderDiffusion
from rdiff.preprocess import InputError, open_image, prepare_image, prepare_mask
from rdiff.sampling import (
    InpaintSettings,
    Step,
    generate_steps,
    inpaint_steps,
    reconstruct_steps,
    reconstruction_input,
    result_from_step,
)
from rdiff.threads import configure_threads
from rdiff.visualize import to_uint8

log = logging.getLogger("rdiff.demo")



def _skip() -> Any:
    return gr.skip()


@dataclass
class PanelValues:
    """One update of a result panel (see :class:`demo.app.ResultPanel`), by field; a field left unset is
    ``gr.skip()`` (the output keeps its value), ``None`` empties it.

    The ``gr.Model3D`` views are not among the fields: they are filled by :meth:`Handlers.mesh` and
    :meth:`Handlers.splats` in follow-up events (Gradio 6's Model3D does not display a file sent by a
    generator handler).
    """

    image: Any = field(default_factory=_skip)  # the result image (path) or a live x0 preview
    depth: Any = field(default_factory=_skip)
    orbit: Any = field(default_factory=_skip)  # the orbit view (path)
    orbit_azimuth: Any = field(default_factory=_skip)
    orbit_elevation: Any = field(default_factory=_skip)
    video: Any = field(default_factory=_skip)  # the turntable mp4 (path)
    plot: Any = field(default_factory=_skip)  # plotly figure
    mesh_file: Any = field(default_factory=_skip)  # GLB (path)
    notes: Any = field(default_factory=_skip)  # Markdown
    scene_id: Any = field(default_factory=_skip)
    state: Any = field(default_factory=_skip)  # ResultState (gr.State: not part of the API)

    @classmethod
    def cleared(cls, notes: str) -> PanelValues:
        """Every output emptied (orbit sliders and state kept), with ``notes``."""
        return cls(image=None, depth=None, orbit=None, video=None, plot=None, mesh_file=None, notes=notes,
                   scene_id=None)

    def outputs(self, *extra: Any, state: bool = True) -> tuple:
        """Gradio's value tuple: the fields in :data:`PANEL_FIELDS` order (without the state for an API-only
        endpoint, ``state=False``), then ``extra`` (the task's outputs after the panel's)."""
        values = tuple(getattr(self, name) for name in PANEL_FIELDS if state or name != "state")
        return (*values, *extra)


#: Output order of a result panel: :class:`PanelValues`' fields.
PANEL_FIELDS = tuple(f.name for f in fields(PanelValues))
MAX_BATCH = 4
MAX_STEPS = 1000
MAX_RESAMPLE = 20

ProgressFn = Callable[..., Any]  # gr.Progress-compatible: progress((done, total), desc=...)


def _no_progress(*_args: Any, **_kwargs: Any) -> None:
    return None


class StopFlag:
    """Per-session "stop" request, kept in a ``gr.State`` and checked after every denoising step.

    Stopping this way (rather than cancelling the event) ends the run cleanly: the result is built
    from the current estimate, so an early stop still gives a (rougher) 3D scene.
    """

    def __init__(self) -> None:
        self.requested = False

    def request(self) -> None:
        self.requested = True


@contextmanager
def user_errors(action: str) -> Iterator[None]:
    """Turn exceptions into ``gr.Error`` (readable message, no traceback shown to the user)."""
    try:
        yield
    except gr.Error:
        raise
    except (InputError, CheckpointError, ValueError) as e:
        raise gr.Error(str(e), print_exception=False) from None
    except Exception as e:  # noqa: BLE001 - keep serving whatever happens
        log.exception("%s failed", action)
        raise gr.Error(f"{action} failed unexpectedly ({type(e).__name__}: {str(e)[:200]}). "
                       "The app is still running; please try again.", print_exception=False) from None


@dataclass
class ModelInfo:
    """What the UI needs to know about the loaded model (``name``: the shipped model's name, if it is one)."""

    source: str
    notice: str | None
    config: RenderDiffusionConfig
    name: str | None = None
    summary: str | None = None  # what it was trained on (its model card's summary), if the card says

    @property
    def markdown(self) -> str:
        c = self.config
        text = (f"**Model:** `{self.name or self.source}` · {c.image_size}×{c.image_size} images · triplane "
                f"{c.triplane_size}² × {c.triplane_channels} · T = {c.timesteps} timesteps")
        if self.summary:
            text += (f"  \n**Trained on:** {self.summary.rstrip('.')}. Inputs unlike these are out of distribution; "
                     "a larger t_r redraws them as the nearest thing the model knows.")
        if self.notice:
            text = f"⚠️ **{self.notice}**\n\n" + text
        return text


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v != int(v) or not lo <= v <= hi:
        raise InputError(f"{name} must be a whole number between {lo} and {hi}, got {value!r}")
    return int(v)


def _float(value: Any, name: str, lo: float, hi: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise InputError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")
    return v


def _view(azimuth: Any, elevation: Any) -> tuple[float, float]:
    """An orbit viewpoint (degrees), checked."""
    return _float(azimuth, "azimuth", -360.0, 360.0), _float(elevation, "elevation", -89.9, 89.9)


def camera(azimuth: Any, elevation: Any, radius: Any, fov: Any) -> Cameras:
    """One input camera from the sliders (degrees, scene units)."""
    az = _float(azimuth, "azimuth", -360.0, 360.0)
    el = _float(elevation, "elevation", -89.9, 89.9)
    r = _float(radius, "radius", 1.2, 20.0)  # the scene fills [-1, 1]^3: stay outside it
    f = _float(fov, "field of view", 5.0, 120.0)
    return orbit_cameras(az, el, r, math.radians(f))


def _ddim(eta: Any) -> DDIM:
    return DDIM(eta=_float(0.0 if eta is None else eta, "eta", 0.0, 1.0))


def _files_exist(state: ResultState) -> bool:
    """Whether a result's image and its rendered files are all still on disk."""
    files = state.files.get(state.selected)
    paths = [*state.images, *([] if files is None else [files.depth, files.video, files.mesh, files.splat])]
    return files is not None and all(p is None or p.exists() for p in paths)


def _image_key(image: Any) -> str | None:
    """What identifies an input image: its path, or a hash of its pixels (PIL images, editor values)."""
    if isinstance(image, dict):
        image = image.get("background")
    if image is None or isinstance(image, str):
        return image
    if isinstance(image, Image.Image):
        return hashlib.sha1(image.tobytes() + repr((image.size, image.mode)).encode()).hexdigest()
    return repr(image)


def _seed(value: Any) -> int:
    return _int(0 if value is None else value, "seed", 0, 2**31 - 1)


def _image_tensor(image: Any, model: RenderDiffusion) -> torch.Tensor:
    if image is None:
        raise InputError("no input image: upload one or pick an example")
    return prepare_image(image, model.config.image_size)


def _strip(x: torch.Tensor) -> np.ndarray:
    """``(B, 3, M, M)`` in [-1, 1] -> one uint8 image with the batch side by side."""
    x = ((x.detach().float().cpu() + 1) / 2).clamp(0, 1)
    return enlarge(np.concatenate([to_uint8(xi) for xi in x], axis=1), size=DISPLAY_SIZE * x.shape[0])


class Handlers:
    """All event handlers of the app, sharing one model registry and one output store."""

    def __init__(self, registry: ModelRegistry, store: OutputStore, preview_interval_s: float = 0.5,
                 concurrent_jobs: int = 1, scenes: SceneStore | None = None) -> None:
        self.registry = registry
        self.store = store
        self.scenes = scenes or SceneStore()  # every run's result by scene id (API access from any client)
        self.baked = BakedScenes()  # the few latest shown scenes render through baked fields (3-4x faster views)
        self.preview_interval_s = preview_interval_s
        self.concurrent_jobs = concurrent_jobs  # diffusion jobs at once: each gets its share of the idle cores
        self._examples: dict[tuple[str, str], ResultState] = {}  # example results shown on page open, per model
        self._examples_lock = threading.Lock()

    # ------------------------------------------------------------------------------- models
    def model_info(self, source: str | None, reload: bool = False) -> ModelInfo:
        with user_errors("Loading the model"):
            loaded = self.registry.get(source, reload=reload)
            return ModelInfo(loaded.source, loaded.notice, loaded.model.config, loaded.name,
                             self.registry.summary(loaded.name or loaded.source))

    def _model(self, source: str | None) -> tuple[RenderDiffusion, list[str]]:
        loaded = self.registry.get(source)
        if loaded.notice:
            gr.Warning(loaded.notice)
        return loaded.model, [loaded.notice] if loaded.notice else []

    def camera_notes(self, source: str | None, azimuth: Any, elevation: Any, radius: Any, fov: Any) -> list[str]:
        """A warning (shown and returned as a note) when the input camera lies outside the model's training
        cameras (known from its camera estimator; without one, nothing is said)."""
        estimator = self.registry.get(source).camera_estimator
        if estimator is None:
            return []
        outside = estimator.config.outside([float(elevation), float(radius), float(fov)])
        if not outside:
            return []
        note = ("The input camera is outside the training cameras (" + "; ".join(outside) +
                "): expect a poor reconstruction unless the photo really was taken so.")
        gr.Warning(note)
        return [note]

    # ------------------------------------------------------------------------------ previews
    def estimate_camera(self, model_source: str | None, image: Any) -> tuple:
        """Elevation, distance and FOV slider values estimated from ``image`` (a file path, PIL image or an
        ImageEditor value) by the model's camera estimator; unchanged (skips) when the model has none."""
        if isinstance(image, dict):  # the Inpaint editor's value
            image = image.get("background")
        if image is None:
            return _skip(), _skip(), _skip()
        with user_errors("Estimating the camera"):
            loaded = self.registry.get(model_source)
            if loaded.camera_estimator is None:
                return _skip(), _skip(), _skip()
            est = loaded.camera_estimator.estimate(_image_tensor(image, loaded.model))
            if est.in_range:
                gr.Info(f"Camera estimated from the image: {est.describe()}. Adjust the sliders if it looks off.")
            else:
                gr.Warning(f"This image does not look like {loaded.label}'s training views: its camera estimate "
                           f"is outside the trained range ({'; '.join(est.outside)}). The sliders are set to the "
                           "nearest trained camera; results may be poor.")
            return round(est.elevation_deg), round(round(est.radius / 0.05) * 0.05, 2), round(est.fov_deg * 2) / 2

    def estimate_camera_once(self, model_source: str | None, image: Any, last: Any) -> tuple:
        """:meth:`estimate_camera`, skipped when this image was estimated last time (``last``: the key returned
        then, kept in a gr.State): the image editor fires its upload event again when it is re-shown."""
        key = _image_key(image)
        if key == last:
            return _skip(), _skip(), _skip(), last
        return (*self.estimate_camera(model_source, image), key)

    def noise_preview(self, model_source: str | None, image: Any, t_r: Any, seed: Any) -> str | None:
        """The model's input at t = t_r: the image downsized to M x M and noised exactly as Reconstruct will."""
        if image is None:
            return None
        with user_errors("The noise preview"):
            model, _ = self._model(model_source)
            x = _image_tensor(image, model)[None]
            t = _int(t_r, "t_r", 0, model.diffusion.timesteps - 1)
            return self.store.frame_file(_strip(reconstruction_input(model, x, t, _seed(seed))))

    def mesh(self, state: ResultState | None) -> str | None:
        """The GLB of the shown scene (for ``gr.Model3D``), or None."""
        if state is None or state.selected not in state.files:
            return None
        mesh = state.files[state.selected].mesh
        return str(mesh) if mesh else None

    def splats(self, state: ResultState | None) -> str | None:
        """The Gaussian-splat .ply of the shown scene (for ``gr.Model3D``: orbit in the browser), or None."""
        if state is None or state.selected not in state.files:
            return None
        splat = state.files[state.selected].splat
        return str(splat) if splat else None

    def live(self, state: ResultState | None) -> str:
        """The live viewer's baked volume of the shown scene (JSON), or "" (the viewer then says to run a task)."""
        if state is None or state.selected not in state.files:
            return ""
        return state.files[state.selected].live or ""

    def orbit(self, state: ResultState | None, azimuth: Any, elevation: Any) -> str | None:
        """Re-render the cached scene from a new viewpoint (no diffusion); None before the session's first run."""
        if state is None:
            return None
        with user_errors("Rendering the view"):
            return self.store.frame_file(orbit_image(state.scene, *_view(azimuth, elevation)))

    def session_orbit(self, state: ResultState | None, azimuth: Any, elevation: Any) -> str:
        """:meth:`orbit` for API clients: a session without a result is an error, not an empty image."""
        if state is None:
            raise gr.Error("this client's session has no result yet: run the task first with the same Client, or "
                           "pass the scene_id a run returned to /orbit (any client)", print_exception=False)
        return self.orbit(state, azimuth, elevation)

    def scene_orbit(self, scene_id: Any, sample: Any, azimuth: Any, elevation: Any) -> str:
        """Render sample ``sample`` of the stored result ``scene_id`` from a viewpoint (any client)."""
        with user_errors("Rendering the view"):
            state = self._stored(scene_id)
            i = _int(sample, "sample", 0, len(state.scenes) - 1)
            return self.store.frame_file(orbit_image(state.scenes[i], *_view(azimuth, elevation)))

    def scene_sample(self, scene_id: Any, sample: Any, progress: ProgressFn = _no_progress) -> tuple:
        """The panel outputs (without the state) of sample ``sample`` of the stored result ``scene_id``; its 3D
        outputs are rendered on first request. The stored result's own selection is left as it is."""
        with user_errors("Showing the sample"):
            state = self._stored(scene_id)
            view = replace(state, selected=_int(sample, "sample", 0, len(state.scenes) - 1))  # shares the files
            return self._panel(view, progress).outputs(state=False)

    def _stored(self, scene_id: Any) -> ResultState:
        try:
            return self.scenes.get(str(scene_id or "").strip())
        except KeyError:
            raise InputError(f"unknown scene id {scene_id!r}: use the scene_id a run of /reconstruct, /inpaint or "
                             f"/generate returned; the app keeps the last {self.scenes.max_items} results, each "
                             f"for {self.scenes.max_age_s / 3600:g} h after its last use") from None

    def example_result(self, source: str | None, example: Example | None, current: Any = None,
                       progress: ProgressFn = _no_progress) -> tuple:
        """What the Reconstruct tab shows when the page opens: ``example``'s image and camera, then the panel
        of its reconstruction (t_r = 0), so that a visitor sees a 3D result before running anything.

        Computed once per model and example and shared by every session (read-only: orbiting renders from it,
        a new run replaces it in the session); its files are kept from pruning while it is shown, and it is
        computed again if they are gone. Nothing changes without an example, or when the visitor has already
        put an image in (``current``: the Reconstruct input's value when this runs).
        """
        if example is None or current is not None:
            return (_skip(),) * 5 + PanelValues().outputs()
        with user_errors("The example result"):
            model, notes = self._model(source)
            key = (self.registry.key(source), str(example.path()))
            with self._examples_lock:  # one computation per model and example, however many pages open at once
                state = self._examples.get(key)
                if state is None or not _files_exist(state):
                    configure_threads(None, self.concurrent_jobs)
                    x = _image_tensor(str(example.path()), model)
                    cams = camera(*example.camera_row())
                    *_, last = reconstruct_steps(model, x, cams, t_r=0, steps=1, seed=0)
                    state = make_state("reconstruct", result_from_step(model, last, cams),
                                       self.store.request_dir("example"), notes)
                    ensure_files(state, lambda i, n, what: progress((i, n), desc=what, unit="parts"), self.baked)
                    self._examples[key] = state
                os.utime(state.workdir)  # in use: the output store prunes folders by age
                try:
                    self.scenes.get(state.scene_id or "")  # a use, so the scene store keeps it
                except KeyError:
                    self.scenes.add(state)  # new, or evicted by newer results: /orbit needs its id
            panel = self._panel(state, progress)
        panel.notes = (f"**Example result**, ready when the page opened: *{example.title}* reconstructed at "
                       "t_r = 0. Drag the orbit sliders or the splats, or upload your own image.\n\n" + panel.notes)
        return (str(example.path()), *example.camera_row(), *panel.outputs())

    # ------------------------------------------------------------------------------- tasks
    def reconstruct(self, source: str | None, image: Any, azimuth: Any, elevation: Any, radius: Any, fov: Any,
                    t_r: Any, steps: Any, seed: Any, eta: Any = 0.0, progress: ProgressFn = _no_progress,
                    stop: StopFlag | None = None) -> Iterator[tuple]:
        """Yields panel tuples (:meth:`PanelValues.outputs`)."""
        with user_errors("Reconstruction"):
            model, notes = self._model(source)
            x = _image_tensor(image, model)
            cams = camera(azimuth, elevation, radius, fov)
            notes += self.camera_notes(source, azimuth, elevation, radius, fov)
            t = _int(t_r, "t_r", 0, model.diffusion.timesteps - 1)
            loop = reconstruct_steps(model, x, cams, t_r=t, steps=_int(steps, "steps", 1, MAX_STEPS),
                                     sampler=_ddim(eta), seed=_seed(seed))
            yield from self._run("reconstruct", model, loop, cams, notes, progress, stop)

    def inpaint(self, source: str | None, editor: Any, azimuth: Any, elevation: Any, radius: Any, fov: Any,
                steps: Any, resample: Any, seed: Any, progress: ProgressFn = _no_progress,
                stop: StopFlag | None = None) -> Iterator[tuple]:
        """``editor``: the ImageEditor value; the painted layer's alpha (``layers[0]``) is the mask.

        Yields panel tuples followed by the composite (known pixels + the fill: a labelled extra; the panel's
        image is the final scene's render, as for the other tasks); see :meth:`inpaint_composite`.
        """
        with user_errors("Inpainting"):
            model, notes = self._model(source)
            image, mask = editor_image_and_mask(editor, model.config.image_size)
            cams = camera(azimuth, elevation, radius, fov)
            notes += self.camera_notes(source, azimuth, elevation, radius, fov)
            settings = replace(InpaintSettings(), steps=_int(steps, "steps", 1, MAX_STEPS),
                               jump_n_sample=_int(resample, "resample", 1, MAX_RESAMPLE))
            loop = inpaint_steps(model, image, mask[None], cams, settings, seed=_seed(seed))

            yield from self._run("inpaint", model, loop, cams, notes, progress, stop, extra=self._composite_output)

    def generate(self, source: str | None, seed: Any, steps: Any, batch: Any, eta: Any = 0.0,
                 progress: ProgressFn = _no_progress, stop: StopFlag | None = None) -> Iterator[tuple]:
        """Yields panel tuples followed by the samples gallery's value (see :meth:`_samples_output`)."""
        with user_errors("Generation"):
            model, notes = self._model(source)
            n = _int(batch, "batch size", 1, MAX_BATCH)
            cams = model.default_cameras(n).to("cpu")
            loop = generate_steps(model, cams, steps=_int(steps, "steps", 1, MAX_STEPS), sampler=_ddim(eta),
                                  seed=_seed(seed))
            yield from self._run("generate", model, loop, cams, notes, progress, stop, extra=self._samples_output)

    def select(self, state: ResultState | None, index: Any, progress: ProgressFn = _no_progress) -> Iterator[tuple]:
        """Show sample ``index`` of a batch (its 3D outputs are rendered on first selection)."""
        if state is None:
            yield PanelValues().outputs()
            return
        with user_errors("Showing the sample"):
            state.selected = _int(index, "sample index", 0, len(state.scenes) - 1)
            if state.selected not in state.files:
                yield PanelValues(notes=f"⏳ Rendering the 3D views of sample {state.selected + 1}…").outputs()
            yield self._panel(state, progress).outputs()

    def gallery(self, state: ResultState | None) -> list[tuple[str, str]] | None:
        """The Generate gallery's value for ``state``: its samples (a plain value: the API returns it as is)."""
        if state is None:
            return None
        return [(str(p), f"sample {i + 1}") for i, p in enumerate(state.images)]

    def gallery_shown(self, state: ResultState | None) -> Any:
        """The gallery's visibility and selection (UI only): shown for a batch of more than one."""
        many = state is not None and len(state.images) > 1
        return gr.update(visible=many, selected_index=state.selected if many else None)

    def gallery_restored(self, state: ResultState | None) -> Any:
        """The gallery's value and visibility together (UI only: after a run failed midway)."""
        return gr.update(value=self.gallery(state), **self.gallery_shown(state))

    def composite(self, state: ResultState | None) -> str | None:
        """The inpainting composite of the shown scene, or None."""
        if state is None or not state.composites:
            return None
        return str(state.composites[state.selected])

    def restore(self, state: ResultState | None) -> tuple:
        """The panel of the session's current result (after a run failed midway: the outputs it had cleared)."""
        if state is None:
            return PanelValues.cleared("").outputs()
        with user_errors("Showing the result"):
            return self._panel(state, _no_progress).outputs()

    # ----------------------------------------------------------------------------- helpers
    def _composite_output(self, kind: str, value: Any) -> Any:
        """Inpaint's extra output (the composite) at each stage of :meth:`_run`."""
        if kind == "start":
            return None
        if kind == "preview":
            return self.store.frame_file(_strip(value.composite))
        return self.composite(value)

    def _samples_output(self, kind: str, value: Any) -> Any:
        """Generate's extra output (the samples gallery) at each stage of :meth:`_run`."""
        if kind == "start":  # the previous run's samples go
            return None
        if kind == "preview":
            return gr.skip()
        return self.gallery(value)

    def _run(self, task: str, model: RenderDiffusion, loop: Iterator[Step], cams: Cameras, notes: list[str],
             progress: ProgressFn, stop: StopFlag | None = None,
             extra: Callable[[str, Any], Any] | None = None) -> Iterator[tuple]:
        """Drive a step generator: progress per step, throttled x0 previews, then the full result.

        The first yield (after the first denoising step: the inputs are valid and the model runs) clears the
        previous result's outputs; then previews of the x0 estimate come every ``preview_interval_s`` with the
        progress in the notes (the app shows no Gradio progress bar: one per output, hidden at every yield);
        the last yield is the full result: :func:`rdiff.sampling.result_from_step` of the last step run (the
        same as the library's task functions return). ``extra(kind, value)`` is the task's one output after the
        panel's, if it has one (kind "start", "preview" with the step, or "result" with the :class:`ResultState`).
        """

        def outputs(panel: PanelValues, kind: str | None, value: Any = None) -> tuple:
            """The one conversion to Gradio's tuple; ``kind`` None: the extra output is left as it is."""
            if extra is None:
                return panel.outputs()
            return panel.outputs(gr.skip() if kind is None else extra(kind, value))

        configure_threads(None, self.concurrent_jobs)  # from the load now: busy machines get 1 thread
        if stop is not None:
            stop.requested = False  # a Stop clicked before this run started does not count
        progress((0, None), desc="Denoising")
        last: Step | None = None
        shown = time.monotonic()
        for step in loop:
            if last is None:
                yield outputs(PanelValues.cleared(progress_note(step)), "start")
            last = step
            progress((step.index, step.total), desc=f"Denoising (t = {step.t})", unit="steps")
            if stop is not None and stop.requested and step.index < step.total:
                notes = [*notes, f"Stopped after {step.index} of {step.total} denoising steps: the result is the "
                                 "estimate at that point."]
                break
            if step.index < step.total and time.monotonic() - shown >= self.preview_interval_s:
                shown = time.monotonic()
                yield outputs(self._preview(step), "preview", step)
        assert last is not None
        state = make_state(task, result_from_step(model, last, cams), self.store.request_dir(task), notes)
        self.scenes.add(state)
        yield outputs(self._first_view(state, render_orbit=False), None)  # at once; the 3D files stream in after it
        yield outputs(self._panel(state, progress), "result", state)

    def _first_view(self, state: ResultState, render_orbit: bool = True) -> PanelValues:
        """The result's image and orbit view, while the depth, turntable, plot, mesh and splats are still being
        rendered. The session's state (and the scene id) change only with the full result, so that a failure
        while rendering puts the previous result back (``restore``).

        With ``render_orbit=False`` the orbit view is the result image itself (the denoiser's render from the input
        view, at the model's size, enlarged to the same display size): on screen at once, where rendering it at the
        orbit's size takes ~0.5 s at 64x64 (exact path); the full result brings the rendered one.
        """
        az, el, _ = state.scene.input_view
        image = str(state.images[state.selected])
        orbit = self.store.frame_file(orbit_image(state.scene, az, el)) if render_orbit else image
        return PanelValues(
            image=image, orbit=orbit,
            orbit_azimuth=round(az % 360, 1), orbit_elevation=round(el, 1),
            notes="⏳ Denoising done: rendering the depth, turntable, mesh and splats…")

    def _preview(self, step: Step) -> PanelValues:
        """The current x0 estimate (the render of the current triplane) and the progress in the notes."""
        return PanelValues(image=self.store.frame_file(_strip(step.x0)), notes=progress_note(step))

    def _panel(self, state: ResultState, progress: ProgressFn) -> PanelValues:
        """Every output of the selected scene of ``state`` (its 3D files rendered on first use): its
        :meth:`_first_view` plus the files, notes, scene id and state."""
        files = ensure_files(state, lambda i, n, what: progress((i, n), desc=what, unit="parts"), self.baked)
        return replace(self._first_view(state), depth=str(files.depth), video=str(files.video),
                       plot=files.figure, mesh_file=str(files.mesh) if files.mesh else None,
                       notes=notes_markdown(state, files), scene_id=state.scene_id, state=state)


def progress_note(step: Step, width: int = 24) -> str:
    """The run's progress as Markdown for the notes: step count, timestep and a text bar."""
    done = round(width * step.index / max(step.total, 1))
    percent = 100 * step.index / max(step.total, 1)
    return (f"⏳ **Denoising:** step {step.index} of {step.total} (t = {step.t}) · {percent:.0f}%\n\n"
            f"`{'█' * done}{'░' * (width - done)}`")


def editor_image_and_mask(editor: Any, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageEditor value -> (image ``(3, M, M)`` in [-1, 1], mask ``(M, M)``: 1 = fill in).

    The background is the image; the mask is the alpha of the first layer (what the brush painted).
    A layer of another size (sent through the API) is scaled to the image if it has the same shape
    (aspect ratio within 2%); otherwise it cannot be placed on the image and is refused.
    """
    if not isinstance(editor, dict) or editor.get("background") is None:
        raise InputError("no input image: upload one into the editor (or pick an example), then paint the mask")
    background = open_image(editor["background"])
    layers = [layer for layer in (editor.get("layers") or []) if layer is not None]
    if not layers:
        raise InputError("the mask is empty: paint over the part of the image to fill in (start each stroke on "
                         "the image: strokes that begin in the margin around it are ignored by the editor)")
    try:
        layer = open_image(layers[0])
    except InputError as e:
        raise InputError(f"the painted mask could not be used: {e}") from None
    if layer.size != background.size:
        (lw, lh), (bw, bh) = layer.size, background.size
        if abs(lw * bh - lh * bw) > 0.02 * max(lw * bh, lh * bw):
            raise InputError(f"the mask is {lw}x{lh} pixels but the image is {bw}x{bh}: paint the mask on the "
                             "image itself (the mask layer must have the image's size or at least its shape)")
        layer = layer.resize(background.size, Image.NEAREST)  # keeps the mode: alpha or grey levels
    mask = prepare_mask(layer, size, image_size=background.size)
    return prepare_image(background, size), mask
