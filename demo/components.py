"""Components and a Blocks subclass for a clean API.

* :class:`CheckedImage`, :class:`CheckedEditor`: image inputs whose decoding failures become readable
  ``gr.Error`` messages instead of tracebacks. Gradio decodes uploads in ``preprocess`` before the event
  handler runs, so a corrupt file, a non-image or a decompression bomb would fail there with a generic error.
  These thin subclasses (Gradio "template" components: same front end as their parent) hand such files on to
  :func:`rdiff.preprocess.open_image`, whose :class:`~rdiff.preprocess.InputError` message is what the user sees.
* :class:`IntSlider`: a slider typed ``int`` in the API (step counts, t_r, batch size).
* :func:`named` and :class:`RdiffBlocks`: API output names chosen in the code (``image``, ``depth``,
  ``scene_id``, ...) instead of Gradio's default, the UI label turned into an identifier
  (``depth_yellow__near``).
"""

from __future__ import annotations

from typing import Any, TypeVar

import gradio as gr

from rdiff.preprocess import InputError, open_image


def input_error(path: str | None, fallback: str) -> gr.Error:
    """The InputError message for the file at ``path`` (or ``fallback`` if it opens fine)."""
    if path:
        try:
            open_image(path)
        except InputError as e:
            return gr.Error(str(e), print_exception=False)
    return gr.Error(fallback, print_exception=False)


class CheckedImage(gr.Image):
    """``gr.Image`` that, with ``type="filepath"``, passes undecodable uploads through as a path.

    Use ``image_mode=None`` so that valid files are passed on as uploaded too (rdiff converts modes).
    (No ``__init__`` override: Gradio builds the front-end config from the constructor's signature.)
    """

    is_template = True  # use gr.Image's front end

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception:  # noqa: BLE001 - PIL raises many types for bad files
            path = getattr(payload, "path", None)
            if self.type == "filepath" and path:
                return str(path)  # open_image() in the handler explains what is wrong
            message = "this file is not a readable image (PNG, JPEG, WebP, ...) or it is corrupt"
            raise input_error(path, message) from None


class CheckedEditor(gr.ImageEditor):
    """``gr.ImageEditor`` whose background/layer decoding errors become readable ``gr.Error``."""

    is_template = True  # use gr.ImageEditor's front end

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception:  # noqa: BLE001
            bg = getattr(payload, "background", None)
            raise input_error(getattr(bg, "path", None),
                              "the image or the painted mask could not be read (corrupt or not an image)") from None


class IntSlider(gr.Slider):
    """A slider of whole numbers: typed ``int`` in the API (a plain ``gr.Slider`` is ``float``).

    A fractional value sent through the API is passed on as is, so that the handler refuses it with its own
    message ("t_r must be a whole number ...") instead of rounding it silently (``precision=0`` would).
    """

    is_template = True  # use gr.Slider's front end

    def api_info(self) -> dict[str, Any]:
        return {"type": "integer", "description": f"whole number between {self.minimum:g} and {self.maximum:g}"}


C = TypeVar("C", bound=gr.components.Component)


def named(component: C, api_name: str) -> C:
    """Give ``component`` the name it has among an endpoint's outputs in the API (see :class:`RdiffBlocks`)."""
    component.rdiff_api_name = api_name  # type: ignore[attr-defined]
    return component


class RdiffBlocks(gr.Blocks):
    """``gr.Blocks`` whose API info names each output by :func:`named` (else Gradio's label-derived name).

    Gradio lists an endpoint's returns by their components' UI labels, which clients turn into identifiers;
    long, descriptive UI labels make poor API names. Only the names change: values and order do not.
    """

    def get_api_info(self, all_endpoints: bool = False, page: str | None = None):
        info = super().get_api_info(all_endpoints=all_endpoints, page=page)
        by_name = {f"/{fn.api_name}": fn for fn in self.fns.values() if fn.api_name}
        for endpoint, details in info.get("named_endpoints", {}).items():
            fn = by_name.get(endpoint)
            if fn is None:
                continue
            outputs = [o for o in fn.outputs if not getattr(o, "skip_api", False)]
            if len(outputs) != len(details.get("returns", [])):
                continue
            for returned, component in zip(details["returns"], outputs):
                name = getattr(component, "rdiff_api_name", None)
                if name:
                    returned["label"] = name
        return info
