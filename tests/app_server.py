"""Test helper: run the real Gradio app on 127.0.0.1 (free port) with a tiny, untrained checkpoint.

In-process: :func:`running_app` (tests can reach the registry and model). In a child process:
:func:`app_subprocess` (``python tests/app_server.py WORKDIR``), so that the server's memory can be
measured on its own (see ``tests/test_app_load.py``). :func:`make_shipped` makes a folder of tiny
"shipped" models and their example folders, for an app whose picker lists several models.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rdiff import RenderDiffusion


@dataclass
class AppServer:
    url: str
    app: object  # gr.Blocks
    registry: object  # demo.models.ModelRegistry
    checkpoint: Path

    @property
    def model(self) -> RenderDiffusion:
        return self.registry.get(str(self.checkpoint)).model


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tiny_checkpoint(folder: Path) -> Path:
    """Save a tiny random model (see ``conftest.tiny_config``) to ``folder``."""
    from conftest import tiny_config

    torch.manual_seed(0)
    RenderDiffusion(tiny_config()).eval().save_pretrained(folder)
    return folder


def make_estimating_checkpoint(folder: Path, outputs: list[float]) -> Path:
    """A tiny checkpoint with a camera estimator that always answers the normalised ``outputs``
    (ranges: elevation 10-60°, distance 2.5-3.5, FOV 40-50°; e.g. [0.2, -0.5, 1.0] -> 40°, 2.75, 50°)."""
    from rdiff.camera_estimator import CameraEstimator, CameraEstimatorConfig

    make_tiny_checkpoint(folder)
    estimator = CameraEstimator(CameraEstimatorConfig(16, (10.0, 60.0), (2.5, 3.5), (40.0, 50.0)))
    with torch.no_grad():
        estimator.head[-1].weight.zero_()
        estimator.head[-1].bias.copy_(torch.tensor(outputs))
    estimator.save(folder)
    return folder


#: The tiny shipped models of :func:`make_shipped`: name -> config overrides (other default cameras and T).
SHIPPED = {
    "clevr1-32": {},
    "chairs-64": dict(default_azimuth=200.0, default_elevation=15.0, default_radius=2.4, default_fov_x=0.6,
                      timesteps=50),
    "plain-16": dict(default_azimuth=10.0, default_elevation=50.0, timesteps=80),
}
#: The one example of the tiny ``chairs-64`` (camera: azimuth, elevation, radius, fov in degrees).
CHAIR_EXAMPLE = {"file": "chair.png", "title": "a chair", "azimuth": 210.0, "elevation": 20.0, "radius": 2.5,
                 "fov": 35.0}
#: The summary in the tiny ``chairs-64``'s model card (the others have no card).
CHAIR_SUMMARY = "tiny test chairs on a red floor, 64x64 pixels"


def make_shipped(workdir: Path) -> tuple[Path, Path]:
    """``(weights, assets)`` in ``workdir``: the tiny models of :data:`SHIPPED` and their examples.

    ``clevr1-32`` gets a copy of the real CLEVR examples, ``chairs-64`` one example of its own
    (:data:`CHAIR_EXAMPLE`) and a model card with :data:`CHAIR_SUMMARY`, ``plain-16`` none; ``weights/`` also
    holds a folder without config.json.
    """
    from conftest import tiny_config
    from PIL import Image

    from demo.examples import ASSETS

    weights, assets = workdir / "weights", workdir / "assets"
    for i, (name, overrides) in enumerate(SHIPPED.items()):
        torch.manual_seed(i)
        RenderDiffusion(tiny_config(**overrides)).eval().save_pretrained(weights / name)
    card = f"---\nlicense: mit\nsummary: {json.dumps(CHAIR_SUMMARY)}\n---\n# chairs\n"
    (weights / "chairs-64" / "README.md").write_text(card)
    (weights / "not-a-model").mkdir()
    shutil.copytree(ASSETS / "clevr1-32", assets / "clevr1-32")
    chairs = assets / "chairs-64"
    chairs.mkdir(parents=True)
    Image.new("RGB", (64, 64), (150, 40, 40)).save(chairs / CHAIR_EXAMPLE["file"])
    (chairs / "examples.json").write_text(json.dumps({"examples": [CHAIR_EXAMPLE]}))
    return weights, assets


@contextmanager
def running_app(workdir: Path, default: str | None = None, weights: Path | None = None,
                **build_options: Any) -> Iterator[AppServer]:
    """Build the app around a fresh tiny checkpoint in ``workdir`` and serve it until the block exits.

    ``default``: the default model instead of that checkpoint (e.g. a name of the shipped models in
    ``weights``, see :func:`make_shipped`). ``build_options`` go to :func:`demo.app.build_app` (e.g.
    ``max_queue``, ``assets``).
    """
    from demo.app import build_app, launch
    from demo.models import ModelRegistry
    from demo.results import OutputStore

    checkpoint = make_tiny_checkpoint(workdir / "tiny-ckpt")
    registry = ModelRegistry(default or str(checkpoint), device="cpu", weights=weights)
    app = build_app(registry.default_source, registry=registry, store=OutputStore(workdir / "outputs"), **build_options)
    port = free_port()
    launch(app, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield AppServer(f"http://127.0.0.1:{port}/", app, registry, checkpoint)
    finally:
        app.close()


@dataclass
class AppProcess:
    url: str
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def app_subprocess(workdir: Path, startup_timeout_s: float = 120.0) -> Iterator[AppProcess]:
    """Serve the app (tiny checkpoint, 127.0.0.1, free port) from a child Python process.

    The child prints ``URL <url>`` once serving; it exits when its stdin closes (so it never outlives
    the test run) or when terminated here.
    """
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(root / "tests")]),
               HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1")
    log = open(workdir / "server.log", "w")
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(workdir)], cwd=root, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        deadline, url = time.monotonic() + startup_timeout_s, None
        assert proc.stdout is not None
        while url is None:  # the child prints nothing else on stdout before its URL
            line = proc.stdout.readline()
            if not line and (proc.poll() is not None or time.monotonic() > deadline):
                raise RuntimeError(f"the app process did not start; see {workdir / 'server.log'}")
            if line.startswith("URL "):
                url = line.split(maxsplit=1)[1].strip()
        yield AppProcess(url, proc)
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def main(argv: list[str] | None = None) -> None:
    """``python tests/app_server.py WORKDIR``: serve until stdin closes."""
    import torch

    torch.set_num_threads(1)  # as in the test process (conftest): the machine is small and shared
    workdir = Path((argv or sys.argv[1:])[0])
    workdir.mkdir(parents=True, exist_ok=True)
    with running_app(workdir) as server:
        print("URL", server.url, flush=True)
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or exited


if __name__ == "__main__":
    main()
