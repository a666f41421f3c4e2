"""`rdiff eval` reproduces: regenerated data and a re-run give the same numbers to the last digit."""

from __future__ import annotations

import torch

from rdiff.data.clevr1 import generate_clevr1
from rdiff.evaluation import evaluate


def test_eval_reproduces_exactly_on_regenerated_data(tmp_path, tiny_model):
    kw = dict(scenes=10, views=3, size=16, seed=5, test_fraction=0.3, progress=False, supersample=1,
              shadow_samples=2)
    generate_clevr1(tmp_path / "a", **kw)
    generate_clevr1(tmp_path / "b", **kw)  # the model card's data command, run again
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        first = evaluate(tiny_model, tmp_path / "a" / "test", (0, 5), steps=2, progress=False)
        torch.set_num_threads(2)  # another thread count: the card's numbers must not depend on it
        second = evaluate(tiny_model, tmp_path / "b" / "test", (0, 5), steps=2, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert first.scenes == second.scenes == 3
    assert first.baselines == second.baselines  # the regenerated data is the same, exactly
    # every scene's every metric: to far below the cards' last digit (float sums may group by thread count)
    assert len(first.per_scene) == len(second.per_scene) == 6
    for a, b in zip(first.per_scene, second.per_scene):
        assert a.keys() == b.keys() and a["scene"] == b["scene"]
        for k, v in a.items():
            assert v == b[k] if isinstance(v, str) else abs(v - b[k]) < 1e-6, (a["scene"], k)
    other_seed = evaluate(tiny_model, tmp_path / "a" / "test", (5,), steps=2, seed=1, progress=False)
    assert other_seed.metrics["5"]["psnr"] != first.metrics["5"]["psnr"]  # the seed is what changes the noise
