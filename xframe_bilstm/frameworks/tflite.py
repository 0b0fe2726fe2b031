"""TensorFlow Lite as a framework: the Keras model converted by TensorFlow's converter and
run by the LiteRT interpreter (``ai_edge_litert``), the runtime phones and boards run.

The model is the one the ``keras`` column runs (:mod:`~xframe_bilstm.frameworks.keras_built`),
float32. It is converted with ``tf.lite.TFLiteConverter.from_keras_model``; where that
refuses the dynamic batch and time axes (Keras 3's recurrent layers keep a ``TensorList``
whose shape the converter wants static), from a concrete function traced at the run's fixed
input shapes, and the settings say which. Each run records the ops the interpreter holds
and whether the converter fused the recurrence into TFLite's own kernel
(``UNIDIRECTIONAL_SEQUENCE_LSTM``, ``BIDIRECTIONAL_SEQUENCE_LSTM``, ...) or kept it as a
``WHILE`` loop of builtin ops. What the converter cannot convert is refused with its first
error line.

The kernel path ``dynamic-range-int8`` (``tflite[cpu,float32,dynamic-range-int8]``, run when
asked for with ``paths=``) converts with ``optimizations = [tf.lite.Optimize.DEFAULT]``: the
dynamic-range quantized model (:mod:`~xframe_bilstm.frameworks.tflite_quantized`), whose
settings say which ops read int8 weights and the quantization budget its pairs are judged
against.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..errors import UnsupportedFeatureError
from ..graph import ModelGraph
from ..reference import Reading
from ..stack_graph import as_graph
from .base import Framework, RunSpec
from .keras_built import built_model, model_inputs
from .tflite_quantized import BUDGET_SETTING, QUANTIZED, budget_settings, quantized_ops

# TFLite's own recurrent kernels, which the converter may fuse a recurrent layer into.
FUSED_OPS = (
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "BIDIRECTIONAL_SEQUENCE_LSTM",
    "UNIDIRECTIONAL_SEQUENCE_RNN",
    "BIDIRECTIONAL_SEQUENCE_RNN",
)


class TfliteFramework(Framework):
    """The rebuilt Keras model, converted to TFLite and run by LiteRT's interpreter."""

    name = "tflite"
    module = "ai_edge_litert"
    on_request = True

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        modules = ("ai_edge_litert", "tensorflow", "keras")
        return all(importlib.util.find_spec(m) is not None for m in modules)

    def dtypes(self, device: str) -> list[str]:
        # The converter's float model is float32; float64 has no TFLite kernels.
        return ["float32"]

    def paths(self, device: str) -> list[str]:
        return [QUANTIZED]

    def versions(self) -> dict[str, str]:
        import importlib.metadata

        return {
            "tensorflow": importlib.metadata.version("tensorflow"),
            "ai-edge-litert": importlib.metadata.version("ai-edge-litert"),
        }

    def supports(self, reading: Reading) -> str | None:
        from ..adapters.keras import graph_refusal

        graph = as_graph(reading)
        rebuilt = graph_refusal(graph)
        if rebuilt:
            return rebuilt
        # Seen with TensorFlow 2.21: the converter fails on the transposes a channels_first
        # convolution adds ("'tf.Transpose' op x should be of the same rank with y").
        channels_first = [
            f"layer {r.name!r} ({r.class_name}): TensorFlow's TFLite converter cannot convert "
            "a channels_first convolution (its tf.Transpose ranks differ); channels_last "
            "converts"
            for r in graph.layers
            if r.options.get("data_format") == "channels_first"
        ]
        return f"{graph.source}: " + "; ".join(channels_first) if channels_first else None

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        require("tensorflow")
        graph = as_graph(stack)
        model = built_model(
            graph,
            "float32",
            with_states=initial_states is not None,
            with_lengths=lengths is not None,
        )
        inputs = model_inputs(graph, x, "float32", initial_states, lengths)
        quantize = spec.path == QUANTIZED
        content, how = convert(model, inputs, quantize=quantize)
        outputs, ops = run_tflite(content, inputs)
        fused = [op for op in ops if op in FUSED_OPS]
        extra = _quantized_settings(graph, x, content, initial_states, lengths) if quantize else {}
        hybrid = "int8" in str(extra.get("quantized", ""))
        return outputs, {
            "converter": how,
            "ops": ", ".join(ops),
            "recurrence": f"fused into {', '.join(fused)}"
            if fused
            else ("WHILE loop of builtin ops" if "WHILE" in ops else "unrolled builtin ops"),
            "kernel": "TFLite hybrid int8 kernels for the int8 weights, builtin float kernels "
            "elsewhere"
            if hybrid
            else "TFLite builtin kernels (XNNPACK where it delegates)",
            "interpreter": "ai_edge_litert.interpreter.Interpreter",
            **extra,
        }


def _quantized_settings(
    graph: ModelGraph,
    x: Any,
    content: bytes,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> dict[str, object]:
    """What a dynamic-range run says: what was quantized, and its default budget (a
    recurrent stack's; a whole model's pairs need ``quantization_budget=``)."""
    quantized = quantized_ops(content)
    return {
        "quantization": "dynamic range (Optimize.DEFAULT): int8 weights with per-channel "
        "scales, activations quantized per call by the hybrid kernels",
        "quantized": quantized.describe(),
        **budget_settings(graph, x, quantized, initial_states=initial_states, lengths=lengths),
    }


def convert(
    model: Any, inputs: Sequence[np.ndarray], *, quantize: bool = False
) -> tuple[bytes, str]:
    """The TFLite flatbuffer of ``model`` and how it was converted; ``quantize``: the
    dynamic-range quantized model (``optimizations = [tf.lite.Optimize.DEFAULT]``)."""
    tf = require("tensorflow")
    optimizations = [tf.lite.Optimize.DEFAULT] if quantize else []
    quantized = ", dynamic-range quantized (Optimize.DEFAULT)" if quantize else ""
    recurrent = _has_recurrent_layer(model)
    dynamic = _REFUSED_DYNAMIC.get("recurrent") if recurrent else None
    if dynamic is None:
        try:
            # It exports a SavedModel first and prints where: not the user's output.
            with contextlib.redirect_stdout(io.StringIO()):
                converter = tf.lite.TFLiteConverter.from_keras_model(model)
                converter.optimizations = optimizations
                content = _quiet(converter.convert)
            return content, f"TFLiteConverter.from_keras_model (dynamic shapes){quantized}"
        except Exception as error:  # dynamic shapes refused: convert at the run's shapes
            dynamic = first_error_line(error)
            if recurrent:  # Keras 3's recurrent layers, whatever the model: ask once
                _REFUSED_DYNAMIC["recurrent"] = dynamic
    specs = [tf.TensorSpec(a.shape, tf.as_dtype(a.dtype)) for a in inputs]

    def call(*arrays: Any) -> Any:
        return model(list(arrays) if len(arrays) > 1 else arrays[0], training=False)

    concrete = tf.function(call).get_concrete_function(*specs)
    # Without the model as trackable object the converter freezes the weights into
    # constants; with it, it keeps resource variables that the WHILE body cannot read.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.optimizations = optimizations
    try:
        content = _quiet(converter.convert)
    except Exception as error:
        raise UnsupportedFeatureError(
            f"tflite: TensorFlow's converter cannot convert {model.name!r}: "
            f"{first_error_line(error)}"
        ) from error
    shapes = ", ".join(str(tuple(a.shape)) for a in inputs)
    how = (
        f"TFLiteConverter.from_concrete_functions at fixed shapes {shapes} "
        f"(from_keras_model refused dynamic shapes: {dynamic}){quantized}"
    )
    return content, how


# Why from_keras_model refused a model with Keras 3 recurrent layers, once per process:
# their TensorList needs a static shape, so every such model is refused alike (and trying
# costs a SavedModel export).
_REFUSED_DYNAMIC: dict[str, str] = {}


def _has_recurrent_layer(model: Any) -> bool:
    keras = require("keras")
    kinds = (keras.layers.RNN, keras.layers.Bidirectional)
    return any(isinstance(layer, kinds) for layer in getattr(model, "layers", []))


def run_tflite(
    content: bytes, inputs: Sequence[np.ndarray]
) -> tuple[tuple[np.ndarray, ...], list[str]]:
    """Run a flatbuffer on ``inputs`` (in the model's input order) with LiteRT's
    interpreter; float64 outputs in the model's output order, and the ops it holds."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    details = interpreter.get_input_details()  # in the converted function's argument order
    for detail, array in zip(details, inputs, strict=True):
        if tuple(detail["shape"]) != array.shape:
            interpreter.resize_tensor_input(detail["index"], list(array.shape))
    interpreter.allocate_tensors()
    for detail, array in zip(details, inputs, strict=True):
        interpreter.set_tensor(detail["index"], array.astype(detail["dtype"]))
    interpreter.invoke()
    outputs = tuple(
        np.asarray(interpreter.get_tensor(detail["index"]), np.float64)
        for detail in sorted(interpreter.get_output_details(), key=_output_position)
    )
    ops = sorted({op["op_name"] for op in interpreter._get_ops_details()})
    return outputs, ops


def _output_position(detail: dict[str, Any]) -> tuple[int, str]:
    """``Identity``, ``Identity_1``, ... (or ``…:0``, ``…:1``) in the function's output order."""
    name = str(detail["name"])
    digits = re.split(r"[_:]", name)[-1]
    return (int(digits) if digits.isdigit() else 0, name)


def first_error_line(error: BaseException) -> str:
    """The converter's first error line, without MLIR's location prefix."""
    lines = [line.strip() for line in str(error).splitlines() if "error:" in line]
    line = lines[0] if lines else str(error).strip().splitlines()[0]
    return line.rpartition("error: ")[2] if "error: " in line else line


def _quiet(convert: Any) -> bytes:
    """Convert with TensorFlow's converter, its C++ log lines off unless asked for."""
    saved = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return bytes(convert())
    finally:
        if saved is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)


__all__ = [
    "BUDGET_SETTING",
    "FUSED_OPS",
    "TfliteFramework",
    "convert",
    "first_error_line",
    "run_tflite",
]
