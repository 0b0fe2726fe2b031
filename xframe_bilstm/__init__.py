"""xframe_bilstm: prove (or disprove) that a recurrent model means the same thing in Keras,
PyTorch and ONNX.

Importing this package imports numpy only; each framework is imported on first use.
"""

from __future__ import annotations

from .activations import ACTIVATIONS
from .canonical import DirectionWeights, RecurrentLayer, RecurrentStack, output_names
from .comparison import ArrayComparison, Comparison, compare_outputs, derived_tolerance
from .converters import keras_to_torch, torch_to_keras
from .errors import (
    FrameworkUnavailableError,
    ToleranceExceededError,
    UnsupportedFeatureError,
    WeightShapeError,
    XFrameError,
)
from .gates import reorder_gates
from .reference import run_reference

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "ArrayComparison",
    "Comparison",
    "DirectionWeights",
    "FrameworkUnavailableError",
    "RecurrentLayer",
    "RecurrentStack",
    "ToleranceExceededError",
    "UnsupportedFeatureError",
    "WeightShapeError",
    "XFrameError",
    "compare_outputs",
    "derived_tolerance",
    "keras_to_torch",
    "output_names",
    "reorder_gates",
    "run_reference",
    "torch_to_keras",
]
