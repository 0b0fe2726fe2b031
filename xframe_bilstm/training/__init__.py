"""Training parity: optimizer steps compared between Keras and PyTorch.

- :mod:`.optimizers`: SGD (momentum, Nesterov), Adam and AdamW as float64 update rules
  with each framework's conventions, and the PyTorch arguments that take Keras's step.
- :mod:`.parity`: :func:`optimizer_parity`, k steps in both frameworks against those rules.
- :mod:`.weights`: trained weights under canonical names beside the native ones.
- :mod:`.report`: :class:`TrainingReport`.

Importing this package imports numpy only; Keras and PyTorch are imported when run.
"""

from __future__ import annotations

from .optimizers import UpdateRule, apply_rule, keras_rule, mapped_torch_arguments, torch_rule
from .parity import optimizer_parity
from .report import ConventionEffect, TrainingReport, WeightStep

__all__ = [
    "ConventionEffect",
    "TrainingReport",
    "UpdateRule",
    "WeightStep",
    "apply_rule",
    "keras_rule",
    "mapped_torch_arguments",
    "optimizer_parity",
    "torch_rule",
]
