"""TFLite's dynamic-range quantized variant: what the converter quantized, and its budget.

With ``converter.optimizations = [tf.lite.Optimize.DEFAULT]`` and no representative data,
TensorFlow's converter stores the weights of the matrix products it can (those of at least
1024 elements) as int8 with one scale per output channel; at run time the hybrid kernels
quantize each product's activations to int8 per call and dequantize the result. The run
(``tflite[cpu,float32,dynamic-range-int8]``) is compared with float runs of the original
weights, so what parts them is quantization, not float32 rounding: its pairs are judged
against a quantization budget (:mod:`~xframe_bilstm.quantization_budget`).

The default budget has two parts. The weights' rounding is reproduced exactly: the float64
reference runs the stack with each weight the converter quantized rounded as it rounds it
(symmetric, per output channel, steps ``max|w| / 127``), and the largest distance of its
outputs from the float64 outputs of the original weights is ``d_w``. The activations'
rounding, per call, is random; it enters the same pre-activations as the weights' rounding,
whose per-step variance ``v_w = K s_w² E[a²] / 12`` it adds to by ``v_a = K s_a² E[w²] / 12``
(``s_a = range(a ∪ 0) / 255``, measured on the reference's activations, as
:func:`~xframe_bilstm.quantization.quantization_error` derives it), so its effect on the
outputs is taken as ``d_w`` scaled by ``√(v_a / v_w)``, allowed ``ACTIVATION_MARGIN`` times:
the budget is ``d_w (1 + ACTIVATION_MARGIN √(v_a / v_w))``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..canonical import RecurrentStack
from ..graph import ModelGraph
from ..stack_graph import stack_of

# The kernel path (a name in KERNEL_PATHS) that runs the dynamic-range quantized model.
QUANTIZED = "dynamic-range-int8"
_INT8 = 9  # the TFLite schema's TensorType INT8
# How many times its estimated size the activations' rounding is allowed (see above).
ACTIVATION_MARGIN = 2.0


@dataclasses.dataclass(frozen=True)
class Quantized:
    """What the converter quantized: each op reading an int8 weight, and those weights."""

    ops: tuple[str, ...]  # e.g. "FULLY_CONNECTED (subgraph 2) <- int8 (128, 32) per-channel"
    shapes: tuple[tuple[int, ...], ...]  # the int8 weight tensors' shapes

    def describe(self) -> str:
        """The run's ``quantized`` setting."""
        if not self.ops:
            return (
                "nothing: no weight had the 1024 elements the converter quantizes; the model "
                "ran in float32"
            )
        return "; ".join(self.ops)


def quantized_ops(content: bytes) -> Quantized:
    """The ops of a TFLite flatbuffer (every subgraph, WHILE bodies included) that read an
    int8 weight, with the weight's shape and whether its scale is per channel."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if key.isupper()}
    ops: list[str] = []
    shapes: list[tuple[int, ...]] = []
    for index, subgraph in enumerate(model.subgraphs):
        for operator in subgraph.operators:
            code = model.operatorCodes[operator.opcodeIndex]
            op = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            for tensor_index in operator.inputs:
                if tensor_index < 0:
                    continue
                tensor = subgraph.tensors[tensor_index]
                if tensor.type != _INT8 or tensor.buffer == 0:
                    continue  # not an int8 constant (buffer 0 is the empty one)
                shape = tuple(int(d) for d in tensor.shape)
                scales = tensor.quantization.scale if tensor.quantization is not None else None
                per = "per-channel" if scales is not None and len(scales) > 1 else "per-tensor"
                ops.append(f"{op} (subgraph {index}) <- int8 {shape} {per}")
                shapes.append(shape)
    return Quantized(tuple(ops), tuple(shapes))


# The setting holding a dynamic-range run's default quantization budget.
BUDGET_SETTING = "quantization_budget"


def budget_settings(
    graph: ModelGraph,
    x: Any,
    quantized: Quantized,
    *,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: np.ndarray | None = None,
) -> dict[str, object]:
    """A dynamic-range run's budget setting: for a stack's graph its default budget
    (:func:`dynamic_range_budget`, left out when none applies); for any other graph the
    converter quantized, None (its pairs need ``quantization_budget=``)."""
    stack = stack_of(graph)
    if stack is None:
        return {BUDGET_SETTING: None} if quantized.ops else {}
    budget = dynamic_range_budget(
        stack, np.asarray(x), quantized, initial_states=initial_states, lengths=lengths
    )
    return {} if budget is None else {BUDGET_SETTING: budget}


def dynamic_range_budget(
    stack: RecurrentStack,
    x: np.ndarray,
    quantized: Quantized,
    *,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: np.ndarray | None = None,
) -> float | None:
    """The default budget of a dynamic-range run of ``stack`` on ``x`` (see the module
    docstring); None when the converter quantized nothing (the run is then a float32 run)."""
    from ..reference import run_reference

    if not quantized.ops:
        return None
    given: dict[str, Any] = {"initial_states": initial_states, "lengths": lengths}
    inputs = np.asarray(x, np.float64)
    layers = []
    injected = np.zeros(2)  # (v_w, v_a) summed over the products
    for layer in stack.layers:
        whole = RecurrentStack((_concatenated(layer),), return_sequences=True)
        (halves,) = run_reference(whole, inputs, lengths=lengths)
        rounded = []
        for d, weights in enumerate(layer.weights):
            h = halves[..., d * layer.units : (d + 1) * layer.units]
            kernel, by_kernel = _rounded(inputs, weights.kernel, quantized)
            recurrent, by_recurrent = _rounded(h, weights.recurrent_kernel, quantized)
            injected += by_kernel + by_recurrent
            rounded.append(dataclasses.replace(weights, kernel=kernel, recurrent_kernel=recurrent))
        layers.append(dataclasses.replace(layer, weights=tuple(rounded)))
        one = RecurrentStack((layer,), return_sequences=True)
        (inputs,) = run_reference(one, inputs, lengths=lengths)
    exact = run_reference(stack, x, **given)
    moved = run_reference(dataclasses.replace(stack, layers=tuple(layers)), x, **given)
    d_w = max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(exact, moved))
    v_w, v_a = (float(v) for v in injected)
    if v_w == 0.0:  # no weight recognised as one the converter quantized
        return None
    return d_w * (1.0 + ACTIVATION_MARGIN * float(np.sqrt(v_a / v_w)))


def _concatenated(layer: Any) -> Any:
    """``layer`` with its directions side by side, whatever it merges them into."""
    if layer.direction != "bidirectional" or layer.merge_mode == "concat":
        return layer
    return dataclasses.replace(layer, merge_mode="concat")


def _rounded(a: np.ndarray, weight: np.ndarray, quantized: Quantized) -> tuple[Any, np.ndarray]:
    """``weight`` as the converter rounds it, and the variances ``(v_w, v_a)`` the product
    ``a @ weight`` then adds per step; unchanged and zeros where the converter kept it float
    (no int8 tensor holds its input width and is no larger than it)."""
    weight = np.asarray(weight, np.float64)
    width = weight.shape[0]
    if not any(width in shape and np.prod(shape) <= weight.size for shape in quantized.shapes):
        return weight, np.zeros(2)
    steps = np.max(np.abs(weight), axis=0) / 127.0
    safe = np.where(steps > 0, steps, 1.0)
    a_step = (max(float(np.max(a)), 0.0) - min(float(np.min(a)), 0.0)) / 255.0
    v_w = width * float(np.mean(steps**2)) * float(np.mean(a**2)) / 12.0
    v_a = width * a_step**2 * float(np.mean(weight**2)) / 12.0
    return np.round(weight / safe) * safe, np.array([v_w, v_a])


__all__ = ["ACTIVATION_MARGIN", "QUANTIZED", "Quantized", "dynamic_range_budget", "quantized_ops"]
