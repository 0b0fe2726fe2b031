"""The frameworks a comparison can run a canonical stack on, one module per framework.

Rules, as for the adapters: a framework is imported only inside the methods of its own
class; ``available()`` looks for it without importing it; every numerics setting a run
changes (TF32, kernel choice) is applied for that run only, restored afterwards and
returned, so reports can say what ran.
"""

from __future__ import annotations

from .base import Framework, RunSpec
from .keras import KerasFramework
from .keras_backends import KerasJaxFramework, KerasTorchFramework
from .keras_onnx import KerasOnnxFramework
from .onnxruntime import OnnxruntimeFramework
from .reference import ReferenceFramework
from .tflite import TfliteFramework
from .torch import TorchFramework
from .torch_onnx import TorchOnnxDynamoFramework, TorchOnnxFramework

# In report order: the native frameworks, then ONNX runs (our export, then each exporter's).
FRAMEWORKS: dict[str, type[Framework]] = {
    framework.name: framework
    for framework in (
        ReferenceFramework,
        TorchFramework,
        KerasFramework,
        OnnxruntimeFramework,
        TorchOnnxFramework,
        TorchOnnxDynamoFramework,
        KerasOnnxFramework,
        # The runtimes people deploy to: Keras on its other backends, TFLite (LiteRT).
        KerasJaxFramework,
        KerasTorchFramework,
        TfliteFramework,
    )
}

# The pip extra of each framework that "auto" leaves out, naming it, when not installed.
OPTIONAL_EXTRAS = {"keras-jax": "keras-jax", "keras-torch": "keras-torch", "tflite": "tflite"}

__all__ = [
    "FRAMEWORKS",
    "OPTIONAL_EXTRAS",
    "Framework",
    "KerasFramework",
    "KerasJaxFramework",
    "KerasOnnxFramework",
    "KerasTorchFramework",
    "OnnxruntimeFramework",
    "ReferenceFramework",
    "RunSpec",
    "TfliteFramework",
    "TorchFramework",
    "TorchOnnxDynamoFramework",
    "TorchOnnxFramework",
]
