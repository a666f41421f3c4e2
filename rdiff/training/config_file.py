"""Read a training config from a TOML file into :class:`rdiff.config.TrainConfig`."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import tomllib

from rdiff.config import RenderDiffusionConfig, TrainConfig


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build a TrainConfig; the ``[model]`` table becomes a RenderDiffusionConfig. Unknown keys are errors."""
    data = dict(data)
    model = RenderDiffusionConfig.from_dict(data.pop("model", {}))
    known = {f.name for f in fields(TrainConfig)} - {"model"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown training config keys: {unknown}")
    return TrainConfig(model=model, **data)


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load ``path`` (TOML) and apply ``overrides``: top-level keys, or ``model.KEY`` for the ``[model]`` table
    (e.g. from the command line)."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key.startswith("model."):
            data.setdefault("model", {})[key.removeprefix("model.")] = value
        else:
            data[key] = value
    return train_config_from_dict(data)
