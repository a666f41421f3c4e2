"""Launch the rdiff Gradio app: ``python app.py [--model SOURCE]`` (also the Hugging Face Space entry).

``SOURCE``: a shipped model's name (``clevr1-32``, ``chairs-64``, ...: the folders of ``weights/``), a
Hugging Face Hub id or a local checkpoint folder; the app's model picker lists the shipped models.
Environment: ``RDIFF_MODEL`` (default model, the same kinds of source; default ``clevr1-32``),
``GRADIO_SERVER_NAME`` (default 127.0.0.1), ``GRADIO_SERVER_PORT`` (default: Gradio's, 7860),
``RDIFF_CONCURRENCY`` (diffusion jobs at once, default 1), ``GRADIO_MCP_SERVER=True`` (as ``--mcp``).

``--mcp`` also serves the API endpoints as MCP tools (``/gradio_api/mcp/``); it needs ``pip install
"gradio[mcp]"``. On a ZeroGPU Space the diffusion handlers run under ``spaces.GPU`` (``demo.app.on_gpu``).
"""

from __future__ import annotations

import argparse
import os

from demo.app import build_app, launch, mcp_available
from rdiff.cli import model_help
from rdiff.hub import DEFAULT_MODEL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="RenderDiffusion demo")
    parser.add_argument("--model", default=os.environ.get("RDIFF_MODEL"),
                        help=f"default model: {model_help(DEFAULT_MODEL)} (env RDIFF_MODEL)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ["GRADIO_SERVER_PORT"])
                        if os.environ.get("GRADIO_SERVER_PORT") else None)
    parser.add_argument("--mcp", action="store_true",
                        help='also serve the endpoints as MCP tools (needs: pip install "gradio[mcp]")')
    args = parser.parse_args(argv)
    options = {}
    if args.mcp:
        if not mcp_available():
            parser.error('--mcp needs the MCP extra of Gradio: pip install "gradio[mcp]"')
        options["mcp_server"] = True
    launch(build_app(args.model), server_name=args.host, server_port=args.port, **options)


if __name__ == "__main__":
    main()
