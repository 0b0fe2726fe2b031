"""The reference gradient against central finite differences in float64, and by hand.

Agreement with the frameworks' autodiff is the comparison's job; here the only oracle is
the forward reference itself, nudged one element at a time (``finite_differences.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm import (
    DirectionWeights,
    RecurrentLayer,
    RecurrentStack,
    UnsupportedFeatureError,
    WeightShapeError,
    run_reference,
)
from xframe_bilstm.activations import NUMPY_ACTIVATIONS
from xframe_bilstm.inputs import _weights
from xframe_bilstm.reference import reference_gradients

from .finite_differences import (
    assert_matches_finite_differences,
    finite_differences,
    random_cotangents,
    random_layer,
    random_states,
)

CELLS = [
    pytest.param("lstm", None, id="lstm"),
    pytest.param("gru", True, id="gru-reset_after"),
    pytest.param("gru", False, id="gru-reset_before"),
    pytest.param("simple_rnn", None, id="simple_rnn"),
]
DIRECTIONS = [
    pytest.param("forward", "concat", id="forward"),
    pytest.param("backward", "concat", id="go_backwards"),
    *(
        pytest.param("bidirectional", merge, id=f"bidirectional-{merge}")
        for merge in ("concat", "sum", "mul", "ave", None)
    ),
]


def check(
    stack: RecurrentStack,
    seed: int,
    *,
    lengths: list[int] | None = None,
    with_states: bool = True,
    batch: int = 2,
    steps: int = 3,
) -> None:
    """The gradient of every input, state and weight agrees with finite differences."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, steps, stack.input_size))
    states = random_states(rng, stack, batch) if with_states else None
    cotangents = random_cotangents(rng, stack, x, states, lengths)
    ours = reference_gradients(stack, x, cotangents, initial_states=states, lengths=lengths)
    assert all(np.isfinite(v).all() for v in ours.named().values())
    # The gradient is of the very function the forward reference computes.
    for got, expected in zip(
        ours.outputs, run_reference(stack, x, initial_states=states, lengths=lengths), strict=True
    ):
        np.testing.assert_array_equal(got, expected)
    expected = finite_differences(stack, x, cotangents, initial_states=states, lengths=lengths)
    if not with_states:
        expected = {k: v for k, v in expected.items() if not k.startswith("initial_states")}
        ours_named = {k: v for k, v in ours.named().items() if not k.startswith("initial_")}
    else:
        ours_named = ours.named()
    assert_matches_finite_differences(ours_named, expected)


@pytest.mark.parametrize(("direction", "merge_mode"), DIRECTIONS)
@pytest.mark.parametrize(("cell", "reset_after"), CELLS)
def test_every_cell_and_direction(
    cell: str, reset_after: bool | None, direction: str, merge_mode: str | None
) -> None:
    seed = len(cell) * 7 + len(direction) + len(str(merge_mode)) + bool(reset_after)
    layer = random_layer(
        np.random.default_rng(seed),
        cell,
        2,
        2,
        direction=direction,
        merge_mode=merge_mode,
        reset_after=reset_after,
    )
    # Padded rows, initial states and final states in every case.
    check(RecurrentStack((layer,), return_state=True), seed, lengths=[3, 1])


@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("lengths", [None, [2, 4]], ids=["unpadded", "padded"])
def test_what_the_stack_returns(
    return_sequences: bool, return_state: bool, lengths: list[int] | None
) -> None:
    rng = np.random.default_rng(3)
    layer = random_layer(rng, "lstm", 2, 2, direction="bidirectional", merge_mode="mul")
    stack = RecurrentStack((layer,), return_sequences=return_sequences, return_state=return_state)
    check(stack, 4, lengths=lengths, steps=4)


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize(("cell", "reset_after"), CELLS[1:])
def test_zeroed_masked_outputs(cell: str, reset_after: bool | None, direction: str) -> None:
    layer = random_layer(
        np.random.default_rng(5),
        cell,
        2,
        2,
        direction=direction,
        reset_after=reset_after,
        zero_masked_outputs=True,
    )
    check(RecurrentStack((layer,), return_sequences=True), 6, lengths=[1, 3])


@pytest.mark.parametrize("bias", ["none", "single", "split"])
@pytest.mark.parametrize("cell", ["lstm", "simple_rnn"])
def test_bias_layouts(cell: str, bias: str) -> None:
    layer = random_layer(np.random.default_rng(7), cell, 2, 3, bias=bias)
    check(RecurrentStack((layer,)), 8)


def test_split_lstm_bias_rows_receive_the_same_gradient() -> None:
    # Only the rows' sum enters the equations, so each row gets the full bias gradient.
    rng = np.random.default_rng(9)
    stack = RecurrentStack((random_layer(rng, "lstm", 2, 2, bias="split"),))
    x = rng.standard_normal((2, 3, 2))
    grads = reference_gradients(stack, x, random_cotangents(rng, stack, x))
    bias = grads.weights["layers[0].forward.bias"]
    np.testing.assert_allclose(bias[0], bias[1], rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "layers",
    [
        pytest.param(
            [
                ("lstm", "bidirectional", "concat", None),
                ("gru", "backward", "concat", True),
                ("simple_rnn", "forward", "concat", None),
            ],
            id="lstm-gru-simple_rnn",
        ),
        pytest.param(
            [("gru", "bidirectional", "sum", False), ("lstm", "bidirectional", None, None)],
            id="gru-lstm-unmerged",
        ),
    ],
)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_stacks(layers: list, return_sequences: bool) -> None:
    rng = np.random.default_rng(10)
    built, size = [], 2
    for cell, direction, merge, reset_after in layers:
        layer = random_layer(
            rng, cell, size, 2, direction=direction, merge_mode=merge, reset_after=reset_after
        )
        built.append(layer)
        size = layer.output_size
    stack = RecurrentStack(tuple(built), return_sequences=return_sequences, return_state=True)
    check(stack, 11, lengths=[3, 2])


@pytest.mark.parametrize("role", ["activation", "recurrent_activation"])
@pytest.mark.parametrize("name", sorted(NUMPY_ACTIVATIONS))
def test_every_activation(name: str, role: str) -> None:
    # In an LSTM, as its cell's activation (sigmoid gates) or as its gates' (tanh cell).
    rng = np.random.default_rng(sum(map(ord, name + role)))
    options = {"activation": "tanh", "recurrent_activation": "sigmoid", role: name}
    layer = random_layer(rng, "lstm", 2, 2, scale=0.4, **options)
    check(RecurrentStack((layer,)), 12, with_states=False, batch=1, steps=2)


def test_default_states_are_zeros_with_a_gradient() -> None:
    rng = np.random.default_rng(13)
    stack = RecurrentStack((random_layer(rng, "gru", 2, 2, direction="bidirectional"),))
    x = rng.standard_normal((2, 3, 2))
    cotangents = random_cotangents(rng, stack, x)
    zeros = [np.zeros((2, 2)), np.zeros((2, 2))]
    implicit = reference_gradients(stack, x, cotangents)
    explicit = reference_gradients(stack, x, cotangents, initial_states=zeros)
    assert len(implicit.initial_states) == 2
    for a, b in zip(implicit.initial_states, explicit.initial_states, strict=True):
        np.testing.assert_array_equal(a, b)


def test_hand_derived_linear_simple_rnn() -> None:
    # h1 = k x1 + r h0 + b, h2 = k x2 + r h1 + b; loss g1 h1 + g2 h2.
    # With k = 2, r = 0.5, b = 1, h0 = 3, x = (1, 2), g = (1, 2): h1 = 4.5, h2 = 7.25;
    # δ2 = g2 = 2, δ1 = g1 + r δ2 = 2. Then dx = (k δ1, k δ2) = (4, 4), dh0 = r δ1 = 1,
    # dk = δ1 x1 + δ2 x2 = 6, dr = δ1 h0 + δ2 h1 = 15, db = δ1 + δ2 = 4.
    weights = DirectionWeights(np.array([[2.0]]), np.array([[0.5]]), np.array([1.0]))
    layer = RecurrentLayer(
        "simple_rnn", 1, 1, (weights,), activation="linear", recurrent_activation=None
    )
    grads = reference_gradients(
        RecurrentStack((layer,)),
        np.array([[[1.0], [2.0]]]),
        [np.array([[[1.0], [2.0]]])],
        initial_states=[np.array([[3.0]])],
    )
    np.testing.assert_array_equal(grads.outputs[0][0, :, 0], [4.5, 7.25])
    assert grads.inputs[0, :, 0].tolist() == [4.0, 4.0]
    assert grads.initial_states[0].tolist() == [[1.0]]
    assert {name: value.tolist() for name, value in grads.weights.items()} == {
        "layers[0].forward.kernel": [[6.0]],
        "layers[0].forward.recurrent_kernel": [[15.0]],
        "layers[0].forward.bias": [4.0],
    }


def test_weights_are_named_as_the_library_names_them() -> None:
    rng = np.random.default_rng(14)
    stack = RecurrentStack(
        (
            random_layer(rng, "lstm", 2, 2, direction="bidirectional"),
            random_layer(rng, "gru", 4, 2, direction="backward", bias="none"),
        )
    )
    x = rng.standard_normal((1, 2, 2))
    grads = reference_gradients(stack, x, random_cotangents(rng, stack, x))
    named = _weights(stack)
    assert list(grads.weights) == [name for name, _ in named]
    for name, weight in named:
        assert grads.weights[name].shape == weight.shape, name


def test_float32_runs_in_float32() -> None:
    rng = np.random.default_rng(15)
    stack = RecurrentStack((random_layer(rng, "lstm", 2, 3, direction="bidirectional"),))
    x = rng.standard_normal((2, 4, 2))
    cotangents = random_cotangents(rng, stack, x)
    exact = reference_gradients(stack, x, cotangents).named()
    single = reference_gradients(stack, x, cotangents, dtype=np.float32).named()
    for name, value in single.items():
        assert value.dtype == np.float32, name
        np.testing.assert_allclose(value, exact[name], rtol=1e-4, atol=1e-5, err_msg=name)


STACK = RecurrentStack(
    (
        random_layer(
            np.random.default_rng(16), "lstm", 2, 2, direction="bidirectional", merge_mode=None
        ),
    ),
    return_state=True,
)


@pytest.mark.parametrize(
    ("cotangents", "match"),
    [
        pytest.param(
            [np.ones((1, 3, 2))] * 5,
            r"expected 6 arrays, one per output of a stack of 1 recurrent layer\(s\) "
            r"\(output_forward, output_backward, "
            r"h_forward, c_forward, h_backward, c_backward\), got 5",
            id="count",
        ),
        pytest.param(
            [np.ones((1, 3, 2))] * 2 + [np.ones((1, 2))] * 3 + [np.ones((2, 2))],
            r"cotangents \(c_backward\): expected shape \(1, 2\), the shape of that output, "
            r"got \(2, 2\)",
            id="shape",
        ),
    ],
)
def test_bad_cotangents_are_refused_naming_the_output(cotangents: list, match: str) -> None:
    with pytest.raises(WeightShapeError, match=match):
        reference_gradients(STACK, np.ones((1, 3, 2)), cotangents)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"x": np.ones((1, 3))}, r"x: expected shape \(batch, time, 2\)", id="rank"),
        pytest.param({"lengths": [4]}, r"lengths: each must be in 1\.\.3", id="lengths"),
        pytest.param({"initial_states": [np.ones((1, 2))]}, "expected 4 arrays", id="states"),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs: dict, match: str) -> None:
    arguments = {"x": np.ones((1, 3, 2)), **kwargs}
    cotangents = [np.ones((1, 3, 2))] * 2 + [np.ones((1, 2))] * 4
    with pytest.raises(WeightShapeError, match=match):
        reference_gradients(STACK, arguments.pop("x"), cotangents, **arguments)


def test_an_activation_without_a_derivative_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from xframe_bilstm.reference import activation_grads

    monkeypatch.delitem(activation_grads.ACTIVATION_VJPS, "softsign")
    rng = np.random.default_rng(17)
    stack = RecurrentStack((random_layer(rng, "gru", 2, 2, recurrent_activation="softsign"),))
    x = rng.standard_normal((1, 2, 2))
    with pytest.raises(UnsupportedFeatureError, match="recurrent_activation='softsign'"):
        reference_gradients(stack, x, random_cotangents(rng, stack, x))


def _layer_by_layer(
    stack: RecurrentStack,
    x: np.ndarray,
    cotangents: list[np.ndarray],
    states: list[np.ndarray],
    lengths: list[int] | None,
) -> dict[str, np.ndarray]:
    """Backpropagation through the stack written out layer by layer on the scan's tape,
    without the graph: the input, every layer's initial states, every weight."""
    from xframe_bilstm.masks import mask_from_lengths
    from xframe_bilstm.reference.scan_backward import backward_layer, forward_layer

    mask = None if lengths is None else mask_from_lengths(lengths, *x.shape[:2])
    tapes, sequence, starts = [], x, list(states)
    for index, layer in enumerate(stack.layers):
        last = index == len(stack.layers) - 1
        count = layer.num_states * len(layer.weights)
        own, starts = starts[:count], starts[count:]
        sequences = stack.return_sequences or not last
        outputs, finals, tape = forward_layer(
            layer, sequence, own, mask, return_sequences=sequences, dtype=np.float64
        )
        tapes.append(tape)
        sequence = outputs[0]
    d_outputs = tuple(cotangents[: len(outputs)])
    d_finals = tuple(cotangents[len(outputs) :]) or tuple(np.zeros_like(f) for f in finals)
    found: list[dict[str, np.ndarray]] = []  # per layer, from the first
    d_states: list[list[np.ndarray]] = []
    for index in range(len(stack.layers) - 1, -1, -1):
        layer = stack.layers[index]
        d_x, d_start, grads = backward_layer(layer, tapes[index], d_outputs, d_finals)
        d_states.insert(0, d_start)
        found.insert(
            0,
            {
                f"layers[{index}].{side}.{field}": getattr(direction, field)
                for side, direction in zip(("forward", "backward"), grads)
                for field in ("kernel", "recurrent_kernel", "bias")
                if getattr(direction, field) is not None
            },
        )
        d_outputs = (d_x,)
        below = stack.layers[index - 1]
        d_finals = tuple(np.zeros((x.shape[0], below.units)) for _ in range(below.num_states))
        d_finals = d_finals * len(below.weights)
    flat = [s for layer_states in d_states for s in layer_states]
    return {
        "inputs": d_outputs[0],
        **{f"initial_states[{i}]": s for i, s in enumerate(flat)},
        **{name: value for layer in found for name, value in layer.items()},
    }


@pytest.mark.parametrize("masked", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize(("direction", "merge_mode"), DIRECTIONS)
@pytest.mark.parametrize(("cell", "reset_after"), CELLS)
def test_a_stack_differentiates_as_its_graph_equal_to_its_layers_one_by_one(
    cell: str, reset_after: bool | None, direction: str, merge_mode: str | None, masked: bool
) -> None:
    # The graph's backward (lengths on the input record, initial states through the
    # graph's state layers, weights renamed to canonical names) adds nothing of its own:
    # the same numbers as the layers' backward chained by hand, name for name.
    rng = np.random.default_rng(len(cell) + len(direction) + len(str(merge_mode)))
    below = random_layer(rng, cell, 3, 2, direction=direction, reset_after=reset_after)
    last = random_layer(
        rng,
        cell,
        4 if direction == "bidirectional" else 2,
        2,
        direction=direction,
        merge_mode=merge_mode,
        reset_after=reset_after,
    )
    stack = RecurrentStack((below, last), return_state=True)
    x = rng.standard_normal((3, 4, 3))
    lengths = [4, 2, 1] if masked else None
    states = random_states(rng, stack, 3)
    cotangents = random_cotangents(rng, stack, x, states, lengths)
    grads = reference_gradients(stack, x, cotangents, initial_states=states, lengths=lengths)
    by_hand = _layer_by_layer(stack, x, cotangents, states, lengths)
    named = grads.named()
    assert list(named) == list(by_hand)
    for name, want in by_hand.items():
        np.testing.assert_allclose(named[name], want, rtol=1e-13, atol=1e-13, err_msg=name)
