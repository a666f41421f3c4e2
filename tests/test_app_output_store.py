"""The app's output store: per-request folders and preview frames that are never served half-written."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

from demo.results import OutputStore  # noqa: E402


def test_identical_frames_get_distinct_complete_files(tmp_path):
    """Two sessions showing the same image at once each get their own, fully written file."""
    store = OutputStore(tmp_path / "out")
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:48, 16:48] = (230, 20, 20)
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: store.frame_file(image), range(32)))
    assert len(set(paths)) == 32
    for path in paths:
        with Image.open(path) as im:
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")), image)
    assert not [p for p in os.listdir(store.frames) if p.startswith(".")]  # no temporary files left


def test_old_frames_are_pruned_and_request_folders_kept(tmp_path):
    store = OutputStore(tmp_path / "out", max_age_s=3600, frame_age_s=60)
    request = store.request_dir("reconstruct")
    old = store.frame_file(np.zeros((8, 8, 3), np.uint8))
    past = time.time() - 120
    os.utime(old, (past, past))
    os.utime(store.frames, (time.time() - 7200,) * 2)  # an old frames folder is not a request folder to remove
    store._frames_pruned = time.monotonic() - 60  # as if the last pruning were long ago
    new = store.frame_file(np.ones((8, 8, 3), np.uint8))
    assert not os.path.exists(old) and os.path.exists(new)
    store.request_dir("generate")
    assert request.is_dir() and store.frames.is_dir()
