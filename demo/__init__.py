"""The rdiff Gradio demo: ``build_app()`` returns the Blocks, ``launch()`` starts it (see ``app.py``)."""

from demo.app import build_app, launch

__all__ = ["build_app", "launch"]
