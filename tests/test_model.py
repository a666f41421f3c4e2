"""The denoiser: shapes, checkpoint round trips and loud, readable failures for bad checkpoints."""

import json
import pickle
import shutil

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file, save_file

from rdiff import CheckpointError, RenderDiffusion
from rdiff.cameras import orbit_cameras
from rdiff.hub import load_model
from rdiff.training.loop import random_rays


def _inputs(model, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = model.config.image_size
    x = torch.rand(b, 3, m, m, generator=g) * 2 - 1
    t = torch.randint(0, model.config.timesteps, (b,), generator=g)
    cams = orbit_cameras(torch.rand(b, generator=g) * 360, torch.rand(b, generator=g) * 40 + 15, 3.0, 0.8)
    return x, t, cams


@pytest.fixture
def no_pickle(monkeypatch):
    """Fail the test if anything unpickles while loading."""

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint loader must never unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


# --------------------------------------------------------------------------------------------------
# forward


def test_forward_full_image_shapes(tiny_model):
    x, t, cams = _inputs(tiny_model)
    with torch.inference_mode():
        out = tiny_model(x, t, cams)
    c = tiny_model.config
    assert out.x0.shape == (2, 3, 16, 16)
    assert out.planes.shape == (2, 3, c.triplane_channels, c.triplane_size, c.triplane_size)
    assert out.triplane_rotations.shape == (2, 3, 3)
    assert out.depth.shape == (2, 16, 16) and out.opacity.shape == (2, 16, 16)
    assert float(out.x0.min()) >= -1.0 - 1e-5 and float(out.x0.max()) <= 1.0 + 1e-5
    assert bool(((out.opacity >= 0) & (out.opacity <= 1 + 1e-6)).all())


def test_forward_ray_subset_matches_full_image(tiny_model):
    x, t, cams = _inputs(tiny_model, seed=1)
    origins, dirs, idx = random_rays(cams, 16, 40, torch.Generator().manual_seed(0))
    with torch.no_grad():
        sub = tiny_model(x, t, cams, rays=(origins, dirs))
        full = tiny_model(x, t, cams)
    assert sub.x0.shape == (2, 40, 3) and sub.depth.shape == (2, 40)
    flat = full.x0.reshape(2, 3, -1).transpose(1, 2)
    picked = flat.gather(1, idx[..., None].expand(-1, -1, 3))
    torch.testing.assert_close(sub.x0, picked, atol=1e-4, rtol=0)


def test_forward_inference_path_matches_the_differentiable_path(tiny_model):
    """``inference=True`` (what sampling uses) renders the same x0 as the default differentiable path."""
    x, t, cams = _inputs(tiny_model, seed=5)
    origins, dirs, _ = random_rays(cams, 16, 24, torch.Generator().manual_seed(0))
    with torch.inference_mode():
        fast, plain = tiny_model(x, t, cams, inference=True), tiny_model(x, t, cams)
        fast_rays = tiny_model(x, t, cams, rays=(origins, dirs), inference=True)
        plain_rays = tiny_model(x, t, cams, rays=(origins, dirs))
    assert torch.equal(fast.planes, plain.planes)
    torch.testing.assert_close(fast.x0, plain.x0, atol=2e-4, rtol=0)
    torch.testing.assert_close(fast.opacity, plain.opacity, atol=1e-4, rtol=0)
    torch.testing.assert_close(fast_rays.x0, plain_rays.x0, atol=2e-4, rtol=0)
    with pytest.raises(ValueError, match="deterministic"):
        tiny_model(x, t, cams, perturb=True, inference=True)


def test_forward_training_mode_has_gradients(tiny_model):
    x, t, cams = _inputs(tiny_model, seed=2)
    origins, dirs, _ = random_rays(cams, 16, 32)
    out = tiny_model.train()(x, t, cams, rays=(origins, dirs), perturb=True)
    out.x0.square().mean().backward()
    grads = [p.grad for p in tiny_model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_forward_full_image_perturb_jitters_samples(tiny_model):
    x, t, cams = _inputs(tiny_model, seed=4)
    with torch.no_grad():
        plain = tiny_model(x, t, cams)
        torch.manual_seed(0)
        a = tiny_model(x, t, cams, perturb=True)
        torch.manual_seed(0)
        b = tiny_model(x, t, cams, perturb=True)
        c = tiny_model(x, t, cams, perturb=True)
    assert a.x0.shape == plain.x0.shape == (2, 3, 16, 16) and a.depth.shape == (2, 16, 16)
    assert torch.equal(a.x0, b.x0) and not torch.equal(a.x0, c.x0)  # random, and seeded by torch's RNG
    assert not torch.allclose(a.x0, plain.x0, atol=1e-4)
    # jitter moves samples within their bins only: the images stay close to the deterministic render
    assert float((a.x0 - plain.x0).abs().mean()) < 0.1


def test_forward_rejects_bad_shapes(tiny_model):
    x, t, cams = _inputs(tiny_model)
    with pytest.raises(ValueError, match="shape"):
        tiny_model(x[:, :, :8, :8], t, cams)
    with pytest.raises(ValueError, match="cameras"):
        tiny_model(x, t, cams[:1])


def test_default_cameras(tiny_model):
    cams = tiny_model.default_cameras(3)
    assert len(cams) == 3
    torch.testing.assert_close(cams.position.norm(dim=-1), torch.full((3,), tiny_model.config.default_radius))


# --------------------------------------------------------------------------------------------------
# checkpoints


def test_save_load_round_trip(tiny_model, tiny_checkpoint, no_pickle):
    loaded = RenderDiffusion.from_pretrained(tiny_checkpoint)
    assert loaded.config == tiny_model.config
    assert not loaded.training
    x, t, cams = _inputs(tiny_model, seed=3)
    with torch.inference_mode():
        a, b = tiny_model(x, t, cams), loaded(x, t, cams)
    assert torch.equal(a.x0, b.x0) and torch.equal(a.planes, b.planes)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_checkpoint_format_lives_in_checkpoint_io(tiny_model, tmp_path, no_pickle):
    """The model delegates its file format to rdiff.checkpoint_io, whose pieces work on their own."""
    from rdiff import checkpoint_io, model

    assert model.CheckpointError is checkpoint_io.CheckpointError and model.CONFIG_NAME == "config.json"
    checkpoint_io.write_checkpoint(tiny_model, tiny_model.config, tmp_path)
    config_path, weights_path = checkpoint_io.checkpoint_files(tmp_path)
    assert checkpoint_io.read_config(config_path) == tiny_model.config
    fresh = RenderDiffusion(tiny_model.config)
    checkpoint_io.load_weights_into(fresh, weights_path)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k
    with pytest.raises(CheckpointError, match="missing tensors"):
        checkpoint_io.check_weights(tiny_model.state_dict(), {})


def test_round_trip_keeps_non_default_config(tmp_path):
    torch.manual_seed(1)
    model = RenderDiffusion(tiny_config(background="black", schedule="cosine", triplane_aggregate="concat"))
    model.save_pretrained(tmp_path / "m")
    loaded = RenderDiffusion.from_pretrained(tmp_path / "m")
    assert loaded.config.background == "black" and loaded.config.triplane_aggregate == "concat"
    assert torch.equal(loaded.diffusion.alpha_bar, model.diffusion.alpha_bar)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_truncated_weights(tiny_checkpoint, tmp_path, no_pickle):
    folder = _copy(tiny_checkpoint, tmp_path / "trunc")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        RenderDiffusion.from_pretrained(folder)


@pytest.mark.parametrize("payload", [b"", b"\x00" * 7, b"garbage bytes, not safetensors" * 10, b"\xff" * 64])
def test_garbage_weights(tiny_checkpoint, tmp_path, payload, no_pickle):
    folder = _copy(tiny_checkpoint, tmp_path / "garbage")
    (folder / "model.safetensors").write_bytes(payload)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        RenderDiffusion.from_pretrained(folder)


def test_config_that_does_not_match_weights(tiny_checkpoint, tmp_path, no_pickle):
    folder = _copy(tiny_checkpoint, tmp_path / "mismatch")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["base_channels"] = 24
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match its config") as e:
        RenderDiffusion.from_pretrained(folder)
    assert "shape" in str(e.value)  # says what is wrong, e.g. which tensor
    cfg["base_channels"] = 16
    cfg["blocks_per_level"] = 2  # more layers than the weights have
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="missing tensors"):
        RenderDiffusion.from_pretrained(folder)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda c: {**c, "unet_depth": 4}, "unknown config keys"),
        (lambda c: {**c, "image_size": 12}, "power of two"),
        (lambda c: {**c, "background": "purple"}, "background"),
        (lambda c: {**c, "image_size": "large"}, "invalid checkpoint config"),
        (lambda c: [1, 2, 3], "JSON object"),
    ],
)
def test_bad_config_values(tiny_checkpoint, tmp_path, edit, match, no_pickle):
    folder = _copy(tiny_checkpoint, tmp_path / "badcfg")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(edit(cfg)))
    with pytest.raises(CheckpointError, match=match):
        RenderDiffusion.from_pretrained(folder)


def test_config_that_is_not_json(tiny_checkpoint, tmp_path, no_pickle):
    folder = _copy(tiny_checkpoint, tmp_path / "notjson")
    (folder / "config.json").write_text("{image_size: 16,")
    with pytest.raises(CheckpointError, match="config"):
        RenderDiffusion.from_pretrained(folder)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_missing_files(tiny_checkpoint, tmp_path, missing, no_pickle):
    folder = _copy(tiny_checkpoint, tmp_path / "missing")
    (folder / missing).unlink()
    with pytest.raises(CheckpointError, match=f"no {missing}"):
        RenderDiffusion.from_pretrained(folder)


def test_nan_weights(tiny_checkpoint, tmp_path, no_pickle):
    folder = _copy(tiny_checkpoint, tmp_path / "nan")
    state = load_file(str(folder / "model.safetensors"))
    key = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="NaN"):
        RenderDiffusion.from_pretrained(folder)


def test_pickle_checkpoints_are_never_read(tiny_model, tiny_checkpoint, tmp_path, no_pickle):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", folder / "config.json")
    # a file that would run code if unpickled; the loader must not even open it
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(tiny_model.state_dict()))
    (folder / "model.pt").write_bytes(b"not read either")
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        RenderDiffusion.from_pretrained(folder)
    bin_only = tmp_path / "bin-only"
    bin_only.mkdir()
    shutil.copy(folder / "pytorch_model.bin", bin_only / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="not an rdiff checkpoint"):
        RenderDiffusion.from_pretrained(bin_only)


# --------------------------------------------------------------------------------------------------
# hub resolution with fallback


def test_load_model_local_folder(tiny_checkpoint, no_pickle):
    loaded = load_model(tiny_checkpoint, fallback=None)
    assert loaded.notice is None and loaded.source == str(tiny_checkpoint)
    assert isinstance(loaded.model, RenderDiffusion)


def test_unknown_hub_id_falls_back_with_notice(tiny_model, tiny_checkpoint, no_pickle):
    loaded = load_model("rdiff-tests/no-such-model", fallback=tiny_checkpoint)
    assert loaded.notice is not None
    assert "rdiff-tests/no-such-model" in loaded.notice and tiny_checkpoint.name in loaded.notice
    assert loaded.source == str(tiny_checkpoint)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k])


def test_unknown_hub_id_without_fallback_raises():
    with pytest.raises(CheckpointError, match="could not load model"):
        load_model("rdiff-tests/no-such-model", fallback=None)


def test_broken_local_folder_never_falls_back(tiny_checkpoint, tmp_path, no_pickle):
    folder = _copy(tiny_checkpoint, tmp_path / "broken")
    (folder / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(folder, fallback=tiny_checkpoint)
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "does-not-exist", fallback=tiny_checkpoint)
