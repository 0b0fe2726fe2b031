"""What checking a conversion against an ONNX graph needs: the graph on onnxruntime, and its
rounding noise.

onnxruntime is the graph's own computation, so a conversion is checked against it, never
against our reading of the graph. Where onnxruntime cannot run a graph (it has no float64
``LSTM``/``GRU``/``RNN`` kernels, for one) the check cannot be made, and
:class:`RuntimeSession` says so rather than skipping it. onnxruntime, onnx and torch are
imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..._imports import require
from ...comparison import Noise
from ...errors import UnsupportedFeatureError
from .interpreter import onnx_module
from .runtime import load_model
from .vocabulary import CELL_BY_OP

_NO_CHECK = (
    "verify=True checks the conversion against onnxruntime running the graph; pass "
    "verify=False to convert without that check"
)


class RuntimeSession:
    """One onnxruntime CPU session of a graph, whose failures name the graph's problem.

    Raises:
        FrameworkUnavailableError: onnxruntime is not installed.
        UnsupportedFeatureError: onnxruntime cannot load the graph.
    """

    def __init__(self, model_or_path: Any) -> None:
        ort = require("onnxruntime")
        self.proto = load_model(model_or_path)
        options = ort.SessionOptions()
        options.log_severity_level = 4  # fatal only: a failure is raised with its message
        if any(node.op_type == "DynamicQuantizeLSTM" for node in self.proto.graph.node):
            # Its int8 result depends on the thread count (quantized_lstm.recurrent_groups).
            options.intra_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                self.proto.SerializeToString(),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as error:  # onnxruntime raises its own types; all mean "cannot"
            raise UnsupportedFeatureError(self._cannot("load", error)) from error

    def run(self, feeds: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """The graph's outputs in graph order on ``feeds``."""
        try:
            outputs = self._session.run(None, dict(feeds))
        except Exception as error:  # as above
            raise UnsupportedFeatureError(self._cannot("run", error)) from error
        return tuple(np.asarray(output) for output in outputs)

    def _cannot(self, what: str, error: Exception) -> str:
        ort = require("onnxruntime")
        message = f"onnxruntime {ort.__version__} cannot {what} this graph ({error}). "
        if _has_float64(self.proto):
            message += (
                "The graph holds float64 tensors, and onnxruntime has no float64 LSTM, GRU "
                "or RNN kernels; a float32 export of the model runs. "
            )
        if _has_batchwise_node(self.proto):
            message += (
                "The graph has recurrent nodes with layout=1 (batch-major), for which "
                "onnxruntime's CPU kernels are not built; the same graph with layout=0 runs. "
            )
        return message + _NO_CHECK


def _has_batchwise_node(proto: Any) -> bool:
    return any(
        node.op_type in CELL_BY_OP and any(a.name == "layout" and a.i == 1 for a in node.attribute)
        for node in proto.graph.node
    )


def _has_float64(proto: Any) -> bool:
    onnx = require("onnx")
    double = onnx.TensorProto.DOUBLE
    declared = [v.type.tensor_type.elem_type for v in proto.graph.input]
    stored = [i.data_type for i in proto.graph.initializer]
    return double in declared + stored


def graph_noise(model_or_path: Any, inputs: tuple[np.ndarray, ...]) -> Noise:
    """How far float32 rounding moves this graph's outputs on these inputs.

    The graph runs on :func:`~xframe_bilstm.adapters.onnx.onnx_module` in float64 and in
    float32, as :func:`~xframe_bilstm.comparison.measure_noise` runs the reference: the
    float32 run's largest distance from the float64 one, and the largest float64 output (at
    least 1) as the scale. ``Noise.tolerance`` turns it into a bound.

    One input's drift is a lucky draw on a trained model (a voice-activity model's float32
    state drifted 9e-8 from zero states and 5e-7 one unit in the last place away, while
    onnxruntime drifted 1.2e-6), so the drift is the largest over the inputs and their float
    arrays nudged one unit in the last place down and up.
    """
    torch = require("torch")
    proto = load_model(model_or_path)
    exact_module = onnx_module(proto, dtype=torch.float64)
    rounded_module = onnx_module(proto, dtype=torch.float32)
    drift, scale = 0.0, 0.0
    for nudged in (inputs, _nudged(inputs, -np.inf), _nudged(inputs, np.inf)):
        exact = run_torch_graph_module(exact_module, nudged)
        rounded = run_torch_graph_module(rounded_module, nudged)
        distances = (float(np.max(np.abs(r - e), initial=0.0)) for r, e in zip(rounded, exact))
        drift = max(drift, *distances)
        scale = max(scale, *(float(np.max(np.abs(e), initial=0.0)) for e in exact))
    return Noise(drift, max(scale, 1.0))


def _nudged(inputs: tuple[np.ndarray, ...], toward: float) -> tuple[np.ndarray, ...]:
    """The float arrays one unit in the last place toward ``toward``; the others as given."""
    return tuple(
        np.nextafter(a, np.asarray(toward, a.dtype)) if a.dtype.kind == "f" else a for a in inputs
    )


def run_torch_graph_module(module: Any, inputs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Run a module that takes a graph's inputs in graph order (such as
    :func:`~xframe_bilstm.onnx_converters.onnx_to_torch`'s); its outputs as numpy arrays."""
    torch = require("torch")
    tensors = [torch.from_numpy(np.ascontiguousarray(array)) for array in inputs]
    with torch.no_grad():
        outputs = module(*tensors)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return tuple(output.detach().cpu().numpy() for output in outputs)
