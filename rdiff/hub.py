"""Model sources: the shipped models (by name), local folders and Hub ids, with an offline fallback.

The shipped models are the folders ``weights/<name>/`` holding a ``config.json`` (e.g. ``clevr1-32``,
``chairs-64``); :func:`shipped_models` lists their names and :func:`load_model` accepts a bare name as
well as a local checkpoint folder or a Hugging Face Hub id (``user/model``). A bare name of a shipped
model always means that model; write ``./name`` for a folder of the same name in the working directory.
"""

from __future__ import annotations

import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from rdiff.camera_estimator import CameraEstimator, find_camera_estimator
from rdiff.model import CONFIG_NAME, CheckpointError, RenderDiffusion, looks_like_local_path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL = "clevr1-32"
SHIPPED_WEIGHTS = WEIGHTS_DIR / DEFAULT_MODEL


def _weights_dir(root: str | Path | None) -> Path:
    return WEIGHTS_DIR if root is None else Path(root)


def shipped_models(root: str | Path | None = None) -> list[str]:
    """Names of the shipped models: the folders of ``root`` (default ``weights/``) with a config.json.

    Sorted by name, with the default model (:data:`DEFAULT_MODEL`) first when it is among them.
    """
    folder = _weights_dir(root)
    if not folder.is_dir():
        return []
    names = sorted(p.name for p in folder.iterdir() if (p / CONFIG_NAME).is_file())
    return sorted(names, key=lambda name: name != DEFAULT_MODEL)


def shipped_folder(name: str | Path, root: str | Path | None = None) -> Path | None:
    """The folder of the shipped model called ``name`` (a bare folder name), or None if there is none."""
    name = str(name).strip()
    if not name or name != Path(name).name or name.startswith((".", "~")):
        return None  # a path or a Hub id, not a name
    folder = _weights_dir(root) / name
    return folder if (folder / CONFIG_NAME).is_file() else None


def resolve_source(source: str | Path, root: str | Path | None = None) -> str:
    """``source`` with a shipped model's name replaced by its folder; paths and Hub ids are unchanged."""
    folder = shipped_folder(source, root)
    return str(folder) if folder is not None else str(source)


def shipped_name(source: str | Path | None, root: str | Path | None = None) -> str | None:
    """The name of the shipped model ``source`` refers to (by its name or its folder), else None."""
    text = str(source or "").strip()
    if not text:
        return None
    if shipped_folder(text, root) is not None:
        return text
    path = Path(text).expanduser()
    if not (path / CONFIG_NAME).is_file():
        return None
    path = path.resolve()
    return path.name if path.parent == _weights_dir(root).resolve() else None


CARD_NAME = "README.md"  # a checkpoint folder's model card (Hugging Face's name for it)


def model_summary(source: str | Path, root: str | Path | None = None) -> str | None:
    """What a model was trained on, in one line: the ``summary`` in the YAML front matter of the model card
    (``README.md``) of a shipped model (by name) or a local checkpoint folder; None where there is no card,
    no summary or unreadable front matter (Hub ids are not looked up: that would be a download)."""
    from huggingface_hub.repocard import metadata_load

    if not str(source).strip():
        return None  # not the working directory's README
    card = Path(resolve_source(source, root)).expanduser() / CARD_NAME
    if not card.is_file():
        return None
    try:
        meta = metadata_load(card) or {}
    except Exception:  # noqa: BLE001 - malformed YAML or an unreadable file: the card says nothing usable
        return None
    summary = meta.get("summary")
    return " ".join(summary.split()) if isinstance(summary, str) and summary.strip() else None


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hub endpoint accepts a TCP connection (False at once when offline mode is set).

    Checked before a download so that an offline machine falls back in ~0 s instead of after the
    Hub client's retries (about 20 s).
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class LoadedModel:
    """A model plus where it came from (``name``: the shipped model's name, if it is one) and, when the
    requested source failed, why we fell back."""

    model: RenderDiffusion
    source: str
    notice: str | None = None
    name: str | None = None
    #: The input-camera estimator shipped beside the checkpoint, if any (:mod:`rdiff.camera_estimator`).
    camera_estimator: CameraEstimator | None = None

    @property
    def label(self) -> str:
        """How to show the model to a user: the shipped model's name, else the source."""
        return self.name or self.source


def _estimator(source: str, model: RenderDiffusion, local_files_only: bool) -> CameraEstimator | None:
    """The checkpoint's camera estimator on the model's device; None if it has none, it does not fit or it is
    broken (a warning then: the model itself is fine, the user sets the camera by hand)."""
    try:
        estimator = find_camera_estimator(source, local_files_only=local_files_only)
    except Exception as e:  # noqa: BLE001 - whatever is wrong with it, the model itself still loads
        warnings.warn(f"{e}; the camera is not estimated for this model", stacklevel=2)
        return None
    if estimator is not None and estimator.config.image_size != model.config.image_size:
        warnings.warn(f"the camera estimator of {source} takes {estimator.config.image_size}x"
                      f"{estimator.config.image_size} images but the model {model.config.image_size}x"
                      f"{model.config.image_size}: not used (train it again with `rdiff camera train`)", stacklevel=2)
        return None
    return None if estimator is None else estimator.to(model.device)


def load_model(
    source: str | Path | None = None,
    device: str | torch.device = "cpu",
    fallback: str | Path | None = SHIPPED_WEIGHTS,
    local_files_only: bool = False,
    weights: str | Path | None = None,
) -> LoadedModel:
    """Load ``source`` (a shipped model's name, a local checkpoint folder or a Hugging Face Hub id;
    default: the shipped weights). ``weights``: the folder of the shipped models (default ``weights/``).

    If ``source`` cannot be loaded (unknown id, no network, corrupt files) and ``fallback`` is given,
    the fallback is loaded instead and ``notice`` explains what happened. A broken *local* folder
    never silently falls back: its error is raised, since the user pointed at it on purpose.
    """
    if not (source or fallback):
        raise CheckpointError("no model source given and no shipped weights configured")
    target = resolve_source(source or fallback, weights)
    fallback = resolve_source(fallback, weights) if fallback else None
    offline = not Path(target).is_dir() and not local_files_only and not hub_reachable()
    local_files_only = local_files_only or offline  # offline: the local Hub cache may still have it
    try:
        model = RenderDiffusion.from_pretrained(target, local_files_only=local_files_only).to(device).eval()
    except Exception as e:  # noqa: BLE001 - hub/network errors come in many types
        is_local = Path(target).exists() or looks_like_local_path(target)
        if fallback is None or is_local or str(fallback) == target:
            if isinstance(e, CheckpointError):
                raise
            if offline:
                raise CheckpointError(
                    f"could not load model {target!r}: the Hugging Face Hub is unreachable and it is not in the "
                    "local cache"
                ) from e
            raise CheckpointError(f"could not load model {target!r}: {type(e).__name__}: {e}") from e
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        if offline:
            reason = "the Hugging Face Hub is unreachable and it is not in the local cache"
        model = RenderDiffusion.from_pretrained(str(fallback))
        notice = f"Could not load {target!r} ({reason}); using the shipped weights in {Path(fallback).name}/ instead."
        model = model.to(device).eval()
        return LoadedModel(model, fallback, notice, shipped_name(fallback, weights),
                           _estimator(str(fallback), model, True))
    return LoadedModel(model, target, name=shipped_name(target, weights),
                       camera_estimator=_estimator(target, model, local_files_only))
