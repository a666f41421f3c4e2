"""Test helper: run the real Gradio app on 127.0.0.1 (free port) with a tiny, untrained checkpoint."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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


@contextmanager
def running_app(workdir: Path) -> Iterator[AppServer]:
    """Build the app around a fresh tiny checkpoint in ``workdir`` and serve it until the block exits."""
    from demo.app import build_app, launch
    from demo.models import ModelRegistry
    from demo.results import OutputStore

    checkpoint = make_tiny_checkpoint(workdir / "tiny-ckpt")
    registry = ModelRegistry(str(checkpoint), device="cpu")
    app = build_app(str(checkpoint), registry=registry, store=OutputStore(workdir / "outputs"))
    port = free_port()
    launch(app, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield AppServer(f"http://127.0.0.1:{port}/", app, registry, checkpoint)
    finally:
        app.close()
