"""The Keras 3 adapter: conversion both ways, and Keras's numbers against the float64 reference.

Keras layers are built natively, then given random weights whose gate blocks have distinct
scales and whose biases are non-zero, so a permuted gate, a transposed kernel or a dropped
bias row cannot agree with the reference by symmetry.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")  # before Keras/TensorFlow: the reverse import order can crash
keras = pytest.importorskip("keras")

from xframe_bilstm.adapters.keras import (  # noqa: E402
    canonical_to_keras,
    hard_sigmoid_keras2,
    keras_to_canonical,
    run_keras,
    set_layer_weights,
)
from xframe_bilstm.canonical import RecurrentStack, layer_state_names  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError, WeightShapeError  # noqa: E402
from xframe_bilstm.factories import random_layer  # noqa: E402
from xframe_bilstm.reference import run_reference  # noqa: E402

pytestmark = pytest.mark.keras

BATCH, STEPS, INPUT, UNITS = 3, 6, 4, 3
LENGTHS = np.array([STEPS, 3, 1])  # right-padded: full, partial and a single valid step
GATE_SCALES = (0.3, 0.6, 0.9, 1.2)
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
CLASSES = {"lstm": "LSTM", "gru": "GRU", "gru_v1": "GRU", "simple_rnn": "SimpleRNN"}


# --------------------------------------------------------------------------- helpers


def make_layer(
    cell: str,
    direction: str = "forward",
    merge_mode: str | None = "concat",
    units: int = UNITS,
    **options: object,
) -> keras.layers.Layer:
    """A Keras layer; cell ``gru`` is reset_after=True and ``gru_v1`` reset_after=False."""
    cls = getattr(keras.layers, CLASSES[cell])
    if cell.startswith("gru"):
        options["reset_after"] = cell == "gru"
    if direction == "bidirectional":
        # The wrapper casts inputs to its own dtype, so it gets the layer's dtype too.
        wrapper_dtype = {"dtype": options["dtype"]} if "dtype" in options else {}
        return keras.layers.Bidirectional(
            cls(units, **options), merge_mode=merge_mode, **wrapper_dtype
        )
    return cls(units, go_backwards=direction == "backward", **options)


def randomize(layer: keras.layers.Layer, seed: int) -> keras.layers.Layer:
    """Build ``layer`` if needed; give each gate block its own scale and every bias a value."""
    if not layer.built:
        layer.build((None, None, INPUT))
    rng = np.random.default_rng(seed)
    bidirectional = isinstance(layer, keras.layers.Bidirectional)
    for half in (layer.forward_layer, layer.backward_layer) if bidirectional else (layer,):
        gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[type(half).__name__]
        arrays = []
        for variable in half.cell.weights:  # kernel, recurrent_kernel[, bias]; gates last
            shape = tuple(variable.shape)
            scales = np.repeat(GATE_SCALES[:gates], shape[-1] // gates)  # (G·H,)
            if variable.path.endswith("bias"):
                values = rng.uniform(0.1, 0.6, shape) * rng.choice([-1.0, 1.0], shape)
            else:
                values = rng.uniform(-1.0, 1.0, shape)
            arrays.append((values * scales).astype(variable.dtype))
        half.cell.set_weights(arrays)
    return layer


def random_input(seed: int, steps: int = STEPS, batch: int = BATCH) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, steps, INPUT)).astype(np.float32)


def random_states(stack: RecurrentStack, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    names = layer_state_names(stack.layers[0])
    return [rng.uniform(-0.8, 0.8, (BATCH, stack.layers[0].units)) for _ in names]


def assert_matches_reference(obj: object, x: np.ndarray, **run_options: object) -> None:
    stack = keras_to_canonical(obj)
    got = run_keras(obj, x, **run_options)
    expected = run_reference(stack, x, **run_options)
    assert len(got) == len(expected)
    for value, reference in zip(got, expected, strict=True):
        assert value.shape == reference.shape
        np.testing.assert_allclose(value, reference, **TOLERANCE)


# --------------------------------------------------------------------------- Keras vs reference


def case(
    case_id: str,
    cell: str,
    direction: str = "forward",
    merge_mode: str | None = "concat",
    *,
    seq: bool = True,
    state: bool = False,
    lengths: bool = False,
    initial: bool = False,
    **options: object,
) -> object:
    return pytest.param(
        cell, direction, merge_mode, seq, state, lengths, initial, options, id=case_id
    )


CASES = [
    case("lstm-forward-seq", "lstm"),
    case("lstm-forward-last-state", "lstm", seq=False, state=True),
    case("lstm-backward-seq-state", "lstm", "backward", state=True),
    case("lstm-bidirectional-concat-seq", "lstm", "bidirectional"),
    case(
        "lstm-bidirectional-sum-last-state", "lstm", "bidirectional", "sum", seq=False, state=True
    ),
    case("lstm-bidirectional-mul-seq-state", "lstm", "bidirectional", "mul", state=True),
    case("lstm-bidirectional-ave-seq", "lstm", "bidirectional", "ave"),
    case("lstm-bidirectional-none-seq-state", "lstm", "bidirectional", None, state=True),
    case("lstm-forward-nobias", "lstm", use_bias=False),
    case(
        "lstm-forward-relu-hard_sigmoid",
        "lstm",
        activation="relu",
        recurrent_activation="hard_sigmoid",
    ),
    case("lstm-forward-mask-seq-state", "lstm", state=True, lengths=True),
    case("lstm-backward-mask-seq", "lstm", "backward", lengths=True),
    case("lstm-backward-mask-last-state", "lstm", "backward", seq=False, state=True, lengths=True),
    case(
        "lstm-bidirectional-concat-mask-seq-state",
        "lstm",
        "bidirectional",
        state=True,
        lengths=True,
    ),
    case(
        "lstm-bidirectional-none-mask-last", "lstm", "bidirectional", None, seq=False, lengths=True
    ),
    case("lstm-bidirectional-initial-state", "lstm", "bidirectional", state=True, initial=True),
    case("lstm-forward-initial-mask-unroll", "lstm", initial=True, lengths=True, unroll=True),
    case("lstm-forward-mask-zero_output", "lstm", lengths=True, zero_output_for_mask=True),
    case(
        "gru-forward-mask-last-zero_output",
        "gru",
        seq=False,
        state=True,
        lengths=True,
        zero_output_for_mask=True,
    ),
    case(
        "simple_rnn-backward-mask-zero_output",
        "simple_rnn",
        "backward",
        lengths=True,
        zero_output_for_mask=True,
    ),
    case("gru-forward-seq-state", "gru", state=True),
    case("gru-backward-last", "gru", "backward", seq=False),
    case("gru-bidirectional-concat-seq-state", "gru", "bidirectional", state=True),
    case("gru-bidirectional-ave-mask-seq", "gru", "bidirectional", "ave", lengths=True),
    case("gru-bidirectional-none-last-state", "gru", "bidirectional", None, seq=False, state=True),
    case("gru-forward-nobias-silu", "gru", use_bias=False, activation="silu"),
    case(
        "gru-backward-mask-initial-state", "gru", "backward", state=True, lengths=True, initial=True
    ),
    case("gru_v1-forward-seq", "gru_v1"),
    case("gru_v1-backward-mask-seq-state", "gru_v1", "backward", state=True, lengths=True),
    case("gru_v1-bidirectional-sum-seq-state", "gru_v1", "bidirectional", "sum", state=True),
    case(
        "gru_v1-forward-nobias-softsign-hard_sigmoid",
        "gru_v1",
        use_bias=False,
        activation="softsign",
        recurrent_activation="hard_sigmoid",
    ),
    case("simple_rnn-forward-seq-state", "simple_rnn", state=True),
    case("simple_rnn-backward-mask-seq", "simple_rnn", "backward", lengths=True),
    case(
        "simple_rnn-bidirectional-mul-mask-seq-state",
        "simple_rnn",
        "bidirectional",
        "mul",
        state=True,
        lengths=True,
    ),
    case(
        "simple_rnn-bidirectional-none-last-initial",
        "simple_rnn",
        "bidirectional",
        None,
        seq=False,
        initial=True,
    ),
    case("simple_rnn-forward-relu-nobias", "simple_rnn", activation="relu", use_bias=False),
    case("simple_rnn-forward-elu", "simple_rnn", activation="elu"),
    case("simple_rnn-backward-selu-last", "simple_rnn", "backward", seq=False, activation="selu"),
    case("simple_rnn-forward-linear-dropout", "simple_rnn", activation=None, dropout=0.5),
]


@pytest.mark.parametrize(
    ("cell", "direction", "merge_mode", "seq", "state", "lengths", "initial", "options"), CASES
)
def test_keras_matches_reference(
    cell: str,
    direction: str,
    merge_mode: str | None,
    seq: bool,
    state: bool,
    lengths: bool,
    initial: bool,
    options: dict[str, object],
) -> None:
    layer = make_layer(
        cell, direction, merge_mode, return_sequences=seq, return_state=state, **options
    )
    randomize(layer, seed=len(cell) + len(direction))
    x = random_input(seed=1)
    stack = keras_to_canonical(layer)
    run_options: dict[str, object] = {}
    if lengths:
        run_options["lengths"] = LENGTHS
    if initial:
        run_options["initial_states"] = random_states(stack, seed=2)
    assert_matches_reference(layer, x, **run_options)


@pytest.mark.parametrize(
    "layers",
    [
        pytest.param(
            lambda: [
                make_layer("lstm", return_sequences=True),
                make_layer("gru", "bidirectional", "concat", units=2, return_sequences=True),
                make_layer("simple_rnn", return_sequences=True, return_state=True),
            ],
            id="lstm-bigru_concat-simple_rnn_state",
        ),
        pytest.param(
            lambda: [
                make_layer("gru_v1", "backward", return_sequences=True),
                make_layer("lstm", "bidirectional", "sum", units=5, return_state=True),
            ],
            id="gru_v1_backward-bilstm_sum_last_state",
        ),
    ],
)
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "mask"])
def test_sequential_matches_reference(layers: object, masked: bool) -> None:
    model = keras.Sequential([keras.Input((None, INPUT)), *layers()])  # type: ignore[operator]
    for index, member in enumerate(model.layers):
        randomize(member, seed=10 + index)
    stack = keras_to_canonical(model)
    assert len(stack.layers) == len(model.layers)
    assert_matches_reference(model, random_input(3), lengths=LENGTHS if masked else None)


def test_float64_layer_keeps_its_dtype() -> None:
    layer = randomize(make_layer("lstm", "bidirectional", dtype="float64", return_state=True), 4)
    stack = keras_to_canonical(layer)
    assert stack.layers[0].weights[1].kernel.dtype == np.float64
    x = random_input(5).astype(np.float64)
    for value, reference in zip(run_keras(layer, x), run_reference(stack, x), strict=True):
        assert value.dtype == np.float64
        np.testing.assert_allclose(value, reference, rtol=1e-12, atol=1e-12)


def test_stateful_layer_carries_its_states_into_the_next_call() -> None:
    layer = make_layer("gru", stateful=True, return_sequences=True, return_state=True)
    layer.build((BATCH, None, INPUT))
    randomize(layer, 6)
    stack = keras_to_canonical(layer)
    assert stack.stateful
    x1, x2 = random_input(7), random_input(8)
    first = run_keras(layer, x1)
    second = run_keras(layer, x2)
    expected_first = run_reference(stack, x1)
    expected_second = run_reference(stack, x2, initial_states=expected_first[1:])
    np.testing.assert_allclose(first[0], expected_first[0], **TOLERANCE)
    np.testing.assert_allclose(second[0], expected_second[0], **TOLERANCE)


def test_repeated_calls_of_one_shape_do_not_retrace() -> None:
    from xframe_bilstm.adapters.keras.run import _COMPILED

    layer = randomize(make_layer("lstm", return_sequences=True), 9)
    x = random_input(10)
    run_keras(layer, x)
    run_keras(layer, x + 1)
    assert _COMPILED[layer].experimental_get_tracing_count() == 1


def test_unrolled_bidirectional_with_mask_pins_keras_bug() -> None:
    """Keras zeroes valid backward outputs of an unrolled, masked Bidirectional (§6.4).

    The unrolled loop zeroes the backward half's outputs, which are in reversed time, with
    the mask in input time. States are right. If this fails, Keras fixed the bug.
    """
    layer = make_layer(
        "lstm", "bidirectional", unroll=True, return_sequences=True, return_state=True
    )
    layer.build((None, STEPS, INPUT))
    randomize(layer, 11)
    with pytest.raises(UnsupportedFeatureError, match="unroll=True with return_sequences=True"):
        keras_to_canonical(layer)
    x = random_input(12)
    got = run_keras(layer, x, lengths=LENGTHS)
    for half in (layer.forward_layer, layer.backward_layer):
        half.unroll = False  # the same weights, converted without the bug
    expected = run_reference(keras_to_canonical(layer), x, lengths=LENGTHS)
    backward = slice(UNITS, None)
    assert np.abs(got[0][..., backward] - expected[0][..., backward]).max() > 0.05
    np.testing.assert_allclose(got[0][..., :UNITS], expected[0][..., :UNITS], **TOLERANCE)
    for value, reference in zip(got[1:], expected[1:], strict=True):
        np.testing.assert_allclose(value, reference, **TOLERANCE)


# --------------------------------------------------------------------------- conversions


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda: make_layer("lstm", "bidirectional", "ave"), id="lstm-bidirectional-ave"
        ),
        pytest.param(lambda: make_layer("gru", "backward", return_state=True), id="gru-backward"),
        pytest.param(lambda: make_layer("gru_v1", use_bias=False), id="gru_v1-nobias"),
        pytest.param(
            lambda: make_layer("simple_rnn", "bidirectional", None, activation="relu"),
            id="simple_rnn-bidirectional-none-relu",
        ),
        pytest.param(
            lambda: make_layer("lstm", recurrent_activation="hard_sigmoid", dtype="float64"),
            id="lstm-float64-hard_sigmoid",
        ),
        pytest.param(
            lambda: keras.Sequential(
                [
                    keras.Input((None, INPUT)),
                    make_layer("gru", "bidirectional", return_sequences=True),
                    make_layer("lstm", "backward", units=2),
                ]
            ),
            id="sequential-bigru-lstm_backward",
        ),
    ],
)
def test_round_trip_is_bit_exact(make: object) -> None:
    original = make()  # type: ignore[operator]
    members = original.layers if isinstance(original, keras.Sequential) else [original]
    for index, member in enumerate(members):
        randomize(member, seed=20 + index)
    stack = keras_to_canonical(original)
    rebuilt = canonical_to_keras(stack)
    assert type(rebuilt) is type(original)
    before, after = original.get_weights(), rebuilt.get_weights()
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        assert a.dtype == b.dtype
        assert np.array_equal(a, b)
    assert _same_spec(keras_to_canonical(rebuilt), stack)


def _same_spec(a: RecurrentStack, b: RecurrentStack) -> bool:
    """Everything but the weight arrays (dataclass equality on arrays is ambiguous)."""
    fields = ("cell", "input_size", "units", "direction", "merge_mode", "activation")
    fields += ("recurrent_activation", "reset_after")
    flags = ("return_sequences", "return_state", "stateful")
    return all(getattr(a, f) == getattr(b, f) for f in flags) and all(
        getattr(x, f) == getattr(y, f)
        for x, y in zip(a.layers, b.layers, strict=True)
        for f in fields
    )


def test_canonical_split_lstm_bias_is_summed() -> None:
    layer = random_layer(
        np.random.default_rng(13), "lstm", INPUT, UNITS, bias="split", dtype=np.float32
    )
    stack = RecurrentStack((layer,), return_state=True)
    keras_layer = canonical_to_keras(stack, name="folded")
    assert keras_layer.name == "folded"
    np.testing.assert_array_equal(keras_layer.cell.bias.numpy(), layer.weights[0].bias.sum(axis=0))
    assert_matches_reference(keras_layer, random_input(14))


def test_canonical_stateful_stack_needs_a_batch_size() -> None:
    rng = np.random.default_rng(15)
    layers = [random_layer(rng, "gru", size, UNITS, dtype=np.float32) for size in (INPUT, UNITS)]
    stack = RecurrentStack(tuple(layers), stateful=True)
    with pytest.raises(UnsupportedFeatureError, match="batch_size"):
        canonical_to_keras(stack)
    model = canonical_to_keras(stack, batch_size=BATCH)
    assert all(member.stateful for member in model.layers)
    assert_matches_reference(model, random_input(16))


@pytest.mark.parametrize(
    ("keras_name", "canonical"),
    [
        ("tanh", "tanh"),
        ("sigmoid", "sigmoid"),
        ("hard_sigmoid", "hard_sigmoid_keras3"),
        ("relu", "relu"),
        (None, "linear"),
        ("linear", "linear"),
        ("softsign", "softsign"),
        ("softplus", "softplus"),
        ("elu", "elu"),
        ("selu", "selu"),
        ("swish", "silu"),
        ("exponential", "exponential"),
        (keras.ops.tanh, "tanh"),
    ],
)
def test_activation_names(keras_name: object, canonical: str) -> None:
    layer = keras.layers.SimpleRNN(2, activation=keras_name)
    layer.build((None, None, INPUT))
    assert keras_to_canonical(layer).layers[0].activation == canonical


def test_keras2_hard_sigmoid_round_trips_and_differs_from_keras3() -> None:
    rng = np.random.default_rng(17)
    layer = random_layer(
        rng, "lstm", INPUT, UNITS, recurrent_activation="hard_sigmoid_keras2", dtype=np.float32
    )
    stack = RecurrentStack((layer,), return_state=True)
    keras_layer = canonical_to_keras(stack)
    assert keras_layer.cell.recurrent_activation is hard_sigmoid_keras2
    assert keras_to_canonical(keras_layer).layers[0].recurrent_activation == "hard_sigmoid_keras2"
    # Large inputs drive gate pre-activations out of [-2.5, 2.5], where the two functions differ.
    x = random_input(18) * 4
    assert_matches_reference(keras_layer, x)

    keras3_layer = dataclasses.replace(layer, recurrent_activation="hard_sigmoid_keras3")
    keras3 = canonical_to_keras(RecurrentStack((keras3_layer,), return_state=True))
    assert_matches_reference(keras3, x)
    assert np.abs(run_keras(keras3, x)[0] - run_keras(keras_layer, x)[0]).max() > 1e-3

    # Registered with Keras, so configs (and saved models) find the function again.
    restored = keras.layers.deserialize(keras.layers.serialize(keras_layer))
    assert restored.cell.recurrent_activation is hard_sigmoid_keras2


# --------------------------------------------------------------------------- errors


def test_unsupported_activation_is_named() -> None:
    layer = keras.layers.LSTM(2, activation="sparsemax")
    layer.build((None, None, INPUT))
    with pytest.raises(UnsupportedFeatureError, match=r"activation='sparsemax'"):
        keras_to_canonical(layer)


def test_user_function_named_like_keras_is_not_trusted() -> None:
    def tanh(x: object) -> object:
        return x

    layer = keras.layers.GRU(2, recurrent_activation=tanh)
    layer.build((None, None, INPUT))
    with pytest.raises(UnsupportedFeatureError, match="recurrent_activation"):
        keras_to_canonical(layer)


def test_non_recurrent_layer_in_sequential_is_named() -> None:
    model = keras.Sequential(
        [
            keras.Input((None, INPUT)),
            keras.layers.LSTM(2, return_sequences=True),
            keras.layers.Dense(2),
        ]
    )
    with pytest.raises(UnsupportedFeatureError, match="Dense"):
        keras_to_canonical(model)


def test_generic_rnn_inside_bidirectional_is_rejected() -> None:
    layer = keras.layers.Bidirectional(keras.layers.RNN(keras.layers.LSTMCell(2)))
    layer.build((None, None, INPUT))
    with pytest.raises(UnsupportedFeatureError, match="RNN"):
        keras_to_canonical(layer)


def test_bidirectional_halves_that_differ_are_named() -> None:
    layer = keras.layers.Bidirectional(
        keras.layers.LSTM(3), backward_layer=keras.layers.LSTM(2, go_backwards=True)
    )
    layer.build((None, None, INPUT))
    with pytest.raises(UnsupportedFeatureError, match=r"units.*3.*2"):
        keras_to_canonical(layer)


def test_bidirectional_with_reversed_forward_half_is_rejected() -> None:
    layer = keras.layers.Bidirectional(
        keras.layers.LSTM(2, go_backwards=True), backward_layer=keras.layers.LSTM(2)
    )
    layer.build((None, None, INPUT))
    with pytest.raises(UnsupportedFeatureError, match="go_backwards"):
        keras_to_canonical(layer)


def test_custom_backward_layer_keeps_its_weights() -> None:
    backward = keras.layers.GRU(2, go_backwards=True, return_sequences=True)
    backward.build((None, None, INPUT))
    randomize(backward, 19)
    layer = keras.layers.Bidirectional(
        keras.layers.GRU(2, return_sequences=True), backward_layer=backward, merge_mode="sum"
    )
    layer.build((None, None, INPUT))
    randomize(layer.forward_layer, 20)
    stack = keras_to_canonical(layer)
    assert np.array_equal(stack.layers[0].weights[1].kernel, backward.cell.kernel.numpy())
    assert_matches_reference(layer, random_input(21), lengths=LENGTHS)


@pytest.mark.parametrize(
    "make",
    [
        lambda: make_layer("lstm", "backward", recurrent_activation="hard_sigmoid"),
        lambda: make_layer("gru_v1", use_bias=False, return_sequences=True),
        lambda: make_layer("simple_rnn", activation="relu", zero_output_for_mask=True),
        lambda: make_layer("gru", "bidirectional", merge_mode="ave"),
    ],
    ids=["lstm-backward-hard-sigmoid", "gru-v1-no-bias", "rnn-relu-zeroed", "bigru-ave"],
)
def test_a_live_layer_reads_as_the_model_holding_it(make: object) -> None:
    """A layer on its own and inside a model (read through its configuration) agree."""
    from xframe_bilstm.models.live import graph_from_keras

    layer = randomize(make(), 23)
    model = keras.Sequential([keras.Input((None, INPUT)), layer])
    (record,) = [record for record in graph_from_keras(model).layers if record.recurrent]
    from_model, live = record.recurrent, keras_to_canonical(layer).layers[0]
    fields = [field.name for field in dataclasses.fields(live) if field.name != "weights"]
    assert [getattr(live, name) for name in fields] == [
        getattr(from_model, name) for name in fields
    ]
    keras_weights = layer.get_weights()  # kernel, recurrent_kernel[, bias] per direction
    for ours in (live, from_model):
        arrays = [
            array
            for direction in ours.weights
            for array in (direction.kernel, direction.recurrent_kernel, direction.bias)
            if array is not None
        ]
        assert len(arrays) == len(keras_weights)
        assert all(np.array_equal(a, b) for a, b in zip(arrays, keras_weights, strict=True))


def test_a_subclass_of_a_keras_layer_reads_as_that_layer() -> None:
    class CountingGRU(keras.layers.GRU):
        pass

    layer = CountingGRU(UNITS, return_sequences=True)
    layer.build((None, None, INPUT))
    rng = np.random.default_rng(24)
    layer.set_weights([rng.uniform(-0.8, 0.8, w.shape).astype("float32") for w in layer.weights])
    assert keras_to_canonical(layer).layers[0].cell == "gru"
    assert_matches_reference(layer, random_input(25), lengths=LENGTHS)


def test_unbuilt_layer_raises_weight_shape_error() -> None:
    with pytest.raises(WeightShapeError, match="no weights yet"):
        keras_to_canonical(keras.layers.LSTM(2))


def test_zero_output_for_mask_round_trips() -> None:
    layer = keras.layers.LSTM(2, zero_output_for_mask=True)
    layer.build((None, None, INPUT))
    stack = keras_to_canonical(layer)
    assert stack.layers[0].zero_masked_outputs
    assert canonical_to_keras(stack).zero_output_for_mask


def test_backward_layer_given_to_bidirectional_still_converts() -> None:
    # Bidirectional sets zero_output_for_mask on the backward_layer it is given.
    backward = keras.layers.LSTM(2, return_sequences=True, go_backwards=True)
    keras.layers.Bidirectional(keras.layers.LSTM(2, return_sequences=True), backward_layer=backward)
    backward.build((None, None, INPUT))
    assert keras_to_canonical(backward).layers[0].zero_masked_outputs


def test_sequential_layers_must_agree_on_stateful() -> None:
    model = keras.Sequential(
        [
            keras.Input((None, INPUT), batch_size=BATCH),
            keras.layers.LSTM(2, stateful=True, return_sequences=True),
            keras.layers.LSTM(2),
        ]
    )
    with pytest.raises(UnsupportedFeatureError, match="stateful"):
        keras_to_canonical(model)


def test_sequential_takes_no_initial_states() -> None:
    model = keras.Sequential([keras.Input((None, INPUT)), keras.layers.SimpleRNN(2)])
    with pytest.raises(UnsupportedFeatureError, match="initial_state"):
        run_keras(model, random_input(22), initial_states=[np.zeros((BATCH, 2))])


def test_importing_the_adapter_imports_no_framework() -> None:
    code = (
        "import sys, xframe_bilstm.adapters.keras; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'torch') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_canonical_form_owns_its_weights_unless_it_borrows() -> None:
    layer = keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=True))
    layer.build((None, None, INPUT))
    owned, borrowed = keras_to_canonical(layer), keras_to_canonical(layer, borrow=True)
    variables = [layer.forward_layer.cell.kernel, layer.backward_layer.cell.kernel]
    before = [np.array(variable.numpy()) for variable in variables]
    for index, variable in enumerate(variables):
        mine, lent = owned.layers[0].weights[index].kernel, borrowed.layers[0].weights[index].kernel
        assert np.array_equal(mine, before[index]) and np.array_equal(lent, before[index])
        assert not mine.flags.writeable and not lent.flags.writeable
        variable.assign(np.full(variable.shape, 7.0, "float32"))
    # The owned copy keeps the values it read after the variables are assigned.
    for index, expected in enumerate(before):
        assert np.array_equal(owned.layers[0].weights[index].kernel, expected)


def test_setting_weights_of_another_shape_names_the_layer() -> None:
    stack = keras_to_canonical(_built(keras.layers.GRU(UNITS), INPUT))
    other = _built(keras.layers.GRU(UNITS + 1, name="wider"), INPUT)
    with pytest.raises(WeightShapeError, match=r"layer 'wider'.*shape"):
        set_layer_weights(stack.layers[0], other)


def _built(layer: object, features: int) -> object:
    layer.build((None, None, features))  # type: ignore[attr-defined]
    return layer
