"""Keras ⇄ PyTorch conversions: the Keras layer, its torch module and the float64 reference
agree on every configuration, within the tolerance float32 rounding explains."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import (  # noqa: E402
    ToleranceExceededError,
    UnsupportedFeatureError,
    derived_tolerance,
    keras_to_torch,
    output_names,
    run_reference,
    torch_to_keras,
)
from xframe_bilstm.adapters import torch as torch_adapter  # noqa: E402
from xframe_bilstm.adapters.keras import (  # noqa: E402
    fixed_batch_size,
    keras_to_canonical,
    run_keras,
)
from xframe_bilstm.adapters.torch import run_torch  # noqa: E402
from xframe_bilstm.adapters.torch import weights as torch_weights  # noqa: E402
from xframe_bilstm.canonical import initial_state_count  # noqa: E402
from xframe_bilstm.comparison import compare_outputs  # noqa: E402
from xframe_bilstm.factories import random_direction  # noqa: E402
from xframe_bilstm.testing import assert_equivalent  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

KERAS_CLASS = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}


def keras_layer(
    cell,
    units,
    *,
    direction,
    merge_mode,
    return_sequences,
    return_state,
    use_bias,
    reset_after,
    stateful=False,
):
    options = {
        "units": units,
        "return_sequences": return_sequences,
        "return_state": return_state,
        "use_bias": use_bias,
        "stateful": stateful,
    }
    if cell == "gru":
        options["reset_after"] = reset_after
    cls = getattr(keras.layers, KERAS_CLASS[cell])
    if direction == "bidirectional":
        return keras.layers.Bidirectional(cls(**options), merge_mode=merge_mode)
    return cls(**options, go_backwards=direction == "backward")


def halves(layer):
    if isinstance(layer, keras.layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    return [layer]


def randomize(layer, rng, cell, input_size, reset_after):
    """Distinct per-gate scales and non-zero biases in every half of every layer."""
    layers = layer.layers if isinstance(layer, keras.Sequential) else [layer]
    for each in layers:
        for half in halves(each):
            bias = (
                "none"
                if not half.use_bias
                else ("split" if cell == "gru" and reset_after else "single")
            )
            size = half.cell.kernel.shape[0]
            weights = random_direction(rng, cell, size, half.units, bias=bias, dtype=np.float32)
            arrays = [weights.kernel, weights.recurrent_kernel]
            half.cell.set_weights(arrays + ([] if weights.bias is None else [weights.bias]))


def assert_all_agree(stack, x, states, keras_out, torch_out) -> None:
    names = output_names(stack)
    reference = run_reference(stack, x.astype(np.float64), initial_states=states)
    tolerance = derived_tolerance(stack, x, initial_states=states)
    for label, expected, actual in (
        ("keras vs reference", reference, keras_out),
        ("torch vs reference", reference, torch_out),
        ("torch vs keras", keras_out, torch_out),
    ):
        result = compare_outputs(names, expected, actual, atol=tolerance, label=label)
        assert result, result.message()


def _keras_cases():
    cells = [("lstm", None), ("gru", True), ("gru", False), ("simple_rnn", None)]
    shapes = [  # direction, merge_mode, return_sequences, return_state, use_bias, initial states
        ("forward", "concat", True, False, True, False),
        ("forward", "concat", False, True, False, True),
        ("backward", "concat", True, True, True, True),
        ("backward", "concat", False, False, True, False),
        ("bidirectional", "concat", True, True, True, True),
        ("bidirectional", "sum", True, False, False, False),
        ("bidirectional", "mul", False, True, True, False),
        ("bidirectional", "ave", True, False, True, True),
        ("bidirectional", None, True, True, True, False),
        ("bidirectional", None, False, False, True, True),
    ]
    for (cell, reset_after), shape in itertools.product(cells, shapes):
        direction, merge, sequences, state, bias, init = shape
        name = cell if reset_after is None else f"gru_reset_after={reset_after}"
        yield pytest.param(
            cell,
            reset_after,
            *shape,
            id=f"{name}-{direction}-{merge}-seq={sequences}-state={state}-bias={bias}-init={init}",
        )


@pytest.mark.parametrize(
    (
        "cell",
        "reset_after",
        "direction",
        "merge_mode",
        "return_sequences",
        "return_state",
        "use_bias",
        "with_initial_states",
    ),
    list(_keras_cases()),
)
def test_keras_layer_to_torch(
    cell,
    reset_after,
    direction,
    merge_mode,
    return_sequences,
    return_state,
    use_bias,
    with_initial_states,
) -> None:
    rng = np.random.default_rng(11)
    input_size, units = 3, 4
    layer = keras_layer(
        cell,
        units,
        direction=direction,
        merge_mode=merge_mode,
        return_sequences=return_sequences,
        return_state=return_state,
        use_bias=use_bias,
        reset_after=reset_after,
    )
    layer.build((None, None, input_size))
    randomize(layer, rng, cell, input_size, reset_after)

    module = keras_to_torch(layer)  # verifies on its own input too

    stack = keras_to_canonical(layer)
    x = rng.standard_normal((3, 6, input_size)).astype(np.float32)
    states = None
    if with_initial_states:
        states = [
            rng.standard_normal((3, units)).astype(np.float32)
            for _ in range(initial_state_count(stack))
        ]
    keras_out = run_keras(layer, x, initial_states=states)
    torch_out = run_torch(module, x, initial_states=states)
    assert_all_agree(stack, x, states, keras_out, torch_out)


@pytest.mark.parametrize(
    ("cell", "direction"),
    [
        ("lstm", "bidirectional"),
        ("gru", "bidirectional"),
        ("simple_rnn", "forward"),
        ("lstm", "backward"),
    ],
)
def test_keras_sequential_stack_to_torch(cell, direction) -> None:
    rng = np.random.default_rng(5)
    make = lambda sequences: keras_layer(  # noqa: E731
        cell,
        4,
        direction=direction,
        merge_mode="concat",
        return_sequences=sequences,
        return_state=False,
        use_bias=True,
        reset_after=True,
    )
    model = keras.Sequential([keras.Input((None, 3)), make(True), make(True), make(False)])
    randomize(model, rng, cell, 3, True)
    module = keras_to_torch(model)
    if direction != "backward":  # go_backwards layers cannot share one torch module
        assert len(module.rnns) == 1 and module.rnns[0].num_layers == 3
    stack = keras_to_canonical(model)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    assert_all_agree(stack, x, None, run_keras(model, x), run_torch(module, x))


@pytest.mark.parametrize(
    ("activation", "recurrent_activation"),
    [("relu", "hard_sigmoid"), ("tanh", "hard_sigmoid"), ("softsign", "sigmoid")],
)
def test_keras_activations_to_torch(activation, recurrent_activation) -> None:
    rng = np.random.default_rng(2)
    layer = keras.layers.Bidirectional(
        keras.layers.LSTM(
            3,
            activation=activation,
            recurrent_activation=recurrent_activation,
            return_sequences=True,
        )
    )
    layer.build((None, None, 2))
    randomize(layer, rng, "lstm", 2, None)
    module = keras_to_torch(layer)
    stack = keras_to_canonical(layer)
    assert stack.layers[0].recurrent_activation == (
        "hard_sigmoid_keras3" if recurrent_activation == "hard_sigmoid" else recurrent_activation
    )
    # Keras running that activation by name must match the float64 reference's formula for
    # it, and the module must match both: every framework, one derived tolerance.
    x = rng.standard_normal((2, 5, 2)).astype(np.float32) * 2
    assert_equivalent(layer, module, inputs=x)


def test_stateful_keras_layer_carries_states_like_its_module() -> None:
    rng = np.random.default_rng(4)
    layer = keras_layer(
        "lstm",
        3,
        direction="bidirectional",
        merge_mode="concat",
        return_sequences=True,
        return_state=False,
        use_bias=True,
        reset_after=None,
        stateful=True,
    )
    layer.build((2, None, 2))
    randomize(layer, rng, "lstm", 2, None)
    module = keras_to_torch(layer)
    assert module.stateful
    first, second = (rng.standard_normal((2, 4, 2)).astype(np.float32) for _ in range(2))
    for x in (first, second):  # the second call starts from the first call's final states
        keras_out, torch_out = run_keras(layer, x), run_torch(module, x)
    stack = keras_to_canonical(layer)
    states = run_reference(type(stack)(stack.layers, return_state=True), first.astype(np.float64))[
        1:
    ]
    expected = run_reference(stack, second.astype(np.float64), initial_states=states)
    tolerance = derived_tolerance(stack, second, initial_states=states)
    for actual in (keras_out, torch_out):
        result = compare_outputs(["output"], expected, actual, atol=tolerance)
        assert result, result.message()


def _torch_cases():
    for cell, layers, bidirectional, batch_first, bias in itertools.product(
        ["lstm", "gru", "rnn_tanh", "rnn_relu"], [1, 2], [False, True], [False, True], [True, False]
    ):
        if batch_first == bias:  # every value of both, in half the cases
            continue
        yield pytest.param(
            cell,
            layers,
            bidirectional,
            batch_first,
            bias,
            id=f"{cell}-L{layers}-{'bi' if bidirectional else 'uni'}"
            f"-batch_first={batch_first}-bias={bias}",
        )


def _torch_module(cell, layers, bidirectional, batch_first, bias):
    options = {
        "num_layers": layers,
        "bidirectional": bidirectional,
        "batch_first": batch_first,
        "bias": bias,
    }
    if cell.startswith("rnn"):
        return torch.nn.RNN(3, 4, nonlinearity=cell.split("_")[1], **options)
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](3, 4, **options)


@pytest.mark.parametrize(
    ("cell", "layers", "bidirectional", "batch_first", "bias"), list(_torch_cases())
)
def test_torch_module_to_keras(
    cell, layers, bidirectional, batch_first, bias, xframe_seeded_inputs
) -> None:
    torch.manual_seed(0)
    module = _torch_module(cell, layers, bidirectional, batch_first, bias)
    with torch.no_grad():  # non-zero biases that differ between bias_ih and bias_hh
        for name, parameter in module.named_parameters():
            if name.startswith("bias"):
                parameter.uniform_(-0.5, 0.5)
    converted = torch_to_keras(module)
    # The module on every framework and the Keras model on Keras, against the float64
    # reference and each other; Keras takes batch-first input whatever the module's layout.
    assert_equivalent(module, converted, inputs=xframe_seeded_inputs(2, 6, 3))


def test_keras_torch_keras_round_trip_is_bit_exact() -> None:
    rng = np.random.default_rng(8)
    model = keras.Sequential(
        [
            keras.Input((None, 3)),
            keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True)),
            keras.layers.Bidirectional(
                keras.layers.LSTM(4, return_sequences=True), merge_mode="sum"
            ),
        ]
    )
    randomize(model.layers[0], rng, "gru", 3, True)
    randomize(model.layers[1], rng, "lstm", 8, None)
    back = torch_to_keras(keras_to_torch(model))
    for before, after in zip(model.get_weights(), back.get_weights()):
        assert np.array_equal(before, after)


def test_torch_to_keras_folds_the_two_biases() -> None:
    module = torch.nn.LSTM(2, 3)
    with torch.no_grad():
        module.bias_ih_l0.uniform_(-1, 1)
        module.bias_hh_l0.uniform_(-1, 1)
    bias = torch_to_keras(module).cell.bias.numpy()
    expected = (module.bias_ih_l0 + module.bias_hh_l0).detach().numpy()
    np.testing.assert_allclose(bias, expected, rtol=0, atol=1e-7)


def test_verify_catches_a_broken_conversion(monkeypatch) -> None:
    # Load GRU weights without moving z,r,h to torch's r,z,n: the classic porting bug.
    monkeypatch.setattr(torch_weights, "_to_torch_order", lambda array, cell: array)
    layer = keras.layers.GRU(3, return_sequences=True)
    layer.build((None, None, 2))
    randomize(layer, np.random.default_rng(0), "gru", 2, True)
    with pytest.raises(ToleranceExceededError, match="greatest absolute difference") as raised:
        keras_to_torch(layer)
    assert isinstance(raised.value, AssertionError)
    assert keras_to_torch(layer, verify=False) is not None


def test_proj_size_is_refused_at_conversion() -> None:
    with pytest.raises(UnsupportedFeatureError, match="proj_size"):
        torch_to_keras(torch.nn.LSTM(3, 4, proj_size=2))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: keras.layers.LSTM(3, return_sequences=True), id="lstm-carries"),
        pytest.param(
            lambda: keras.layers.GRU(
                3, return_sequences=True, go_backwards=True, return_state=True
            ),
            id="gru-go_backwards",
        ),
        pytest.param(
            lambda: keras.layers.Bidirectional(
                keras.layers.LSTM(3, return_sequences=True, return_state=True), merge_mode="sum"
            ),
            id="bilstm-sum-zeros",
        ),
        pytest.param(
            lambda: keras.layers.Bidirectional(keras.layers.SimpleRNN(3), merge_mode=None),
            id="birnn-last-valid",
        ),
    ],
)
def test_masked_keras_layer_matches_module_given_lengths(make) -> None:
    rng = np.random.default_rng(6)
    layer = make()
    layer.build((None, None, 2))
    inner = layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer
    cell = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple_rnn"}[type(inner).__name__]
    randomize(layer, rng, cell, 2, True)
    module = keras_to_torch(layer)
    x = rng.standard_normal((3, 6, 2)).astype(np.float32)
    lengths = [6, 3, 1]
    stack = keras_to_canonical(layer)
    names = output_names(stack)
    reference = run_reference(stack, x.astype(np.float64), lengths=lengths)
    tolerance = derived_tolerance(stack, x, lengths=lengths)
    for label, actual in (
        ("keras", run_keras(layer, x, lengths=lengths)),
        ("torch", run_torch(module, x, lengths=lengths)),
    ):
        result = compare_outputs(names, reference, actual, atol=tolerance, label=label)
        assert result, result.message()


def test_torch_dropout_between_layers_becomes_keras_dropout() -> None:
    module = torch.nn.GRU(3, 4, num_layers=3, dropout=0.25, batch_first=True)
    model = torch_to_keras(module)  # verifies in inference mode, where dropout is the identity
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["GRU", "Dropout", "GRU", "Dropout", "GRU"]
    assert all(layer.rate == 0.25 for layer in model.layers if type(layer).__name__ == "Dropout")
    # Dropout is the identity at inference, so the Keras model reads back as the torch stack.
    assert keras_to_canonical(model) == torch_adapter.torch_to_canonical(module)


def test_stateful_module_takes_over_mid_sequence() -> None:
    rng = np.random.default_rng(13)
    layer = keras_layer(
        "gru",
        3,
        direction="forward",
        merge_mode="concat",
        return_sequences=True,
        return_state=False,
        use_bias=True,
        reset_after=True,
        stateful=True,
    )
    layer.build((2, None, 2))
    randomize(layer, rng, "gru", 2, True)
    run_keras(layer, rng.standard_normal((2, 4, 2)).astype(np.float32))  # states now non-zero
    module = keras_to_torch(layer)  # verifies from those states, and leaves them in place
    x = rng.standard_normal((2, 3, 2)).astype(np.float32)
    (keras_out,), (torch_out,) = run_keras(layer, x), run_torch(module, x)
    np.testing.assert_allclose(torch_out, keras_out, rtol=0, atol=1e-5)


def test_stateful_round_trip_keeps_the_batch_size() -> None:
    # The case: built for batch 1, it came back fixed to batch 2 (or failed).
    rng = np.random.default_rng(21)
    layer = keras.layers.SimpleRNN(2, stateful=True)
    layer.build((1, None, 3))
    randomize(layer, rng, "simple_rnn", 3, None)
    module = keras_to_torch(layer)
    back = torch_to_keras(module)
    assert fixed_batch_size(back) == 1
    # Both carry their states from call to call, as the original layer does.
    x = rng.standard_normal((1, 6, 3)).astype(np.float32)
    for chunk in (x[:, :2], x[:, 2:4]):
        (expected,) = run_keras(layer, chunk)
        (actual,) = run_keras(back, chunk)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
    module.reset_states()
    again = torch_to_keras(module)
    assert fixed_batch_size(again) == 1
    (from_zeros,) = run_torch(module, x)
    np.testing.assert_allclose(run_keras(again, x)[0], from_zeros, rtol=0, atol=1e-6)


def test_stateful_module_mid_sequence_becomes_a_layer_that_carries_on() -> None:
    rng = np.random.default_rng(22)
    layer = keras.layers.GRU(3, stateful=True, return_sequences=True)
    layer.build((2, None, 2))
    randomize(layer, rng, "gru", 2, True)
    module = keras_to_torch(layer)
    run_torch(module, rng.standard_normal((2, 4, 2)).astype(np.float32))  # states now non-zero
    before = module.carried_states()
    back = torch_to_keras(module)  # verifies from those states and leaves them in place
    for state, kept in zip(before, module.carried_states()):
        np.testing.assert_array_equal(state, kept)
    x = rng.standard_normal((2, 3, 2)).astype(np.float32)
    (expected,) = run_torch(module, x)
    np.testing.assert_allclose(run_keras(back, x)[0], expected, rtol=0, atol=1e-5)


def _swap_gates_when_reading_torch(monkeypatch) -> None:
    """Read torch weights without moving r,z,n to z,r,h: the classic porting bug."""
    monkeypatch.setattr(torch_weights, "_to_canonical_order", lambda array, cell: array)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: torch.nn.GRU(2, 3, batch_first=True), id="native"),
        pytest.param(
            lambda: torch.nn.Sequential(
                torch.nn.GRU(2, 3, batch_first=True), torch.nn.Linear(3, 2)
            ),
            id="sequential",
        ),
    ],
)
def test_verify_catches_a_broken_copy_to_keras(monkeypatch, make) -> None:
    torch.manual_seed(5)
    module = make()
    _swap_gates_when_reading_torch(monkeypatch)
    with pytest.raises(ToleranceExceededError, match="greatest absolute difference"):
        torch_to_keras(module)
    assert torch_to_keras(module, verify=False) is not None


def test_keras_to_torch_module_does_not_follow_the_keras_variables() -> None:
    layer = keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True))
    layer.build((None, None, 3))
    randomize(layer.forward_layer, np.random.default_rng(1), "gru", 3, True)
    module = keras_to_torch(layer)
    kept = {name: p.detach().clone() for name, p in module.named_parameters()}
    for variable in layer.weights:
        variable.assign(np.full(variable.shape, 5.0, "float32"))
    for name, parameter in module.named_parameters():
        assert torch.equal(parameter, kept[name]), name


def test_torch_to_keras_layer_does_not_follow_the_parameters() -> None:
    torch.manual_seed(2)
    module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    layer = torch_to_keras(module)
    kept = [np.array(w) for w in layer.get_weights()]
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.mul_(-3.0)  # in place, as an optimizer step
    for before, after in zip(kept, layer.get_weights(), strict=True):
        assert np.array_equal(before, after)
