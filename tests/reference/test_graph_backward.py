"""The reference gradient of model graphs against central finite differences in float64.

The only oracle is the forward reference (:func:`run_model_reference`), nudged one element
at a time; nothing here uses the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from xframe_bilstm import UnsupportedFeatureError, WeightShapeError
from xframe_bilstm.factories import tagger_graph
from xframe_bilstm.graph import LayerRecord, ModelGraph, state_count
from xframe_bilstm.reference import run_model_reference
from xframe_bilstm.reference.graph_backward import backward_refusal, graph_gradients

from .finite_differences import random_layer

EPSILON = 1e-6
SIDES = ("forward", "backward")


def _input(name: str, shape: tuple, dtype: str = "float32") -> LayerRecord:
    return LayerRecord(name, "input", "InputLayer", options={"shape": shape, "dtype": dtype})


def _dense(rng, name, source, d_in, units, activation="linear", bias=True) -> LayerRecord:
    weights = {"kernel": rng.normal(0, 0.5, (d_in, units))}
    if bias:
        weights["bias"] = rng.normal(0, 0.3, units)
    options = {"activation": activation, "time_distributed": False}
    return LayerRecord(name, "dense", "Dense", (source,), options, weights)


def _recurrent(rng, name, source, cell, d_in, units, *, sequences=True, **kwargs) -> LayerRecord:
    layer = random_layer(rng, cell, d_in, units, **kwargs)
    options = {"return_sequences": sequences, "time_major": False, "unroll": False}
    return LayerRecord(name, "recurrent", "LSTM", (source,), options, recurrent=layer)


def _weight_arrays(graph: ModelGraph) -> dict[str, np.ndarray]:
    """Every weight array of the graph by the gradient's name, to nudge in place."""
    arrays: dict[str, np.ndarray] = {}
    for record in graph.layers:
        inner = record.options.get("layer") if record.kind == "time_distributed" else record
        if record.recurrent is not None:
            for side, weights in zip(SIDES, record.recurrent.weights):
                for field in ("kernel", "recurrent_kernel", "bias"):
                    if getattr(weights, field) is not None:
                        arrays[f"{record.name}/{side}.{field}"] = getattr(weights, field)
        else:
            arrays.update({f"{record.name}/{k}": v for k, v in inner.weights.items()})
    return arrays


def _nudged(array: np.ndarray, loss: Callable[[], float]) -> np.ndarray:
    result = np.zeros(array.shape)
    frozen = not array.flags.writeable  # canonical weights are read-only; nudge them anyway
    array.setflags(write=True)
    for position in np.ndindex(array.shape):
        kept = array[position]
        array[position] = kept + EPSILON
        plus = loss()
        array[position] = kept - EPSILON
        minus = loss()
        array[position] = kept
        result[position] = (plus - minus) / (2 * EPSILON)
    array.setflags(write=not frozen)
    return result


def finite_differences(
    graph: ModelGraph, inputs: list[np.ndarray], cotangents: list[np.ndarray]
) -> dict[str, np.ndarray]:
    """``∂(Σ g ⊙ y)`` by central differences, for every float input, initial state (the
    zeros the recurrent layers start from) and weight."""
    batch = inputs[0].shape[0]
    starts = [
        np.zeros((batch, record.recurrent.units))
        for record in graph.layers
        if record.recurrent is not None
        for _ in range(state_count(record.recurrent))
    ]

    def loss() -> float:
        outputs = run_model_reference(graph, inputs, initial_states=starts or None)
        return float(sum(np.sum(g * y) for g, y in zip(cotangents, outputs)))

    found = {
        name: _nudged(array, loss)
        for name, array in zip(graph.inputs, inputs)
        if np.issubdtype(array.dtype, np.floating)
    }
    found.update({f"initial_states[{i}]": _nudged(s, loss) for i, s in enumerate(starts)})
    found.update({name: _nudged(array, loss) for name, array in _weight_arrays(graph).items()})
    return found


def check(
    graph: ModelGraph,
    inputs: list[np.ndarray],
    seed: int = 0,
    kinks: dict[str, tuple] | None = None,
) -> dict[str, np.ndarray]:
    """The reference gradient equals the finite differences, name for name.

    ``kinks`` names the elements where the loss has no derivative (a nudge there changes
    a mask), left out of the comparison.
    """
    rng = np.random.default_rng(seed)
    outputs = run_model_reference(graph, inputs)
    cotangents = [rng.standard_normal(y.shape) for y in outputs]
    grads = graph_gradients(graph, inputs, cotangents)
    for mine, theirs in zip(grads.outputs, outputs):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)
    expected = finite_differences(graph, inputs, cotangents)
    named = grads.named()
    assert sorted(named) == sorted(expected)
    for name, index in (kinks or {}).items():
        expected[name][index] = named[name][index]
    for name, want in expected.items():
        np.testing.assert_allclose(named[name], want, rtol=1e-5, atol=1e-6, err_msg=name)
    return named


def test_tagger_embedding_bilstm_dense_with_padded_ids():
    rng = np.random.default_rng(1)
    table = rng.normal(0, 0.5, (7, 3))
    bilstm = random_layer(rng, "lstm", 3, 2, direction="bidirectional")
    kernel, bias = rng.normal(0, 0.5, (4, 3)), rng.normal(0, 0.3, 3)
    graph = tagger_graph(table, bilstm, kernel, bias, activation="softmax")
    ids = np.array([[1, 4, 4, 2, 0], [3, 6, 0, 0, 0]])
    grads = graph_gradients(graph, [ids], [np.ones((2, 5, 3))])
    assert grads.inputs == {"ids": None}  # token ids get no gradient
    named = check(graph, [ids])
    assert list(named) == [
        *(f"initial_states[{i}]" for i in range(4)),  # the zeros the BiLSTM starts from
        "embedding/embeddings",
        *(f"bidi/{s}.{f}" for s in SIDES for f in ("kernel", "recurrent_kernel", "bias")),
        "dense/kernel",
        "dense/bias",
    ]
    # Row 5 is never looked up; row 0 (padding) is, and its steps still reach the loss
    # through the Dense head, so only the unused row is zero.
    assert not named["embedding/embeddings"][5].any()


def test_float_front_end_merges_and_last_state():
    rng = np.random.default_rng(2)
    graph = ModelGraph(
        "front",
        (
            _input("x", (4, 3)),
            _input("y", (4, 3)),
            LayerRecord("mask", "masking", "Masking", ("x",), {"mask_value": 0.0}),
            _dense(rng, "proj", "mask", 3, 3, "tanh"),
            LayerRecord("sum", "merge", "Add", ("proj", "y"), {"op": "add", "mask_combine": "any"}),
            LayerRecord(
                "prod", "merge", "Multiply", ("sum", "y"), {"op": "multiply", "mask_combine": "all"}
            ),
            LayerRecord(
                "diff",
                "merge",
                "Subtract",
                ("prod", "x"),
                {"op": "subtract", "mask_combine": "any"},
            ),
            LayerRecord(
                "mean",
                "merge",
                "Average",
                ("diff", "sum", "proj"),
                {"op": "average", "mask_combine": "any"},
            ),
            LayerRecord(
                "both",
                "concatenate",
                "Concatenate",
                ("mean", "y"),
                {"axis": -1, "mask_combine": "any"},
            ),
            LayerRecord("drop", "identity", "Dropout", ("both",)),
            _recurrent(rng, "gru", "drop", "gru", 6, 2, sequences=False),
            _dense(rng, "head", "gru", 2, 1, "sigmoid"),
        ),
        inputs=("x", "y"),
        outputs=("head", "both"),
    )
    x = rng.normal(size=(2, 4, 3))
    x[1, 3] = 0.0  # a masked step: nudging it unmasks it, so it has no derivative
    check(graph, [x, rng.normal(size=(2, 4, 3))], kinks={"x": (1, 3)})


def test_a_division_broadcasting_one_axis():
    """``x / y`` with ``y`` of size 1 on the features (a norm kept as an axis), through a GRU."""
    rng = np.random.default_rng(7)
    graph = ModelGraph(
        "ratio",
        (
            _input("x", (4, 3)),
            _input("y", (4, 1)),
            LayerRecord(
                "ratio", "merge", "div", ("x", "y"), {"op": "divide", "mask_combine": "any"}
            ),
            _recurrent(rng, "gru", "ratio", "gru", 3, 2, sequences=False),
        ),
        inputs=("x", "y"),
        outputs=("gru",),
    )
    check(graph, [rng.normal(size=(2, 4, 3)), rng.uniform(1.0, 2.0, size=(2, 4, 1))])


@pytest.mark.parametrize("op", ["average", "max"])
def test_pooling_reshapes_and_activation_layers(op):
    rng = np.random.default_rng(3)
    layers = (
        _input("x", (4, 3)),
        LayerRecord("p", "permute", "Permute", ("x",), {"dims": (2, 1)}),
        LayerRecord("back", "permute", "Permute", ("p",), {"dims": (2, 1)}),
        LayerRecord(
            "relu",
            "relu",
            "ReLU",
            ("back",),
            {"max_value": 1.5, "negative_slope": 0.1, "threshold": 0.2},
        ),
        LayerRecord("elu", "elu", "ELU", ("relu",), {"alpha": 0.7}),
        LayerRecord(
            "prelu", "prelu", "PReLU", ("elu",), {}, {"alpha": rng.uniform(0.1, 0.4, (1, 3))}
        ),
        LayerRecord(
            "pool", "global_pool", "GlobalPooling1D", ("prelu",), {"op": op, "keepdims": False}
        ),
        LayerRecord("flat", "flatten", "Flatten", ("x",)),
        LayerRecord("shape", "reshape", "Reshape", ("flat",), {"target_shape": (3, 4)}),
        LayerRecord("soft", "softmax", "Softmax", ("shape",), {"axis": 1, "log": False}),
        LayerRecord("logsoft", "softmax", "Softmax", ("shape",), {"axis": -1, "log": True}),
        LayerRecord("act", "activation", "Activation", ("soft",), {"activation": "softmax"}),
        LayerRecord(
            "td",
            "time_distributed",
            "TimeDistributed",
            ("x",),
            {"layer": _dense(rng, "inner", "x", 3, 2, "relu")},
        ),
    )
    graph = ModelGraph("shapes", layers, ("x",), ("pool", "act", "logsoft", "td"))
    check(graph, [rng.normal(size=(2, 4, 3))])


def test_masked_average_pool_counts_the_valid_steps():
    rng = np.random.default_rng(4)
    graph = ModelGraph(
        "pooled",
        (
            _input("ids", (None,), "int64"),
            LayerRecord(
                "emb",
                "embedding",
                "Embedding",
                ("ids",),
                {"mask_zero": True},
                {"embeddings": rng.normal(size=(5, 2))},
            ),
            LayerRecord(
                "pool",
                "global_pool",
                "GlobalAveragePooling1D",
                ("emb",),
                {"op": "average", "keepdims": False},
            ),
        ),
        ("ids",),
        ("pool",),
    )
    ids = np.array([[1, 2, 0], [3, 0, 0]])
    named = check(graph, [ids])
    # Hand-derived: row 1's single valid step gets the whole cotangent, padding none.
    cotangent = np.random.default_rng(0).standard_normal((2, 2))
    assert not named["emb/embeddings"][0].any()
    np.testing.assert_allclose(
        graph_gradients(graph, [ids], [cotangent]).weights["emb/embeddings"][3], cotangent[1]
    )


def test_refuses_the_kinds_without_a_backward_by_name():
    rng = np.random.default_rng(5)
    graph = ModelGraph(
        "convnet",
        (
            _input("x", (4, 3)),
            LayerRecord(
                "norm", "layer_norm", "LayerNormalization", ("x",), {"axis": (-1,), "epsilon": 1e-3}
            ),
            LayerRecord(
                "most", "merge", "Maximum", ("norm", "x"), {"op": "maximum", "mask_combine": "any"}
            ),
            _dense(rng, "d", "most", 3, 1),
        ),
        ("x",),
        ("d",),
    )
    why = backward_refusal(graph)
    assert why is not None and "'norm' (LayerNormalization, kind layer_norm)" in why
    with pytest.raises(UnsupportedFeatureError, match=r"'norm' .*layer_norm"):
        graph_gradients(graph, [np.zeros((1, 4, 3))], [np.zeros((1, 4, 1))])
    merged = ModelGraph(
        "m",
        (
            graph.layers[0],
            graph.layers[2].__class__(
                "most", "merge", "Maximum", ("x", "x"), {"op": "maximum", "mask_combine": "any"}
            ),
        ),
        ("x",),
        ("most",),
    )
    with pytest.raises(UnsupportedFeatureError, match=r"'most' \(Maximum\).*maximum merge"):
        graph_gradients(merged, [np.ones((1, 4, 3))], [np.ones((1, 4, 3))])


def test_cotangents_must_fit_the_outputs():
    rng = np.random.default_rng(6)
    graph = ModelGraph("m", (_input("x", (3,)), _dense(rng, "d", "x", 3, 2)), ("x",), ("d",))
    with pytest.raises(WeightShapeError, match="one per output of m"):
        graph_gradients(graph, [np.zeros((1, 3))], [])
    with pytest.raises(WeightShapeError, match=r"cotangents \(d\): expected shape \(1, 2\)"):
        graph_gradients(graph, [np.zeros((1, 3))], [np.zeros((1, 3))])


def test_float32_gradients_stay_near_float64():
    rng = np.random.default_rng(7)
    graph = ModelGraph(
        "m", (_input("x", (3,)), _dense(rng, "d", "x", 3, 2, "tanh")), ("x",), ("d",)
    )
    x, g = rng.normal(size=(2, 3)), rng.normal(size=(2, 2))
    exact = graph_gradients(graph, [x], [g]).named()
    rounded = graph_gradients(graph, [x], [g], dtype=np.float32).named()
    assert rounded["d/kernel"].dtype == np.float32
    for name in exact:
        np.testing.assert_allclose(rounded[name], exact[name], rtol=1e-5, atol=1e-6)


def test_a_bidirectional_layer_without_merge_gives_both_halves_their_gradient():
    # Two sequence outputs (forward half, backward half) read by different layers, and the
    # states the layer starts from (zeros) get theirs as well.
    rng = np.random.default_rng(8)
    graph = ModelGraph(
        "halves",
        (
            _input("x", (4, 3)),
            _recurrent(rng, "bi", "x", "gru", 3, 2, direction="bidirectional", merge_mode=None),
            _dense(rng, "left", "bi", 2, 1, "tanh"),
            _dense(rng, "right", "bi:1", 2, 2),
        ),
        ("x",),
        ("left", "right"),
    )
    named = check(graph, [rng.normal(size=(2, 4, 3))])
    assert {"initial_states[0]", "initial_states[1]", "bi/backward.kernel"} <= set(named)
