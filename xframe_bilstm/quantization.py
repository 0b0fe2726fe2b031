"""What quantization cost an int8 graph, step by step: :func:`quantization_error`.

An int8 graph (``onnxruntime.quantization.quantize_dynamic`` writes ``DynamicQuantizeLSTM``,
``MatMulInteger`` and ``DequantizeLinear`` nodes) approximates a float graph with the
dequantized weights (:func:`~xframe_bilstm.adapters.onnx.quantized.dequantized_model`). The
report runs:

- ``onnxruntime[cpu,int8]@original``: onnxruntime on the int8 graph as given;
- ``reference[cpu,float64]``: the dequantized float graph on the interpreter in float64;
- ``onnxruntime[cpu,float32]`` and ``torch[cpu,float32]``: the dequantized float graph on
  onnxruntime and as its torch module, each held to the float32 tolerance against float64
  (the graph's own float32 rounding noise, as ``onnx_to_torch`` verifies);
- ``torch[cpu,int8]``: the int8 graph on the torch module that computes onnxruntime's int8
  kernels, against ``@original`` (how closely onnxruntime's arithmetic is reproduced).

The quantization error is ``@original`` against ``reference[cpu,float64]``, per recurrent
node, direction and step (the node's ``Y``), each against its own allowance, the
quantization budget, separate from the float32 tolerance. The default budget of a step is
``QUANTIZATION_SIGMAS`` standard deviations of the rounding error the quantized products
add per step, grown as the square root of the steps processed: a product of ``K`` terms
whose operands ``a`` (the activation, quantized per call to steps of
``range(a ∪ 0) / 255``) and ``b`` (the weights, steps ``scale``) are rounded to within half
a step adds variance ``K (s_a² E[b²] + s_b² E[a²]) / 12``; a step has the input product
(``x``, ``W``) and the recurrent one (``h``, ``R``), measured on the float run, plus the
error the node's input already carries from the int8 nodes before it, ``δx`` measured
between the int8 and float runs, through the input weights (``K E[W²] E[δx²]``).
``quantization_budget`` sets it instead: one number for every step.

numpy only at import; onnx, onnxruntime and torch are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._imports import require

# Standard deviations of one step's quantization rounding error allowed by the default budget.
QUANTIZATION_SIGMAS = 3.0
_FLOAT32_EPSILON = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class StepError:
    """The int8 run's distance from the float64 one at one step of one direction."""

    node: str
    direction: str
    step: int
    error: float
    budget: float

    @property
    def within(self) -> bool:
        return self.error <= self.budget


@dataclass(frozen=True)
class FloatCheck:
    """A float32 run of the dequantized graph against its float64 reference."""

    label: str
    error: float
    tolerance: float

    @property
    def within(self) -> bool:
        return self.error <= self.tolerance


@dataclass
class QuantizationReport:
    """What :func:`quantization_error` found; true when every check passed.

    ``steps`` holds the int8 error per recurrent node, direction and step with its budget;
    ``float_checks`` the float32 runs against float64 with the float32 tolerance;
    ``outputs`` the int8 error of each graph output (for information: outputs after the
    recurrent nodes are not budgeted); ``reproduction`` the torch int8 module's largest
    distance from onnxruntime on the int8 graph.
    """

    steps: list[StepError] = field(default_factory=list)
    float_checks: list[FloatCheck] = field(default_factory=list)
    outputs: dict[str, float] = field(default_factory=dict)
    reproduction: float = 0.0
    budget_source: str = ""

    def __bool__(self) -> bool:
        return all(s.within for s in self.steps) and all(c.within for c in self.float_checks)

    def worst(self) -> dict[tuple[str, str], StepError]:
        """Per (node, direction), the step whose error is the largest share of its budget."""
        found: dict[tuple[str, str], StepError] = {}
        for step in self.steps:
            key = (step.node, step.direction)
            best = found.get(key)
            if best is None or step.error / step.budget > best.error / best.budget:
                found[key] = step
        return found

    def __str__(self) -> str:
        lines = [f"quantization: {'PASSED' if self else 'FAILED'} ({self.budget_source})"]
        for (node, direction), step in self.worst().items():
            verdict = "within" if step.within else "EXCEEDS"
            lines.append(
                f"  {node} {direction}: quantization error {step.error:.3g} {verdict} budget "
                f"{step.budget:.3g} (worst step {step.step}: onnxruntime[cpu,int8]@original vs "
                "reference[cpu,float64])"
            )
        for check in self.float_checks:
            verdict = "within" if check.within else "EXCEEDS"
            lines.append(
                f"  {check.label} vs reference[cpu,float64]: float32 error {check.error:.3g} "
                f"{verdict} tolerance {check.tolerance:.3g}"
            )
        for name, error in self.outputs.items():
            lines.append(f"  output {name!r}: int8 error {error:.3g} (not budgeted)")
        lines.append(
            f"  torch[cpu,int8] reproduces onnxruntime's int8 kernels to {self.reproduction:.3g}"
        )
        return "\n".join(lines)


def quantization_error(
    model_or_path: Any,
    inputs: Sequence[np.ndarray] | None = None,
    *,
    quantization_budget: float | None = None,
    threads: int = 1,
    seed: int = 0,
    batch: int = 2,
    steps: int = 7,
) -> QuantizationReport:
    """How far an int8 graph is from the float graph it approximates, step by step.

    Args:
        model_or_path: the int8 graph: a ModelProto, its bytes or a path.
        inputs: one array per graph input (initializers aside) in graph order; default
            seeded inputs built from the graph's declared inputs (token ids within the
            embedding table they index).
        quantization_budget: the allowance of every step's quantization error; default
            derived from the quantization steps (see the module docstring).
        threads: onnxruntime's intra-op threads for the int8 run; ``DynamicQuantizeLSTM``'s
            result depends on them, and the torch int8 module computes the same count.
        seed, batch, steps: of the seeded inputs.

    Raises:
        UnsupportedFeatureError: the graph has no int8 recurrent node with a ``Y`` output,
            or a node neither onnxruntime nor the interpreter runs.
    """
    from .adapters.onnx import onnx_module
    from .adapters.onnx.example_inputs import seeded_graph_inputs
    from .adapters.onnx.quantized import dequantized_model, fold_constant_quantization
    from .adapters.onnx.quantized_lstm import kernel_threads
    from .adapters.onnx.runtime import load_model
    from .adapters.onnx.verify import RuntimeSession, graph_noise

    int8 = fold_constant_quantization(load_model(model_or_path))
    lstms = _int8_lstms(int8)
    floats = dequantized_model(int8)
    if inputs is None:
        seeded = seeded_graph_inputs(floats, seed=seed, batch=batch, steps=steps)
        names, arrays = seeded.names, seeded.arrays
    else:
        initializers = {i.name for i in floats.graph.initializer}
        names = tuple(i.name for i in floats.graph.input if i.name not in initializers)
        arrays = tuple(np.asarray(a) for a in inputs)
    feeds = dict(zip(names, arrays))
    y_names = [n.output[0] for n in lstms] + [n.input[0] for n in lstms]
    out_names = [o.name for o in int8.graph.output]

    original, exact = _int8_and_float64(int8, floats, feeds, lstms, threads)
    rounded = _interpreter_values(onnx_module(floats), feeds)
    float_runtime = dict(zip(out_names, RuntimeSession(floats).run(feeds)))
    with kernel_threads(threads):
        reproduced = _interpreter_values(onnx_module(int8), feeds)

    report = QuantizationReport()
    tolerance = graph_noise(floats, arrays).tolerance(_FLOAT32_EPSILON)
    for label, values in (
        ("onnxruntime[cpu,float32]", float_runtime),
        ("torch[cpu,float32]", rounded),
    ):
        error = max(_distance(values[n], exact[n]) for n in out_names)
        report.float_checks.append(FloatCheck(label, error, tolerance))
    report.outputs = {n: _distance(original[n], exact[n]) for n in out_names}
    report.reproduction = max(
        _distance(reproduced[n], original[n]) for n in [*out_names, *y_names] if n in reproduced
    )
    report.budget_source = budget_source(quantization_budget)
    for node in lstms:
        report.steps.extend(_node_steps(node, int8, exact, original, quantization_budget))
    return report


def quantization_steps(
    model_or_path: Any,
    feeds: Mapping[str, np.ndarray],
    *,
    quantization_budget: float | None = None,
    threads: int = 1,
) -> list[StepError]:
    """The int8 error and budget per recurrent node, direction and step on ``feeds``, as
    :func:`quantization_error` measures them (``compare()`` judges its int8 pairs by these
    budgets).

    Args:
        model_or_path: the int8 graph: a ModelProto, its bytes or a path.
        feeds: every graph input (initializers aside) by name.
        quantization_budget: one allowance for every step; default the rule of the module
            docstring.
        threads: onnxruntime's intra-op threads for the int8 run.

    Raises:
        UnsupportedFeatureError: the graph has no int8 recurrent node with a ``Y`` output.
    """
    from .adapters.onnx.quantized import dequantized_model, fold_constant_quantization
    from .adapters.onnx.runtime import load_model

    int8 = fold_constant_quantization(load_model(model_or_path))
    lstms = _int8_lstms(int8)
    feeds = {name: np.asarray(value) for name, value in feeds.items()}
    original, exact = _int8_and_float64(int8, dequantized_model(int8), feeds, lstms, threads)
    return [
        step
        for node in lstms
        for step in _node_steps(node, int8, exact, original, quantization_budget)
    ]


def budget_source(quantization_budget: float | None) -> str:
    """Where the budget comes from, in words: as given, or the default rule."""
    if quantization_budget is not None:
        return f"budget {quantization_budget:.3g} per step, as given"
    return (
        f"budget {QUANTIZATION_SIGMAS:g} sigma of the rounding the quantized products add "
        "per step, grown as sqrt(steps processed)"
    )


def _int8_lstms(int8: Any) -> list[Any]:
    """The graph's ``DynamicQuantizeLSTM`` nodes with a ``Y`` output; refused when none."""
    from .errors import UnsupportedFeatureError

    lstms = [n for n in int8.graph.node if n.op_type == "DynamicQuantizeLSTM" and n.output[0]]
    if not lstms:
        raise UnsupportedFeatureError(
            "quantization_error needs a com.microsoft.DynamicQuantizeLSTM node with a Y "
            "output; this graph has none (an int8 graph from "
            "onnxruntime.quantization.quantize_dynamic of a model with LSTM nodes has them)"
        )
    return lstms


def _int8_and_float64(
    int8: Any, floats: Any, feeds: dict[str, np.ndarray], lstms: list[Any], threads: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every value the budget reads: onnxruntime on the int8 graph (with each node's ``Y``
    and input as outputs) and the dequantized graph on the interpreter in float64."""
    torch = require("torch")
    from .adapters.onnx import onnx_module

    y_names = [n.output[0] for n in lstms] + [n.input[0] for n in lstms]
    original = _runtime_values(int8, feeds, y_names, threads)
    exact = _interpreter_values(onnx_module(floats, dtype=torch.float64), feeds)
    return original, exact


def _runtime_values(
    model: Any, feeds: dict[str, np.ndarray], extra: list[str], threads: int
) -> dict[str, np.ndarray]:
    """onnxruntime's outputs on ``model``, with the values ``extra`` added as outputs."""
    onnx = require("onnx")
    ort = require("onnxruntime")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    for name in extra:
        if name not in present:
            copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        copy.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in copy.graph.output]
    return dict(zip(names, (np.asarray(v) for v in session.run(None, feeds))))


def _interpreter_values(module: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every value of the graph on its interpreter module, as numpy."""
    torch = require("torch")
    scope = {}
    for name in module.input_names:
        tensor = torch.from_numpy(np.ascontiguousarray(feeds[name]))
        scope[name] = tensor.to(module.dtype) if tensor.is_floating_point() else tensor
    with torch.no_grad():
        values = module.run_graph(scope)
    return {
        k: v.detach().numpy() if isinstance(v, torch.Tensor) else v
        for k, v in values.items()
        if isinstance(v, (torch.Tensor, np.ndarray))  # sizes are numpy already
    }


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


def _node_steps(
    node: Any,
    int8: Any,
    exact: dict[str, np.ndarray],
    original: dict[str, np.ndarray],
    budget: float | None,
) -> list[StepError]:
    """Per direction and step of one int8 LSTM node: its error and budget."""
    from .adapters.onnx.nodes import graph_constant_values, node_attributes
    from .adapters.onnx.quantized import dequantize_array

    constants = graph_constant_values(int8.graph)
    attributes = node_attributes(node)
    name = node.name or node.output[0]
    y_int8, y_float = original[node.output[0]], exact[node.output[0]]  # (T, dirs, B, H)
    x = exact[node.input[0]]
    directions = (
        ["forward", "backward"]
        if y_float.shape[1] == 2
        else ["backward" if attributes.get("direction") == "reverse" else "forward"]
    )
    found = []
    total = y_float.shape[0]
    for d, direction in enumerate(directions):
        sigma = 0.0
        if budget is None:
            weights = []
            for slot, scale_slot in ((1, 8), (2, 10)):
                q, scale = constants[node.input[slot]][d], constants[node.input[scale_slot]]
                zero_name = node.input[scale_slot + 1] if len(node.input) > scale_slot + 1 else ""
                zero = constants[zero_name] if zero_name else None
                # Per direction (directions,) or per column (directions, 4H), as the spec has.
                scale_d = np.asarray(scale[d] if scale.ndim else scale)
                zero_d = None if zero is None else np.asarray(zero[d] if zero.ndim else zero)
                w = dequantize_array(q, scale_d, zero_d, -1)
                weights.append((w, float(np.max(scale_d))))
            (w, s_w), (r, s_r) = weights
            h = y_float[:, d]
            carried = original[node.input[0]].astype(np.float64) - x  # from earlier int8 nodes
            upstream = w.shape[0] * float(np.mean(w**2)) * float(np.mean(carried**2))
            variance = _product_variance(x, w, s_w) + _product_variance(h, r, s_r) + upstream
            sigma = float(np.sqrt(variance))
        for t in range(total):
            processed = t + 1 if direction == "forward" else total - t
            allowed = (
                budget if budget is not None else QUANTIZATION_SIGMAS * sigma * np.sqrt(processed)
            )
            error = _distance(y_int8[t, d], y_float[t, d])
            found.append(StepError(name, direction, t, error, float(allowed)))
    return found


def _product_variance(a: np.ndarray, b: np.ndarray, b_step: float) -> float:
    """Variance of the rounding error of ``a @ b`` (``a`` (..., K) quantized per call to
    steps of ``range(a ∪ 0) / 255``, ``b`` (K, N) to steps ``b_step``)."""
    k = b.shape[0]
    a_step = (max(float(np.max(a)), 0.0) - min(float(np.min(a)), 0.0)) / 255.0
    return k * (a_step**2 * float(np.mean(b**2)) + b_step**2 * float(np.mean(a**2))) / 12.0
