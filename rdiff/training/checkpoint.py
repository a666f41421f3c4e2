"""Resumable training checkpoints: weights as safetensors, optimiser state loaded with weights_only.

A checkpoint folder holds ``model.safetensors`` (the trained weights), ``ema.safetensors``, ``state.json`` and
``optimizer.pt``. :func:`portable_checkpoint` copies one without ``optimizer.pt`` (half the size: what a
session commits so the next one, on a fresh machine, continues); resuming from it restarts Adam's moments.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn


def save_training_state(
    folder: Path, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer, step: int, extra: dict[str, Any]
) -> None:
    """Write a complete checkpoint atomically (to a temp folder, then rename over ``folder``)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    save_model(ema, str(tmp / "ema.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, **extra}, indent=2))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def load_training_state(
    folder: Path, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_training_state`; returns its ``state.json``.

    Without ``optimizer.pt`` (a :func:`portable_checkpoint`), or with one whose parameter groups are laid out
    differently (written by an older version), the optimiser keeps its fresh state and the returned dict has
    ``"optimizer_restored": False``.
    """
    load_model(model, str(folder / "model.safetensors"), strict=True)
    load_model(ema, str(folder / "ema.safetensors"), strict=True)
    state = json.loads((folder / "state.json").read_text())
    restored = (folder / "optimizer.pt").is_file()
    if restored:
        blob = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
        saved = [len(g["params"]) for g in blob["optimizer"]["param_groups"]]
        restored = saved == [len(g["params"]) for g in optimizer.param_groups]
        if restored:
            optimizer.load_state_dict(blob["optimizer"])
            torch.set_rng_state(blob["rng"])
    return {**state, "optimizer_restored": restored}


def portable_checkpoint(folder: Path, dest: Path) -> Path:
    """Copy checkpoint ``folder`` to ``dest`` without the optimiser state (weights, EMA and ``state.json``)."""
    folder, dest = Path(folder), Path(dest)
    if not (folder / "state.json").is_file():
        raise FileNotFoundError(f"{folder} is not a training checkpoint (no state.json)")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("model.safetensors", "ema.safetensors", "state.json"):
        shutil.copy2(folder / name, tmp / name)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest
