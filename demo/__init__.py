"""The rdiff Gradio demo: :func:`demo.app.build_app` returns the Blocks, :func:`demo.app.launch` starts it.

Modules: ``app`` (layout and wiring), ``handlers`` (event handlers, plain Python), ``models`` (model
picker/cache), ``results`` (outputs of a run), ``components`` (image inputs with readable errors),
``examples`` (the example images in ``assets/``). The entry point is ``app.py`` at the repository root.
"""
