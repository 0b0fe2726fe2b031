"""Gradients on Keras's JAX and PyTorch backends (``keras-jax``, ``keras-torch``), each taken
in the column's own process by the backend's autodiff, against the float64 reference
gradient (checked against finite differences in tests/reference/), PyTorch's autograd and
each other."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare, keras_to_torch  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.factories import random_stack  # noqa: E402
from xframe_bilstm.frameworks import FRAMEWORKS, RunSpec  # noqa: E402

pytestmark = pytest.mark.skipif(
    not FRAMEWORKS["keras-jax"].available(), reason="pip install '.[keras-jax]'"
)

STEPS = 6
COLUMNS = ["keras-jax", "keras-torch", "torch"]


def _built(layer, features=3):
    layer.build((None, STEPS, features))
    rng = np.random.default_rng(1)
    layer.set_weights([rng.uniform(-0.5, 0.5, w.shape) for w in layer.get_weights()])
    return layer


LAYERS = {
    "lstm": lambda: keras.layers.LSTM(4, return_sequences=True),
    "gru-reset-after": lambda: keras.layers.GRU(4, return_sequences=True, reset_after=True),
    "gru-reset-before": lambda: keras.layers.GRU(4, return_sequences=True, reset_after=False),
    "simple_rnn": lambda: keras.layers.SimpleRNN(4, return_sequences=True),
    "bidirectional-lstm": lambda: keras.layers.Bidirectional(
        keras.layers.LSTM(3, return_sequences=True, return_state=True)
    ),
}


def _failures(report) -> str:
    return "\n".join([*report.lines(), *(f"{r.label}: {r.error}" for r in report.runs)])


def _pair(report, label):
    return next(pair for pair in report.gradient_pairs if pair.label == label)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_both_backends_agree_with_autograd_and_the_reference_with_lengths(kind: str) -> None:
    layer = _built(LAYERS[kind]())
    report = compare(
        layer, frameworks=COLUMNS, gradients=True, steps=STEPS, batch=3, lengths=[6, 2, 4]
    )
    assert report, _failures(report)
    assert not report.gradient_failures
    for column in ("keras-jax", "keras-torch"):
        pair = _pair(report, f"gradients of {column}[cpu,float32] vs reference[cpu,float64]")
        names = [array.name for array in pair.comparison.arrays]
        assert "grad inputs" in names
        # Every weight by meaning, with the Keras variable it was read from beside.
        kernels = [n for n in names if ".recurrent_kernel (keras " in n]
        directions = 2 if kind.startswith("bidirectional") else 1
        assert len(kernels) == directions, names
    assert _pair(report, "gradients of keras-torch[cpu,float32] vs keras-jax[cpu,float32]")


def test_initial_states_get_their_gradients_on_both_backends() -> None:
    layer = _built(keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True)))
    states = [np.random.default_rng(5 + i).standard_normal((2, 3)) for i in range(2)]
    report = compare(
        layer, frameworks=COLUMNS, gradients=True, steps=STEPS, batch=2, initial_states=states
    )
    assert report, _failures(report)
    pair = _pair(report, "gradients of keras-jax[cpu,float32] vs reference[cpu,float64]")
    names = [array.name for array in pair.comparison.arrays]
    assert [n for n in names if n.startswith("grad initial_states[")] == [
        "grad initial_states[0] (h_forward)",
        "grad initial_states[1] (h_backward)",
    ]


def test_a_sequential_model_differentiates_rebuilt_and_as_loaded_on_each_backend() -> None:
    model = keras.Sequential(
        [
            keras.Input((None, 3)),
            keras.layers.LSTM(4, return_sequences=True),
            keras.layers.GRU(2, return_sequences=True),
        ]
    )
    report = compare(model, frameworks=COLUMNS[:2], gradients=True, steps=STEPS)
    assert report, _failures(report)
    labels = {pair.label for pair in report.gradient_pairs}
    for column in ("keras-jax", "keras-torch"):
        assert f"gradients of {column}[cpu,float32]@original vs reference[cpu,float64]" in labels
        assert f"gradients of {column}[cpu,float32] vs reference[cpu,float64]" in labels


def test_a_gradient_hook_on_a_weight_fails_on_that_weight_against_both_backends() -> None:
    layer = _built(keras.layers.LSTM(4, return_sequences=True))
    port = keras_to_torch(layer)
    name, parameter = next((n, p) for n, p in port.named_parameters() if "weight_hh" in n)
    parameter.register_hook(lambda grad: grad * 1.5)
    report = compare(layer, against=port, frameworks=COLUMNS, gradients=True, steps=STEPS)
    assert all(report.pairs), _failures(report)  # the forward agrees
    assert not report
    for column in ("keras-jax", "keras-torch"):
        pair = _pair(report, f"gradients of torch[cpu,float32]@against vs {column}[cpu,float32]")
        assert not pair
        failed = [array.name for array in pair.comparison.arrays if not array.passed]
        assert failed and all(
            n.startswith(f"grad layers[0].forward.recurrent_kernel (torch {name}") for n in failed
        ), failed
    # The two backends still agree with each other and with the reference.
    assert _pair(report, "gradients of keras-torch[cpu,float32] vs keras-jax[cpu,float32]")
    assert _pair(report, "gradients of keras-jax[cpu,float32] vs reference[cpu,float64]")


def test_a_sequential_with_initial_states_is_left_out_of_gradients_by_name() -> None:
    """Its Keras layers take no initial_state through a Sequential: the refusal in the
    child process leaves the run out, as the TensorFlow column's does, with the reason."""
    stack = random_stack(np.random.default_rng(0), "lstm", 3, 4, num_layers=2)
    x = np.random.default_rng(1).standard_normal((2, 5, 3))
    states = [np.zeros((2, 4))] * 4
    framework = FRAMEWORKS["keras-torch"]()
    cotangents = [np.ones((2, 5, 4))]
    with pytest.raises(UnsupportedFeatureError, match="Sequential takes no initial_state"):
        framework.gradients(
            stack,
            x,
            RunSpec("keras-torch", "cpu", "float32"),
            cotangents,
            initial_states=states,
            lengths=None,
        )
