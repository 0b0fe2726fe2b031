"""xframe_bilstm: prove (or disprove) that a recurrent model means the same thing in Keras,
PyTorch and ONNX.

Importing this package imports numpy only; each framework is imported on first use.
"""

from __future__ import annotations

from .activations import ACTIVATIONS
from .canonical import DirectionWeights, RecurrentLayer, RecurrentStack, output_names
from .comparison import ArrayComparison, Comparison, compare_outputs, derived_tolerance
from .converters import keras_to_torch, torch_to_keras
from .diagnosis import CODES, Diagnosis, diagnose
from .errors import (
    FrameworkUnavailableError,
    ToleranceExceededError,
    UnsupportedFeatureError,
    WeightShapeError,
    XFrameError,
)
from .gates import reorder_gates
from .lint import Trap, lint
from .onnx_converters import onnx_to_canonical, onnx_to_keras, onnx_to_torch, to_onnx
from .reference import run_reference
from .report import PairReport, Report, RunRecord
from .runner import compare

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "CODES",
    "ArrayComparison",
    "Comparison",
    "Diagnosis",
    "DirectionWeights",
    "FrameworkUnavailableError",
    "PairReport",
    "RecurrentLayer",
    "RecurrentStack",
    "Report",
    "RunRecord",
    "ToleranceExceededError",
    "Trap",
    "UnsupportedFeatureError",
    "WeightShapeError",
    "XFrameError",
    "compare",
    "compare_outputs",
    "derived_tolerance",
    "diagnose",
    "keras_to_torch",
    "lint",
    "onnx_to_canonical",
    "onnx_to_keras",
    "onnx_to_torch",
    "output_names",
    "reorder_gates",
    "run_reference",
    "to_onnx",
    "torch_to_keras",
]
