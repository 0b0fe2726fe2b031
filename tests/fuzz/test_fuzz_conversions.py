"""Every generated layer converts and agrees within tolerance, or raises a documented error.

The configuration space: cells, sizes from 1, directions, merge modes, states, masks,
dtypes, and weights of large and tiny magnitudes. A conversion that returns must compute
what its source computes (checked here on a fresh input, independently of the converters'
own verification); one that cannot must raise
:class:`~xframe_bilstm.errors.UnsupportedFeatureError` naming the option. A silent
mismatch fails the test.

Profiles: see ``conftest.py``; ``HYPOTHESIS_PROFILE=long python -m pytest tests/fuzz``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xframe_bilstm.canonical import (
    DirectionWeights,
    RecurrentLayer,
    RecurrentStack,
    layer_state_names,
)
from xframe_bilstm.comparison import derived_tolerance
from xframe_bilstm.errors import UnsupportedFeatureError
from xframe_bilstm.gates import CANONICAL_ORDER
from xframe_bilstm.reference import run_reference

from .conftest import PROFILE

pytestmark = pytest.mark.filterwarnings("ignore")

# Weights far from the usual scale: tiny ones make every gate sit at its midpoint, large
# ones saturate the gates and let float32 rounding grow.
MAGNITUDES = st.sampled_from([1e-6, 0.1, 1.0, 4.0, 30.0])
SIZES = st.integers(1, 4)


def _lengths(draw: st.DrawFn, batch: int, steps: int) -> np.ndarray | None:
    if not draw(st.booleans()):
        return None
    return np.array([draw(st.integers(1, steps)) for _ in range(batch)])


@st.composite
def canonical_cases(draw: st.DrawFn) -> tuple[RecurrentStack, np.ndarray, dict]:
    """A canonical stack of 1-2 layers, its input, and optional lengths and states."""
    cell = draw(st.sampled_from(["lstm", "gru", "simple_rnn"]))
    direction = draw(st.sampled_from(["forward", "backward", "bidirectional"]))
    reset_after = draw(st.booleans()) if cell == "gru" else None
    bias = draw(st.sampled_from(["none", "single", "split"]))
    if cell == "gru":  # GRU's layout follows reset_after (Keras's two biases, or one)
        bias = draw(st.sampled_from(["none", "split" if reset_after else "single"]))
    activation = draw(st.sampled_from(["tanh", "relu", "sigmoid", "linear"]))
    gate = None if cell == "simple_rnn" else draw(st.sampled_from(["sigmoid", "hard_sigmoid"]))
    gate = {"hard_sigmoid": "hard_sigmoid_keras3"}.get(gate, gate) if gate else None
    scale = draw(MAGNITUDES)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    layers = []
    size = draw(SIZES)
    for index in range(draw(st.integers(1, 2))):
        units = draw(SIZES)
        gates = len(CANONICAL_ORDER[cell]) * units
        shape = {"none": None, "single": (gates,), "split": (2, gates)}[bias]

        def weights(size: int = size, units: int = units, gates: int = gates, shape=shape):
            return DirectionWeights(
                (rng.standard_normal((size, gates)) * scale).astype(dtype),
                (rng.standard_normal((units, gates)) * scale).astype(dtype),
                None if shape is None else (rng.standard_normal(shape) * scale).astype(dtype),
            )

        last = index == 1
        layer = RecurrentLayer(
            cell,
            size,
            units,
            tuple(weights() for _ in range(2 if direction == "bidirectional" else 1)),
            direction=direction,
            merge_mode=draw(st.sampled_from(["concat", "sum", "mul", "ave"])) if last else "concat",
            activation=activation,
            recurrent_activation=gate,
            reset_after=reset_after,
        )
        layers.append(layer)
        size = layer.output_size
    stack = RecurrentStack(
        tuple(layers), return_sequences=draw(st.booleans()), return_state=draw(st.booleans())
    )
    batch, steps = draw(SIZES), draw(st.integers(1, 6))
    x = rng.standard_normal((batch, steps, stack.input_size)).astype(dtype)
    extra: dict = {"lengths": _lengths(draw, batch, steps)}
    if draw(st.booleans()):  # every layer's initial states, in Keras order
        extra["initial_states"] = [
            (rng.standard_normal((batch, layer.units)) * draw(MAGNITUDES)).astype(dtype)
            for layer in stack.layers
            for _ in layer_state_names(layer)
        ]
    return stack, x, extra


def _assert_close(name: str, expected, actual, tolerance: float) -> None:
    expected, actual = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    assert expected.shape == actual.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    error = float(np.max(np.abs(expected - actual), initial=0.0))
    assert error <= tolerance, f"{name}: max abs error {error:.3g} > allowed {tolerance:.3g}"


@pytest.mark.torch
@settings(PROFILE, max_examples=PROFILE.max_examples * 4)
@given(canonical_cases())
def test_canonical_layers_run_on_torch_as_the_reference_says(case) -> None:
    """The torch module of any canonical stack computes what the float64 reference does."""
    torch = pytest.importorskip("torch")
    from xframe_bilstm.adapters.torch import KerasRecurrent

    stack, x, extra = case
    try:
        module = KerasRecurrent(stack)
    except UnsupportedFeatureError as error:
        assert str(error)  # documented refusal, with a reason
        return
    expected = run_reference(stack, x, **extra)
    tolerance = derived_tolerance(stack, x, dtype=x.dtype, **extra)
    with torch.no_grad():
        result = module(
            torch.from_numpy(x),
            initial_state=None
            if extra.get("initial_states") is None
            else [torch.from_numpy(s) for s in extra["initial_states"]],
            lengths=None if extra["lengths"] is None else torch.from_numpy(extra["lengths"]),
        )
    actual = result if isinstance(result, tuple) else (result,)
    assert len(actual) == len(expected)
    for index, (want, got) in enumerate(zip(expected, actual)):
        _assert_close(f"output {index}", want, got.numpy(), tolerance)


@st.composite
def torch_modules(draw: st.DrawFn):
    torch = pytest.importorskip("torch")
    kind = draw(st.sampled_from(["LSTM", "GRU", "RNN"]))
    options = {
        "input_size": draw(SIZES),
        "hidden_size": draw(SIZES),
        "num_layers": draw(st.integers(1, 2)),
        "bidirectional": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "batch_first": draw(st.booleans()),
    }
    if kind == "RNN":
        options["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    if kind == "LSTM" and options["hidden_size"] > 1 and draw(st.integers(0, 4)) == 0:
        options["proj_size"] = 1  # documented refusal
    torch.manual_seed(draw(st.integers(0, 2**16)))
    module = getattr(torch.nn, kind)(**options)
    scale = draw(MAGNITUDES)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.mul_(scale)
    if draw(st.booleans()):
        module = module.double()
    return module


@pytest.mark.torch
@pytest.mark.keras
@settings(PROFILE)
@given(torch_modules(), st.integers(1, 3), st.integers(1, 5))
def test_torch_modules_convert_to_keras_exactly_or_refuse(module, batch: int, steps: int) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("keras")
    from xframe_bilstm import torch_to_keras
    from xframe_bilstm.sources import to_canonical

    try:
        layer = torch_to_keras(module)
    except UnsupportedFeatureError as error:
        assert "proj_size" in str(error)
        return
    dtype = np.float64 if next(module.parameters()).dtype == torch.float64 else np.float32
    x = np.random.default_rng(steps).standard_normal((batch, steps, module.input_size))
    x = x.astype(dtype)
    with torch.no_grad():
        torch_x = torch.from_numpy(x if module.batch_first else x.transpose(1, 0, 2).copy())
        output = module(torch_x)[0].numpy()
    if not module.batch_first:
        output = output.transpose(1, 0, 2)
    keras_output = np.asarray(layer(x))
    keras_output = keras_output[0] if isinstance(keras_output, (list, tuple)) else keras_output
    stack = to_canonical(module)
    tolerance = derived_tolerance(stack, x, dtype=np.float32)
    _assert_close("output", output, keras_output, tolerance)


@st.composite
def keras_layers(draw: st.DrawFn):
    keras = pytest.importorskip("keras")
    cell = draw(st.sampled_from(["LSTM", "GRU", "SimpleRNN"]))
    options = {
        "units": draw(SIZES),
        "activation": draw(st.sampled_from(["tanh", "relu", "sigmoid", "linear", "softsign"])),
        "use_bias": draw(st.booleans()),
        "return_sequences": draw(st.booleans()),
        "return_state": draw(st.booleans()),
        "go_backwards": draw(st.booleans()),
    }
    if cell != "SimpleRNN":
        options["recurrent_activation"] = draw(st.sampled_from(["sigmoid", "hard_sigmoid"]))
    if cell == "GRU":
        options["reset_after"] = draw(st.booleans())
    if draw(st.integers(0, 5)) == 0:
        options["activation"] = "gelu"  # documented refusal
    bidirectional = draw(st.booleans())
    if bidirectional:
        options["go_backwards"] = False  # Keras refuses a backward forward half itself
    layer = getattr(keras.layers, cell)(**options)
    if bidirectional:
        merge = draw(st.sampled_from(["concat", "sum", "mul", "ave", None]))
        layer = keras.layers.Bidirectional(layer, merge_mode=merge)
    size, scale = draw(SIZES), draw(MAGNITUDES)
    layer.build((None, None, size))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    layer.set_weights([rng.standard_normal(w.shape) * scale for w in layer.get_weights()])
    return layer, size


@pytest.mark.torch
@pytest.mark.keras
@settings(PROFILE)
@given(keras_layers(), st.integers(1, 3), st.integers(1, 5), st.booleans())
def test_keras_layers_convert_to_torch_exactly_or_refuse(
    built, batch: int, steps: int, masked: bool
) -> None:
    torch = pytest.importorskip("torch")
    from xframe_bilstm import keras_to_torch
    from xframe_bilstm.sources import to_canonical

    layer, size = built
    try:
        module = keras_to_torch(layer)
    except UnsupportedFeatureError as error:
        assert "gelu" in str(error)
        return
    rng = np.random.default_rng(batch * 7 + steps)
    x = rng.standard_normal((batch, steps, size)).astype(np.float32)
    lengths = rng.integers(1, steps + 1, batch) if masked else None
    mask = None if lengths is None else np.arange(steps)[None, :] < lengths[:, None]
    expected = layer(x, mask=mask)
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    with torch.no_grad():
        actual = module(
            torch.from_numpy(x), lengths=None if lengths is None else torch.from_numpy(lengths)
        )
    actual = actual if isinstance(actual, tuple) else (actual,)
    stack = to_canonical(layer)
    tolerance = derived_tolerance(stack, x, lengths=lengths)
    assert len(actual) == len(expected)
    for index, (want, got) in enumerate(zip(expected, actual)):
        _assert_close(f"output {index}", np.asarray(want), got.numpy(), tolerance)
