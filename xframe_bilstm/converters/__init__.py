"""Public converters between Keras 3 and PyTorch, each checked by running both sides.

Both go through the canonical form: Keras layer → :class:`RecurrentStack` → torch module,
and back. With ``verify=True`` (the default) the source and the result run on one small
seeded input, and :class:`~xframe_bilstm.errors.ToleranceExceededError` is raised with the
numbers when they differ by more than float rounding explains
(:func:`~xframe_bilstm.comparison.check_port`). Whole models go through the model graph
(:mod:`xframe_bilstm.graph`) both ways.

One module per job: :mod:`.to_torch` (Keras → torch), :mod:`.to_keras` (torch → Keras),
:mod:`.whole_module` (a torch module made of children, through its graph) and
:mod:`.verification` (the seeded input both check on).
"""

from __future__ import annotations

from .to_keras import torch_to_keras
from .to_torch import keras_to_torch
from .verification import VERIFY_BATCH, VERIFY_STEPS, verification_input

__all__ = ["VERIFY_BATCH", "VERIFY_STEPS", "keras_to_torch", "torch_to_keras", "verification_input"]
