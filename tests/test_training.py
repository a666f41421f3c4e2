"""Training loop: resumable checkpoints, EMA export, DDP with two gloo processes, evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file

from rdiff import RenderDiffusion
from rdiff.cameras import orbit_cameras
from rdiff.config import TrainConfig
from rdiff.data.clevr1 import generate_clevr1
from rdiff.data.transforms_json import MASK_OBJECT, MASK_SHADOW
from rdiff.evaluation import evaluate, save_result
from rdiff.training import load_train_config, train
from rdiff.training.checkpoint import portable_checkpoint
from rdiff.training.loop import focus_pixels, random_rays, random_training_timesteps

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clevr1-tiny")
    generate_clevr1(out, scenes=4, views=3, size=16, seed=3, test_fraction=0.25, progress=False)
    return out


def _cfg(data: Path, out: Path, steps: int) -> TrainConfig:
    return TrainConfig(
        data=str(data / "train"), out_dir=str(out), model=tiny_config(), batch_size=4, rays_per_image=64,
        max_steps=steps, warmup_steps=2, log_every=1, sample_every=2, checkpoint_every=2, threads=1,
    )


def _write_toml(cfg: TrainConfig, path: Path) -> Path:
    def value(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    d = asdict(cfg)
    model = d.pop("model")
    lines = [f"{k} = {value(v)}" for k, v in d.items() if v is not None]
    lines += ["", "[model]"] + [f"{k} = {value(v)}" for k, v in model.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_timestep_sampling_mix():
    torch.manual_seed(0)
    t = random_training_timesteps(4000, 1000, low_fraction=0.5, low_max=100)
    assert t.min() >= 0 and t.max() < 1000
    low = (t < 100).float().mean().item()
    assert 0.5 < low < 0.6  # half forced low, plus ~10% of the uniform half
    assert (random_training_timesteps(4000, 1000) < 100).float().mean().item() < 0.15


def test_object_rays_take_their_fraction_from_the_mask():
    """Half the rays from the focus pixels (all of them when the focus is smaller), the rest uniformly from the
    pixels not taken yet, never a pixel twice."""
    cams = orbit_cameras(torch.tensor([0.0, 90.0]), 30.0, 3.0, 0.8)
    size, count = 16, 64
    masks = torch.zeros(2, size, size, dtype=torch.uint8)
    masks[0, 4:12, 4:12] = MASK_OBJECT  # 64 pixels (more after dilation)
    masks[1, 0, 0] = MASK_OBJECT  # a tiny focus: 9 pixels once dilated by 1
    masks[1, 8:, 8:] = MASK_SHADOW  # shadows are not the object
    focus = focus_pixels(masks, dilation=1)
    assert focus[0].sum() == 100 and focus[1].sum() == 4  # the corner pixel's dilation is clipped
    counts = torch.zeros(2, size * size)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        _, _, idx = random_rays(cams, size, count, g, focus=focus, focus_fraction=0.5)
        assert all(len(set(row.tolist())) == count for row in idx)
        inside = focus.gather(1, idx).sum(1)
        assert inside[0] >= 32 and inside[1] == 4
        counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=counts.dtype))
    rest = counts[0][~focus[0]]  # the other 32 rays of a draw over the 224 pixels not taken: ~28.6 hits each
    assert abs(float(rest.mean()) - 200 * 32 / 224) < 2.0 and float(rest.min()) > 10
    assert float(counts[0][focus[0]].mean()) > 2.5 * float(rest.mean())
    _, _, plain = random_rays(cams, size, count, torch.Generator().manual_seed(1))
    assert focus.gather(1, plain).float().mean() < 0.5  # without focus: about the focus's share of the frame


def test_training_with_object_rays_needs_masks(tmp_path, tiny_dataset):
    cfg = _cfg(tiny_dataset, tmp_path / "run", steps=2)
    cfg.object_ray_fraction, cfg.novel_view_weight = 0.5, 0.5
    train(cfg, progress=False)  # the CLEVR1 generator stores masks
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["step"] == 2
    meta = json.loads((tiny_dataset / "train" / "transforms.json").read_text())
    for fr in meta["frames"][:1]:
        fr.pop("mask_path", None)
    bare = tmp_path / "bare"
    bare.mkdir()
    for item in (tiny_dataset / "train").iterdir():
        if item.name != "transforms.json":
            (bare / item.name).symlink_to(item)
    (bare / "transforms.json").write_text(json.dumps(meta))
    cfg = _cfg(tiny_dataset, tmp_path / "run2", steps=1)
    cfg.data, cfg.object_ray_fraction = str(bare), 0.5
    with pytest.raises(ValueError, match="needs object masks"):
        train(cfg, progress=False)


def test_train_resumes_and_exports(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    model_dir = train(_cfg(tiny_dataset, out, steps=3), progress=False)
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3
    first = load_file(str(out / "checkpoint" / "model.safetensors"))
    # Resume: the step counter continues and the weights keep changing from where they were.
    train(_cfg(tiny_dataset, out, steps=5), progress=False)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 5
    second = load_file(str(out / "checkpoint" / "model.safetensors"))
    assert any(not torch.equal(first[k], second[k]) for k in first)
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(r["loss"]) for r in logged)
    assert list((out / "samples").glob("*.png"))
    # The exported EMA model loads with from_pretrained.
    model = RenderDiffusion.from_pretrained(str(model_dir))
    assert model.config == tiny_config()


def test_portable_checkpoint_continues_on_a_fresh_machine(tiny_dataset, tmp_path):
    """A committed checkpoint without optimiser state: a new out_dir resumes it (step, images, weights) and
    warms the learning rate up again because Adam's moments restart."""
    first = tmp_path / "session1"
    train(_cfg(tiny_dataset, first, steps=3), progress=False)
    portable = portable_checkpoint(first / "checkpoint", tmp_path / "committed" / "chairs")
    assert sorted(p.name for p in portable.iterdir()) == ["ema.safetensors", "model.safetensors", "state.json"]
    cfg = _cfg(tiny_dataset, tmp_path / "session2", steps=5)
    cfg.resume_from, cfg.warmup_steps = str(portable), 4
    train(cfg, progress=False)
    state = json.loads((tmp_path / "session2" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 5 and state["images_seen"] == 5 * 4
    logged = [json.loads(line) for line in (tmp_path / "session2" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [4, 5]
    assert [r["lr"] for r in logged] == pytest.approx([cfg.lr / 4, cfg.lr / 2])
    cfg.resume_from = str(tmp_path / "nothing-here")
    cfg.out_dir = str(tmp_path / "session3")
    with pytest.raises(FileNotFoundError, match="not a training checkpoint"):
        train(cfg, progress=False)


def test_resume_with_other_model_config_is_refused(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_dataset, out, steps=1), progress=False)
    cfg = _cfg(tiny_dataset, out, steps=2)
    cfg.model = tiny_config(base_channels=8)
    with pytest.raises(ValueError, match="different model config"):
        train(cfg, progress=False)


def test_resume_a_checkpoint_older_than_a_new_model_option(tiny_dataset, tmp_path):
    """A checkpoint written before a model option existed records no value for it: it resumes when the run
    keeps that option at its default, and is refused when the run changes it."""
    out = tmp_path / "run"
    train(_cfg(tiny_dataset, out, steps=1), progress=False)
    state_file = out / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    del state["model_config"]["lift_features"], state["model_config"]["ray_conditioning"]
    state_file.write_text(json.dumps(state))
    train(_cfg(tiny_dataset, out, steps=2), progress=False)
    assert json.loads(state_file.read_text())["step"] == 2
    cfg = _cfg(tiny_dataset, out, steps=3)
    cfg.model = tiny_config(lift_features=4)
    with pytest.raises(ValueError, match="different model config"):
        train(cfg, progress=False)


def test_config_file_round_trip_and_unknown_keys(tiny_dataset, tmp_path):
    cfg = _cfg(tiny_dataset, tmp_path / "run", steps=2)
    path = _write_toml(cfg, tmp_path / "cfg.toml")
    assert load_train_config(path) == cfg
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace("batch_size", "batch_sise"))
    with pytest.raises(ValueError, match="batch_sise"):
        load_train_config(bad)


def test_command_line_overrides_reach_the_model_table(tiny_dataset, tmp_path):
    from rdiff.cli import parse_assignments

    path = _write_toml(_cfg(tiny_dataset, tmp_path / "run", steps=2), tmp_path / "cfg.toml")
    cfg = load_train_config(path, parse_assignments(["model.lift_features=16", "model.ray_conditioning=true",
                                                     "novel_view_weight=0.5"]))
    assert (cfg.model.lift_features, cfg.model.ray_conditioning, cfg.novel_view_weight) == (16, True, 0.5)
    assert cfg.model.triplane_channels == tiny_config().triplane_channels  # the rest of [model] is kept
    with pytest.raises(ValueError, match="unknown config keys"):
        load_train_config(path, {"model.lift_feature": 16})


@pytest.mark.timeout(300)
@pytest.mark.parametrize("novel_view_weight", [0.0, 0.5])
def test_ddp_two_gloo_processes(tiny_dataset, tmp_path, novel_view_weight):
    out = tmp_path / "ddp"
    run_cfg = _cfg(tiny_dataset, out, steps=4)
    run_cfg.novel_view_weight = novel_view_weight  # the unseen-view loss goes through the one DDP forward
    cfg = _write_toml(run_cfg, tmp_path / "ddp.toml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "rdiff", "train", "--config", str(cfg)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 4
    assert state["images_seen"] == 4 * 4 * 2  # two processes, batch 4 each
    RenderDiffusion.from_pretrained(str(out / "model"))


def test_evaluate_reports_regions_baselines_and_azimuth_breakdown(tiny_dataset, tmp_path, tiny_model):
    result = evaluate(tiny_model, tiny_dataset / "test", t_rs=(0, 5), steps=2, progress=False)
    assert result.scenes == 1 and result.views == 2
    assert set(result.metrics) == {"0", "5"} and set(result.baselines) == {"copy_input", "mean_image"}
    for m in [*result.metrics.values(), *result.baselines.values()]:
        for k in ("psnr", "fg_psnr", "obj_psnr"):
            assert 0 < m[k] < 60, (k, m)
        assert -1 <= m["ssim"] <= 1 and -1 <= m["obj_ssim"] <= 1
    for m in result.metrics.values():
        assert 0 <= m["beats_copy_obj"] <= 1 and m["input_psnr"] > 0
    assert sum(b["views"] for b in result.by_azimuth["copy_input"].values()) == result.views
    table = result.table()
    assert "copy-input" in table and "obj_psnr" in table and "135-180" in table
    data = json.loads(save_result(result, tmp_path / "m.json").read_text())
    assert data["metrics"]["0"]["psnr"] == pytest.approx(result.metrics["0"]["psnr"])
    again = evaluate(tiny_model, tiny_dataset / "test", t_rs=(0, 5), steps=2, progress=False)
    assert again.metrics == result.metrics  # deterministic by seed


def test_evaluate_baselines_score_what_they_predict(tmp_path, tiny_model):
    """Copy-input is exact when a scene's views are identical; region metrics use the target's mask."""
    from rdiff.data import PosedImage, write_transforms
    from rdiff.evaluation import score_view

    img = np.full((16, 16, 3), 0.5, np.float32)
    img[4:12, 4:12] = (0.9, 0.1, 0.1)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    c2w = np.eye(4, dtype=np.float32)
    c2w[2, 3] = 3.0
    write_transforms(tmp_path, [PosedImage(img, c2w, 0.8, "s", "", mask=mask) for _ in range(3)])
    result = evaluate(tiny_model, tmp_path, progress=False)
    assert result.baselines["copy_input"]["obj_psnr"] == float("inf")
    pred = img.copy()
    pred[0, 0] = 0.0  # an error outside the object leaves the object score perfect
    sc = score_view(pred, img, mask)
    assert sc["obj_psnr"] == float("inf") and sc["fg_psnr"] == float("inf") and sc["psnr"] < 40
    pred[8, 8] = 0.0
    assert score_view(pred, img, mask)["obj_psnr"] < score_view(pred, img, None)["psnr"]


def test_evaluate_needs_multi_view_scenes(tiny_model, tmp_path):
    from rdiff.data import PosedImage, write_transforms

    img = np.zeros((16, 16, 3), np.float32)
    frames = [PosedImage(img, np.eye(4, dtype=np.float32), 0.8, f"s{i}", "") for i in range(2)]
    write_transforms(tmp_path, frames)
    with pytest.raises(ValueError, match="two or more views"):
        evaluate(tiny_model, tmp_path, progress=False)


def test_init_from_pretrained_weights(tiny_dataset, tmp_path):
    torch.manual_seed(1234)  # weights unlike the run's own seeded initialisation
    tiny_checkpoint = tmp_path / "start"
    RenderDiffusion(tiny_config()).save_pretrained(tiny_checkpoint)
    cfg = _cfg(tiny_dataset, tmp_path / "run", steps=1)
    cfg.init_from = str(tiny_checkpoint)
    cfg.lr = 1e-12  # one step that barely moves the weights: the result must stay at the initial ones
    cfg.ema_decay = 0.0
    model_dir = train(cfg, progress=False)
    start = RenderDiffusion.from_pretrained(str(tiny_checkpoint)).state_dict()
    trained = RenderDiffusion.from_pretrained(str(model_dir)).state_dict()
    assert all(torch.allclose(start[k], trained[k], atol=1e-6) for k in start)
    cfg2 = _cfg(tiny_dataset, tmp_path / "run2", steps=1)
    cfg2.init_from = str(tiny_checkpoint)
    cfg2.model = tiny_config(base_channels=8)
    with pytest.raises(ValueError, match="different model config"):
        train(cfg2, progress=False)


def test_init_from_switches_on_geometry_aware_encoder_options(tiny_dataset, tmp_path):
    torch.manual_seed(4321)
    start_dir = tmp_path / "plain"
    RenderDiffusion(tiny_config()).save_pretrained(start_dir)
    cfg = _cfg(tiny_dataset, tmp_path / "run", steps=2)
    cfg.init_from = str(start_dir)
    cfg.model = tiny_config(lift_features=4, lift_depths=2, ray_conditioning=True)
    cfg.ema_decay = 0.0  # export the trained weights themselves
    trained = RenderDiffusion.from_pretrained(str(train(cfg, progress=False)))
    assert trained.config.lift_features == 4 and trained.config.ray_conditioning
    start = RenderDiffusion.from_pretrained(str(start_dir)).state_dict()
    weights = trained.state_dict()
    # two Adam steps at lr 2e-4 move each weight by ~4e-4; a fresh initialisation would differ by ~0.1
    assert max((start[k] - weights[k]).abs().max().item() for k in start) < 2e-3
    assert weights["encoder.projective.out.weight"].abs().max() > 1e-5  # the new branches trained
    assert weights["encoder.rays.conv.weight"].abs().max() > 1e-5


def test_extension_modules_get_their_own_learning_rate(tiny_dataset, tmp_path):
    from rdiff.training.loop import parameter_groups

    model = RenderDiffusion(tiny_config(lift_features=4, ray_conditioning=True))
    groups = parameter_groups(model)
    assert len(groups) == 2 and groups[1]["extension"]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(parameter_groups(RenderDiffusion(tiny_config()))) == 1
    cfg = _cfg(tiny_dataset, tmp_path / "run", steps=2)
    cfg.model, cfg.extension_lr_scale = tiny_config(lift_features=4), 10.0
    train(cfg, progress=False)
    saved = torch.load(tmp_path / "run" / "checkpoint" / "optimizer.pt", weights_only=True)["optimizer"]
    base, extension = saved["param_groups"]
    assert extension["extension"] and extension["lr"] == pytest.approx(10 * base["lr"])


def test_optimizer_state_of_another_group_layout_is_not_restored(tmp_path):
    """A checkpoint whose optimiser had one group (before the extension modules got their own) resumes its weights
    with a fresh optimiser instead of failing."""
    from rdiff.training.checkpoint import load_training_state, save_training_state
    from rdiff.training.loop import parameter_groups

    model = RenderDiffusion(tiny_config(lift_features=4))
    one_group = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.encoder.stem.weight.sum().backward()
    one_group.step()
    save_training_state(tmp_path / "ckpt", model, model, one_group, 1, {})
    same = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert load_training_state(tmp_path / "ckpt", model, model, same)["optimizer_restored"]
    assert len(same.state) > 0
    grouped = torch.optim.AdamW(parameter_groups(model), lr=1e-3)
    assert not load_training_state(tmp_path / "ckpt", model, model, grouped)["optimizer_restored"]
    assert len(grouped.state) == 0


@pytest.mark.timeout(200)
def test_sigterm_checkpoints_and_exits_cleanly(tiny_dataset, tmp_path):
    import signal
    import time

    out = tmp_path / "term"
    cfg = _cfg(tiny_dataset, out, steps=100_000)
    cfg.checkpoint_every = 100_000  # only the shutdown path writes a checkpoint
    path = _write_toml(cfg, tmp_path / "term.toml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "rdiff", "train", "--config", str(path)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = out / "log.jsonl"
    deadline = time.monotonic() + 150
    while not (log.exists() and len(log.read_text().splitlines()) >= 3):
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    steps_logged = json.loads(log.read_text().splitlines()[-1])["step"]
    saved = json.loads((out / "checkpoint" / "state.json").read_text())["step"]
    assert 3 <= steps_logged <= saved < 100_000
    RenderDiffusion.from_pretrained(str(out / "model"))
