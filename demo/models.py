"""The model picker's back end: load a Hub id or local folder once, keep a few loaded models.

One :class:`ModelRegistry` is created per app (no module-level state). Loading goes through
:func:`rdiff.hub.load_model`; when the requested source cannot be loaded (unknown Hub id, offline)
the app's default model is used instead and :attr:`LoadedModel.notice` says so, for the UI to show.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import torch

from rdiff.hub import SHIPPED_WEIGHTS, LoadedModel, load_model
from rdiff.model import CheckpointError

DEFAULT_CAPACITY = 2  # models kept in memory at once (least recently used is dropped)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelRegistry:
    """Loaded models cached by source string; thread safe (handlers run in worker threads).

    Args:
        default_source: used for an empty source and as the fallback for sources that fail to load.
        device: where models are put.
        capacity: how many models to keep loaded.
    """

    def __init__(self, default_source: str | Path | None = None, device: str | None = None,
                 capacity: int = DEFAULT_CAPACITY) -> None:
        self.default_source = str(default_source or SHIPPED_WEIGHTS)
        self.device = device or default_device()
        self.capacity = max(1, capacity)
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, source: str | None) -> str:
        """The cache key of ``source`` (blank -> the default source)."""
        return (source or "").strip() or self.default_source

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
                loaded = load_model(key, device=self.device, fallback=fallback)
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
