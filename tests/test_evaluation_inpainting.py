"""Inpainting evaluation: the hole lies over the object, the baselines and region scores are what they claim."""

import numpy as np
import pytest

from rdiff.data.clevr1 import generate_clevr1
from rdiff.evaluation.inpainting import biharmonic_baseline, evaluate_inpainting, square_hole
from rdiff.sampling import InpaintSettings


def test_square_hole_sits_on_the_object_and_inside_the_image():
    mask = np.zeros((32, 32), np.uint8)
    mask[2:8, 24:30] = 255  # object near the top-right corner
    hole = square_hole(mask, 32)
    assert hole.sum() == 11 * 11
    rows, cols = np.nonzero(hole)
    assert rows.min() == 0 and cols.max() == 31  # clipped to the image, not cut off
    assert hole[4, 27]  # covers the object
    centred = square_hole(None, 32)
    assert centred[16, 16] and centred.sum() == 121


def test_biharmonic_fill_restores_a_smooth_image():
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    image = np.stack([xx, yy, 0.5 * np.ones_like(xx)], -1).astype(np.float32)
    hole = square_hole(None, 32)
    filled = biharmonic_baseline(image, hole)
    assert np.abs(filled - image)[hole].max() < 0.02
    np.testing.assert_allclose(filled[~hole], image[~hole], atol=1e-6)


@pytest.mark.parametrize("harmonize", [None, 0])
def test_evaluate_inpainting_reports_every_region(tmp_path, tiny_model, harmonize):
    generate_clevr1(tmp_path, scenes=4, views=1, size=16, seed=0, test_fraction=0.5, progress=False,
                    supersample=1, shadow_samples=1)
    settings = InpaintSettings(steps=3, harmonize_t_r=harmonize)
    result = evaluate_inpainting(tiny_model, tmp_path / "test", settings, progress=False)
    assert result.scenes == 2 and len(result.per_scene) == 2
    for key in ("hole_image_psnr", "hole_render_psnr", "hole_biharmonic_psnr", "visible_render_psnr"):
        assert 0 < result.metrics[key] < 60
    assert result.settings["harmonize_t_r"] == harmonize
    assert "biharmonic" in result.table()
