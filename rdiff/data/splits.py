"""Leak-free train / test splits shared by every dataset command.

Two kinds of source:

* **Generated scenes** (CLEVR1, procedural chairs): the train and test scenes come from separate random
  streams, ``scene_rng(seed, "train", i)`` and ``scene_rng(seed, "test", j)``. A dataset of any size takes
  the first ``n_train`` / ``n_test`` scenes of each stream, so a smaller dataset's test scenes are the first
  test scenes of a larger one and never one of its train scenes.
* **Fixed objects** (mesh folders, aircraft models): each object's split is decided from its own name and the
  seed (:func:`object_split`), independent of which other objects the folder holds.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "test")
_STREAM = {"train": 0, "test": 1}


def split_counts(scenes: int, test_fraction: float) -> tuple[int, int]:
    """``(n_train, n_test)`` for ``scenes`` scenes: at least one train scene, one test scene when asked for."""
    if scenes < 1:
        raise ValueError("need at least one scene")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n_test = int(round(scenes * test_fraction))
    if test_fraction > 0 and scenes > 1:
        n_test = max(n_test, 1)
    n_test = min(n_test, scenes - 1)
    return scenes - n_test, n_test


def scene_seed(seed: int, split: str, index: int) -> list[int]:
    """The seed sequence of scene ``index`` of ``split``: distinct streams for train and test."""
    if split not in _STREAM:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be >= 0")
    return [int(seed), _STREAM[split], int(index)]


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Random generator of scene ``index`` of ``split`` (content and cameras depend on nothing else)."""
    return np.random.default_rng(scene_seed(seed, split, index))


def scene_name(split: str, index: int) -> str:
    """Scene id, unique across splits: ``train_00012`` / ``test_00003``."""
    return f"{split}_{index:05d}"


def object_split(name: str, seed: int, test_fraction: float) -> str:
    """``"train"`` or ``"test"`` for an object, from a hash of its name and the seed only."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    digest = hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    return "test" if u < test_fraction else "train"
