"""Resolving a model source (Hub id or local folder) with an offline fallback to the shipped weights."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from rdiff.model import CheckpointError, RenderDiffusion, looks_like_local_path

SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "clevr1-32"


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
    """A model plus where it came from and, when the requested source failed, why we fell back."""

    model: RenderDiffusion
    source: str
    notice: str | None = None


def load_model(
    source: str | Path | None = None,
    device: str | torch.device = "cpu",
    fallback: str | Path | None = SHIPPED_WEIGHTS,
    local_files_only: bool = False,
) -> LoadedModel:
    """Load ``source`` (a local checkpoint folder or a Hugging Face Hub id; default: the shipped weights).

    If ``source`` cannot be loaded (unknown id, no network, corrupt files) and ``fallback`` is given,
    the fallback is loaded instead and ``notice`` explains what happened. A broken *local* folder
    never silently falls back: its error is raised, since the user pointed at it on purpose.
    """
    if not (source or fallback):
        raise CheckpointError("no model source given and no shipped weights configured")
    target = str(source or fallback)
    offline = not Path(target).is_dir() and not local_files_only and not hub_reachable()
    local_files_only = local_files_only or offline  # offline: the local Hub cache may still have it
    try:
        model = RenderDiffusion.from_pretrained(target, local_files_only=local_files_only)
        return LoadedModel(model.to(device).eval(), target)
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
        return LoadedModel(model.to(device).eval(), str(fallback), notice)
