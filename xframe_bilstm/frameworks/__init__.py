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


def auto_frameworks() -> list[str]:
    """What ``frameworks="auto"`` runs besides the reference: the installed frameworks, less
    those that run only when named (``Framework.on_request``)."""
    return [
        name
        for name, framework in FRAMEWORKS.items()
        if name != "reference" and framework.available() and not framework.on_request
    ]


__all__ = [
    "FRAMEWORKS",
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
    "auto_frameworks",
]
