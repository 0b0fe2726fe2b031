"""Random small whole Keras models port exactly to torch and ONNX, or are refused by name.

A model is a chain on a (T, F) sequence of the layers whole-model ports support: Conv1D
(any padding and stride), Dense, BatchNormalization, LayerNormalization,
GroupNormalization, pooling, Activation, LSTM/GRU/SimpleRNN and Bidirectional, Dropout and
Permute, with shapes kept valid; then a last recurrent layer, a global pooling or nothing,
and a Dense. Each is built as a real Keras model with seeded weights. ``keras_to_torch``
of it must match the model's own call within the tolerance derived for that model on that
input, and so must ``to_onnx`` of it on onnxruntime, and ``compare()`` of that graph read
back whole must pass; what is refused must raise
:class:`~xframe_bilstm.errors.UnsupportedFeatureError` naming one of its layers.

Profiles: see ``conftest.py``; the ``ci`` one runs a few derandomized models, ``long`` a
hundred random ones (``FUZZ_GRAPH_EXAMPLES`` sets another count).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import PROFILE, PROFILE_NAME

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import compare, keras_to_torch, to_onnx  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402

pytestmark = [
    pytest.mark.keras,
    pytest.mark.torch,
    pytest.mark.onnx,
    pytest.mark.filterwarnings("ignore"),
]
L = keras.layers
# Each model takes seconds (Keras build, port, export): a handful in CI.
EXAMPLES = int(os.environ.get("FUZZ_GRAPH_EXAMPLES", 6 if PROFILE_NAME == "ci" else 100))
RECURRENT = ["LSTM", "GRU", "SimpleRNN"]
KINDS = ["Conv1D", "Dense", "BatchNormalization", "LayerNormalization", "Pooling", "Activation"]
KINDS += ["GroupNormalization", "Recurrent", "Dropout", "Permute"]
ACTIVATIONS = ["relu", "tanh", "sigmoid", "elu", "softplus", "swish", "gelu", "linear"]


@st.composite
def layer_chains(draw: st.DrawFn) -> tuple[tuple[int, int], list[tuple[str, dict]]]:
    """The input's (steps, features), and a chain of (Keras class, options) with valid shapes."""
    steps, features = draw(st.integers(4, 9)), draw(st.integers(1, 4))
    shape = (steps, features)
    chain: list[tuple[str, dict]] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(KINDS))
        units = draw(st.integers(1, 5))
        if kind == "Conv1D":
            padding = draw(st.sampled_from(["valid", "same", "causal"]))
            size, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2))
            if padding == "valid" and steps < size:
                continue
            chain.append(
                (
                    kind,
                    {
                        "filters": units,
                        "kernel_size": size,
                        "padding": padding,
                        "strides": stride,
                        "activation": draw(st.sampled_from(ACTIVATIONS)),
                    },
                )
            )
            steps = (steps - size) // stride + 1 if padding == "valid" else -(-steps // stride)
            features = units
        elif kind == "Dense":
            chain.append((kind, {"units": units, "activation": draw(st.sampled_from(ACTIVATIONS))}))
            features = units
        elif kind == "Pooling":
            op = draw(st.sampled_from(["MaxPooling1D", "AveragePooling1D"]))
            padding = draw(st.sampled_from(["valid", "same"]))
            if padding == "valid" and steps < 2:
                continue
            chain.append((op, {"pool_size": 2, "padding": padding}))
            steps = steps // 2 if padding == "valid" else -(-steps // 2)
        elif kind == "LayerNormalization":
            # Over one feature x - mean(x) is Keras's rounding noise over sqrt(epsilon): a
            # degenerate layer whose output no tolerance derived from the data can bound.
            if features > 1:
                chain.append((kind, {}))
        elif kind == "GroupNormalization":
            groups = draw(st.sampled_from([g for g in range(1, features + 1) if features % g == 0]))
            if features // groups * steps > 1:  # one value per group: degenerate, as above
                chain.append((kind, {"groups": groups}))
        elif kind == "Activation":
            chain.append((kind, {"activation": draw(st.sampled_from(ACTIVATIONS))}))
        elif kind == "Recurrent":
            cell = draw(st.sampled_from(RECURRENT))
            options = {"cell": cell, "units": units, "return_sequences": True}
            if draw(st.booleans()):
                options["merge_mode"] = draw(st.sampled_from(["concat", "sum", "ave", "mul"]))
            chain.append(("Recurrent", options))
            features = units * (2 if options.get("merge_mode") == "concat" else 1)
        elif kind == "Permute":
            chain.append((kind, {"dims": (2, 1)}))
            steps, features = features, steps
        elif kind == "Dropout":
            chain.append((kind, {"rate": 0.4}))
        else:
            chain.append((kind, {}))
    end = draw(st.sampled_from(["Recurrent", "GlobalAveragePooling1D", "GlobalMaxPooling1D", ""]))
    if end == "Recurrent":
        chain.append(("Recurrent", {"cell": draw(st.sampled_from(RECURRENT)), "units": 3}))
    elif end:
        chain.append((end, {}))
    chain.append(("Dense", {"units": 2, "activation": "linear"}))
    return shape, chain


def _layer(name: str, options: dict, index: int) -> Any:
    options = dict(options)
    label = f"l{index}_{name.lower()}"
    if name != "Recurrent":
        return getattr(L, name)(name=label, **options)
    cell = getattr(L, options.pop("cell"))
    merge_mode = options.pop("merge_mode", None)
    if merge_mode is None:
        return cell(name=label, **options)
    return L.Bidirectional(cell(**options), merge_mode=merge_mode, name=label)


def _model(shape: tuple[int, int], chain: list[tuple[str, dict]], seed: int) -> Any:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape, name="x")
    y = inputs
    for index, (name, options) in enumerate(chain):
        y = _layer(name, options, index)(y)
    model = keras.Model(inputs, y, name="fuzzed")
    rng = np.random.default_rng(seed)
    weights = []
    for layer_weights in model.get_weights():
        drawn = rng.standard_normal(layer_weights.shape) * 0.7
        weights.append(drawn.astype(layer_weights.dtype))
    model.set_weights(weights)
    for layer in model.layers:  # a positive moving variance
        if isinstance(layer, L.BatchNormalization):
            values = layer.get_weights()
            values[-1] = np.abs(values[-1]) + 0.2
            layer.set_weights(values)
    return model


def _refused_by_name(error: UnsupportedFeatureError, model: Any) -> bool:
    return any(repr(layer.name) in str(error) or layer.name in str(error) for layer in model.layers)


@settings(PROFILE, max_examples=EXAMPLES)
@given(case=layer_chains(), seed=st.integers(0, 2**16))
def test_a_random_model_ports_exactly_or_is_refused_by_name(case, seed: int) -> None:
    shape, chain = case
    model = _model(shape, chain, seed)
    x = np.random.default_rng(seed + 1).standard_normal((3, *model.input_shape[1:]))
    x = x.astype("float32")
    expected = np.asarray(model(x, training=False))
    try:
        port = keras_to_torch(model)
    except UnsupportedFeatureError as error:
        assert _refused_by_name(error, model), str(error)
        return
    graph = graph_from_keras(model)
    tolerance = derived_tolerance(graph, [x])
    with torch.no_grad():
        actual = port(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance)
    try:
        exported = to_onnx(model)
    except UnsupportedFeatureError as error:
        assert _refused_by_name(error, model), str(error)
        return
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    (onnx_output,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(onnx_output, expected, rtol=0, atol=tolerance)
    # Read back whole (the interpreter's module captured): the graph on onnxruntime, its
    # reading's reference and torch port agree; a graph of no recurrent node is not ours.
    if not any(node.op_type in ("LSTM", "GRU", "RNN") for node in exported.graph.node):
        with pytest.raises(UnsupportedFeatureError, match="no LSTM, GRU or RNN node"):
            compare(exported, inputs=[x], frameworks=["torch"])
        return
    report = compare(exported, inputs=[x], frameworks=["torch"])
    assert report, report.lines()
