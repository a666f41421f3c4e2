"""The rdiff Gradio demo: :func:`demo.app.build_app` returns the Blocks, :func:`demo.app.launch` starts it.

Modules: ``app`` (layout and wiring), ``handlers`` (event handlers, plain Python), ``models`` (model
picker/cache: shipped models by name, Hub ids, local folders), ``results`` (outputs of a run),
``components`` (image inputs with readable errors), ``examples`` (each shipped model's example images,
``assets/<model>/``). The entry point is ``app.py`` at the repository root.
"""
