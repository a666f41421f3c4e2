"""How the app launches elsewhere: ZeroGPU (``spaces.GPU`` on the diffusion handlers, a no-op without the
``spaces`` package) and the MCP switch (``--mcp``, which needs ``gradio[mcp]``). No server is started."""

from __future__ import annotations

import functools
import sys
import types

import pytest

gr = pytest.importorskip("gradio")

from demo import app as demo_app  # noqa: E402


def test_on_gpu_is_a_no_op_without_spaces(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # "import spaces" raises ImportError

    def fn():
        return 1

    assert demo_app.on_gpu(fn) is fn


def test_the_diffusion_handlers_run_under_spaces_gpu(monkeypatch, tiny_checkpoint, tmp_path):
    decorated = []

    def GPU(duration=None):  # noqa: N802 - spaces' name
        def wrap(fn):
            decorated.append((fn.__name__, duration))
            return functools.wraps(fn)(lambda *a, **k: fn(*a, **k))
        return wrap

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    from demo.models import ModelRegistry
    from demo.results import OutputStore

    app = demo_app.build_app(registry=ModelRegistry(str(tiny_checkpoint), device="cpu"),
                             store=OutputStore(tmp_path))
    assert sorted(name for name, _ in decorated) == ["estimate_camera", "estimate_camera_once", "example",
                                                     "generate", "inpaint", "reconstruct", "sample", "select"]
    assert {d for _, d in decorated} == {demo_app.GPU_DURATION_S}
    params = app.get_api_info()["named_endpoints"]["/reconstruct"]["parameters"]  # signatures survive the wrap
    assert [p["parameter_name"] for p in params][:3] == ["model_source", "image", "azimuth"]
    params = app.get_api_info()["named_endpoints"]["/estimate_camera"]["parameters"]
    assert [p["parameter_name"] for p in params] == ["model_source", "image"]


def test_mcp_flag(monkeypatch, capsys):
    import app as app_py

    launched = []
    monkeypatch.setattr(app_py, "launch", lambda blocks, **options: launched.append(options))
    monkeypatch.setattr(app_py, "build_app", lambda model: None)
    if not demo_app.mcp_available():
        with pytest.raises(SystemExit):
            app_py.main(["--mcp"])
        assert 'pip install "gradio[mcp]"' in capsys.readouterr().err
        assert not launched
    else:
        app_py.main(["--mcp"])
        assert launched[-1]["mcp_server"] is True
    app_py.main([])
    assert "mcp_server" not in launched[-1]  # off unless asked (Gradio still reads GRADIO_MCP_SERVER)
