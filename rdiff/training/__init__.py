"""Training: config loading, the loop (single process or DDP), EMA and resumable checkpoints."""

from rdiff.training.config_file import load_train_config
from rdiff.training.loop import train

__all__ = ["load_train_config", "train"]
