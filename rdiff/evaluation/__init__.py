"""Evaluation: novel views from single-view reconstructions, and 3D-aware inpainting, against trivial baselines."""

from rdiff.evaluation.novel_view import EvalResult, azimuth_difference, evaluate, save_result, score_view

__all__ = ["EvalResult", "azimuth_difference", "evaluate", "save_result", "score_view"]
