"""The input-camera estimator: it learns elevation from posed views, ships beside a checkpoint, and the CLI uses it."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rdiff.camera_estimator import (
    ESTIMATOR_CONFIG,
    ESTIMATOR_WEIGHTS,
    CameraEstimator,
    CameraEstimatorConfig,
    camera_values,
    find_camera_estimator,
)
from rdiff.cameras import orbit_cameras
from rdiff.cli import main
from rdiff.hub import load_model
from rdiff.training.camera import CameraTrainSettings, posed_arrays, train_camera_estimator


@pytest.fixture(scope="module")
def posed_data(tmp_path_factory):
    from rdiff.data.clevr1 import generate_clevr1

    root = tmp_path_factory.mktemp("camdata")
    generate_clevr1(root, scenes=60, views=8, size=16, seed=0, test_fraction=0.2, progress=False, supersample=1,
                    shadow_samples=1)
    return root


@pytest.fixture(scope="module")
def trained(posed_data):
    return train_camera_estimator(posed_data / "train", posed_data / "test", 16,
                                  CameraTrainSettings(epochs=15, batch_size=32), progress=False)


def test_camera_values_invert_orbit_cameras():
    cams = orbit_cameras(123.0, 37.0, 2.9, math.radians(44.0))
    el, r, fov = camera_values(cams.c2w[0].numpy(), float(cams.fov_x[0]))
    assert el == pytest.approx(37.0, abs=1e-4) and r == pytest.approx(2.9, abs=1e-5)
    assert fov == pytest.approx(44.0, abs=1e-4)


def test_estimator_learns_the_camera(trained, posed_data):
    err = trained.config.test_error
    # far better than always answering the training mean; elevation is what the image shows best
    assert err["elevation_deg"] < 0.4 * err["elevation_deg_mean_baseline"]
    assert err["fov_deg"] < err["fov_deg_mean_baseline"] and err["radius"] < err["radius_mean_baseline"]
    assert err["test_views"] == 96 and err["train_views"] == 384
    lo, hi = trained.config.elevation_deg
    assert 10 <= lo < 20 and 55 < hi <= 61  # the ranges of the data (CLEVR1: elevation 15-60)
    images, values = posed_arrays(posed_data / "test", 16)
    est = trained.estimate(images[0])
    assert abs(est.elevation_deg - float(values[0, 0])) < 12 and lo <= est.elevation_deg <= hi


def test_estimate_clamps_and_flags_out_of_range(trained):
    config = CameraEstimatorConfig(16, (20.0, 30.0), (2.9, 3.1), (40.0, 41.0))
    model = CameraEstimator(config)
    model.load_state_dict(trained.state_dict())  # same architecture, narrower ranges
    with torch.no_grad():
        model.head[-1].bias.copy_(torch.tensor([5.0, 0.0, 0.0]))  # elevation far above the range
        model.head[-1].weight.zero_()
    est = model.estimate(torch.zeros(3, 16, 16))
    assert est.elevation_deg == 30.0 and not est.in_range
    assert est.radius == pytest.approx(3.0) and est.fov_deg == pytest.approx(40.5)
    assert "elevation" in est.describe() and "trained 20-30" in est.describe()
    with pytest.raises(ValueError, match="16x16"):
        model.estimate(torch.zeros(3, 32, 32))


def test_ships_beside_a_checkpoint(trained, tiny_checkpoint, tmp_path):
    assert load_model(tiny_checkpoint).camera_estimator is None
    trained.save(tiny_checkpoint)
    loaded = load_model(tiny_checkpoint).camera_estimator
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(loaded.predict(x), trained.predict(x))
    assert loaded.config.test_error == trained.config.test_error
    assert find_camera_estimator(tmp_path / "nothing-here") is None
    (tiny_checkpoint / ESTIMATOR_WEIGHTS).write_bytes(b"broken")
    with pytest.warns(UserWarning, match="broken camera estimator"):
        assert load_model(tiny_checkpoint).camera_estimator is None  # the model still loads


def test_cli_train_estimate_and_reconstruct(posed_data, tiny_checkpoint, tmp_path, capsys):
    assert main(["camera", "train", "--data", str(posed_data / "train"), "--test", str(posed_data / "test"),
                 "--out", str(tiny_checkpoint), "--epochs", "2"]) == 0
    assert "elevation_deg" in capsys.readouterr().out
    assert json.loads((tiny_checkpoint / ESTIMATOR_CONFIG).read_text())["image_size"] == 16
    photo = sorted((posed_data / "test" / "images").glob("*.png"))[0]
    assert main(["camera", "estimate", str(photo), "--model", str(tiny_checkpoint)]) == 0
    assert "elevation" in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["reconstruct", str(photo), "--model", str(tiny_checkpoint), "--estimate-camera", "--out", str(out),
                 "--frames", "2"]) == 0
    assert "estimated camera: elevation" in capsys.readouterr().err
    (tiny_checkpoint / ESTIMATOR_CONFIG).unlink()
    assert main(["reconstruct", str(photo), "--model", str(tiny_checkpoint), "--estimate-camera",
                 "--out", str(out)]) == 2
    assert "no camera estimator" in capsys.readouterr().err
    assert main(["camera", "train", "--data", str(posed_data / "train"), "--test", str(posed_data / "test"),
                 "--out", str(tmp_path / "no-model")]) == 2
    assert "give --size" in capsys.readouterr().err


def test_estimator_of_another_size_is_not_used(trained, tiny_checkpoint, tmp_path, capsys):
    config = CameraEstimatorConfig(32, (10.0, 60.0), (2.5, 3.5), (40.0, 50.0))
    CameraEstimator(config).save(tiny_checkpoint)  # the tiny model takes 16x16 images
    with pytest.warns(UserWarning, match="takes 32x32 images but the model 16x16"):
        assert load_model(tiny_checkpoint).camera_estimator is None
    data = tmp_path / "none"
    assert main(["camera", "train", "--data", str(data), "--test", str(data), "--out", str(tiny_checkpoint),
                 "--size", "32"]) == 2
    assert "does not match the model" in capsys.readouterr().err
