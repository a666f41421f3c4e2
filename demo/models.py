"""The model picker's back end: load a shipped model (by name), Hub id or local folder once, keep a few.

One :class:`ModelRegistry` is created per app (no module-level state). Loading goes through
:func:`rdiff.hub.load_model`; when the requested source cannot be loaded (unknown Hub id, offline)
the app's default model is used instead and :attr:`LoadedModel.notice` says so, for the UI to show.
A shipped model is cached under its name, however it was asked for (``chairs-64`` or its folder).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import torch

from rdiff.hub import DEFAULT_MODEL, LoadedModel, load_model, model_summary, shipped_models, shipped_name
from rdiff.model import CheckpointError

DEFAULT_CAPACITY = 2  # models kept in memory at once (least recently used is dropped)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelRegistry:
    """Loaded models cached by source string; thread safe (handlers run in worker threads).

    Args:
        default_source: used for an empty source and as the fallback for sources that fail to load
            (default: the shipped ``clevr1-32``).
        device: where models are put.
        capacity: how many models to keep loaded.
        weights: the folder of the shipped models (default ``weights/``).
    """

    def __init__(self, default_source: str | Path | None = None, device: str | None = None,
                 capacity: int = DEFAULT_CAPACITY, weights: str | Path | None = None) -> None:
        self.weights = Path(weights) if weights is not None else None
        self.default_source = self._canonical(str(default_source or DEFAULT_MODEL))
        self.device = device or default_device()
        self.capacity = max(1, capacity)
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def _canonical(self, source: str) -> str:
        source = source.strip()
        return shipped_name(source, self.weights) or source

    def shipped(self) -> list[str]:
        """The names of the shipped models (default model first)."""
        return shipped_models(self.weights)

    def summary(self, source: str | None) -> str | None:
        """What the model of ``source`` was trained on, from its model card (:func:`rdiff.hub.model_summary`)."""
        return model_summary(self.key(source), self.weights)

    def name(self, source: str | None) -> str | None:
        """The shipped model's name that ``source`` refers to (blank -> the default), or None."""
        return shipped_name(self.key(source), self.weights)

    def key(self, source: str | None) -> str:
        """The cache key of ``source``: a shipped model's name, else the source (blank -> the default)."""
        return self._canonical(source or "") or self.default_source

    def get(self, source: str | None = None, reload: bool = False) -> LoadedModel:
        """The model for ``source``, loading it on first use (or again with ``reload``).

        Raises :class:`rdiff.model.CheckpointError` when neither the source nor the default loads.
        """
        key = self.key(source)
        with self._lock:
            if not reload and key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            fallback = None if key == self.default_source else self.default_source
            try:
                loaded = load_model(key, device=self.device, fallback=fallback, weights=self.weights)
            except CheckpointError:
                raise
            except Exception as e:  # noqa: BLE001 - e.g. the fallback folder itself is missing
                reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
                raise CheckpointError(
                    f"could not load model {key!r} nor the default {self.default_source!r}: {reason}"
                ) from e
            self._cache[key] = loaded
            self._cache.move_to_end(key)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
            return loaded
