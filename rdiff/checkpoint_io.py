"""The model checkpoint format: a folder (or Hub repo) with ``config.json`` and ``model.safetensors``.

Safetensors only, never pickle; every way a checkpoint can be bad (missing, corrupt, truncated, not
matching its config, non-finite) raises :class:`CheckpointError` with a readable message.
:class:`~rdiff.model.RenderDiffusion` delegates its ``save_pretrained`` / ``from_pretrained`` here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from torch import Tensor, nn

from rdiff.config import RenderDiffusionConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match its config."""


def looks_like_local_path(source: str) -> bool:
    """Whether ``source`` reads as a filesystem path rather than a Hub id (``user/repo``)."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1


def write_checkpoint(model: nn.Module, config: RenderDiffusionConfig, folder: str | Path) -> None:
    """Write ``model``'s weights as ``model.safetensors`` and ``config`` as ``config.json`` into ``folder``."""
    from safetensors.torch import save_model

    save_model(model, str(Path(folder) / WEIGHTS_NAME))
    (Path(folder) / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2))


def checkpoint_files(
    source: str | Path,
    *,
    force_download: bool = False,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    revision: str | None = None,
) -> tuple[str, str]:
    """Local paths of a checkpoint's ``config.json`` and ``model.safetensors``: a folder, or a Hub repo's files.

    A ``source`` that is a file, or reads as a path (:func:`looks_like_local_path`) but is no folder, and a
    folder without either file raise :class:`CheckpointError`; Hub download errors propagate as they are.
    """
    model_id = os.path.expanduser(str(source))
    if not os.path.isdir(model_id) and (os.path.exists(model_id) or looks_like_local_path(model_id)):
        raise CheckpointError(f"model folder {model_id!r} does not exist (or is not a folder)")

    def fetch(name: str) -> str:
        if os.path.isdir(model_id):
            path = os.path.join(model_id, name)
            if not os.path.isfile(path):
                raise CheckpointError(f"{model_id!r} has no {name}: not an rdiff checkpoint folder")
            return path
        return hf_hub_download(
            repo_id=model_id,
            filename=name,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
        )

    return fetch(CONFIG_NAME), fetch(WEIGHTS_NAME)


def read_config(config_path: str | Path) -> RenderDiffusionConfig:
    """Parse a checkpoint's ``config.json``; anything unreadable or invalid raises :class:`CheckpointError`."""
    try:
        raw = json.loads(Path(config_path).read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("config.json must hold a JSON object")
        return RenderDiffusionConfig.from_dict(raw)
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"invalid checkpoint config {str(config_path)!r}: {e}") from e


def read_weights(weights_path: str | Path, map_location: str = "cpu") -> dict[str, Tensor]:
    """Load a safetensors file (never pickle); unreadable files raise :class:`CheckpointError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(weights_path), device=map_location)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint weights {str(weights_path)!r} are corrupt or truncated: {e}") from e


def check_weights(expected: dict[str, Tensor], state: dict[str, Tensor]) -> None:
    """Raise :class:`CheckpointError` unless ``state`` matches ``expected`` (names, shapes, dtypes) and is finite."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    wrong_dtype = sorted(k for k in set(expected) & set(state) if expected[k].dtype != state[k].dtype)
    if missing or unexpected or wrong or wrong_dtype:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            got, want = tuple(state[k].shape), tuple(expected[k].shape)
            parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: {got} vs {want})")
        if wrong_dtype:
            k = wrong_dtype[0]
            parts.append(f"{len(wrong_dtype)} dtype mismatches (e.g. {k}: {state[k].dtype} vs {expected[k].dtype})")
        raise CheckpointError("checkpoint weights do not match its config: " + "; ".join(parts))
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise CheckpointError("checkpoint weights contain NaN or infinite values")


def load_weights_into(model: nn.Module, weights_path: str | Path, map_location: str = "cpu") -> None:
    """Strictly load a safetensors file into ``model`` after :func:`check_weights`."""
    state = read_weights(weights_path, map_location)
    check_weights(model.state_dict(), state)
    model.load_state_dict(state, strict=True)
