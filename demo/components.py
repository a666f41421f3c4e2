"""Image inputs whose decoding failures become readable ``gr.Error`` messages instead of tracebacks.

Gradio decodes uploads in ``preprocess`` before the event handler runs, so a corrupt file, a non-image
or a decompression bomb would fail there with a generic error. These thin subclasses (Gradio "template"
components: same front end as their parent) hand such files on to :func:`rdiff.preprocess.open_image`,
whose :class:`~rdiff.preprocess.InputError` message is what the user sees.
"""

from __future__ import annotations

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
