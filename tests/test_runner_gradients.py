"""compare(gradients=True) and assert_equivalent(gradients=True): gradients of the runs
compared with the float64 reference gradient (itself checked against finite differences in
tests/reference/) and with each other, by canonical name."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare, keras_to_torch  # noqa: E402
from xframe_bilstm.testing import assert_equivalent  # noqa: E402

STEPS = 6


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
}


def _gradient_names(report):
    return {array.name for pair in report.gradient_pairs for array in pair.comparison.arrays}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_a_correct_port_passes_with_gradients(kind):
    layer = _built(LAYERS[kind]())
    report = compare(
        layer, against=keras_to_torch(layer), frameworks=["torch"], gradients=True, steps=STEPS
    )
    assert report, report.to_text()
    labels = {pair.label for pair in report.gradient_pairs}
    # The port and the user's Keras layer each against the float64 reference gradient.
    assert "gradients of torch[cpu,float32]@against vs reference[cpu,float64]" in labels
    assert "gradients of keras[cpu,float32]@original vs reference[cpu,float64]" in labels
    names = _gradient_names(report)
    assert "grad inputs" in names
    assert any(n.startswith("grad layers[0].forward.recurrent_kernel (torch") for n in names)
    assert any(n.startswith("grad layers[0].forward.kernel (keras") for n in names)


def test_split_biases_each_compared_with_the_keras_bias():
    layer = _built(keras.layers.LSTM(3, return_sequences=True))
    report = compare(
        layer, against=keras_to_torch(layer), frameworks=["torch"], gradients=True, steps=STEPS
    )
    pair = next(p for p in report.gradient_pairs if p.label.startswith("gradients of torch"))
    biases = [a.name for a in pair.comparison.arrays if ".bias" in a.name]
    assert any("bias_ih_l0" in name for name in biases), biases
    assert any("bias_hh_l0" in name for name in biases), biases


def test_bidirectional_with_lengths_and_initial_states():
    layer = _built(keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True)))
    rng = np.random.default_rng(2)
    states = [rng.standard_normal((4, 3)) for _ in range(4)]
    report = compare(
        layer,
        against=keras_to_torch(layer),
        frameworks=["torch", "keras"],
        lengths=[6, 4, 2, 5],
        initial_states=states,
        gradients=True,
        steps=STEPS,
    )
    assert report, report.to_text()
    names = _gradient_names(report)
    assert "grad initial_states[0] (h_forward)" in names
    assert "grad initial_states[3] (c_backward)" in names
    assert any(n.startswith("grad layers[0].backward.kernel") for n in names)
    pair = report.gradient_pairs[0]
    assert len(pair.timesteps["grad inputs"]) == STEPS


def test_doubled_bias_hh_fails_the_forward_comparison():
    layer = _built(keras.layers.LSTM(3, return_sequences=True))
    port = keras_to_torch(layer)
    with torch.no_grad():
        bias = next(p for n, p in port.named_parameters() if "bias_hh" in n)
        bias.add_(0.5)  # a nonzero bias_hh, doubled as a port might count it twice
        bias.mul_(2.0)
    report = compare(layer, against=port, frameworks=["torch"], gradients=True, steps=STEPS)
    assert not report
    assert any("@against" in pair.label and not pair for pair in report.pairs)


def _weight_hook_port(layer, factor=1.5):
    """The port, with a hook that scales the gradient of the recurrent kernel only."""
    port = keras_to_torch(layer)
    name, parameter = next((n, p) for n, p in port.named_parameters() if "weight_hh" in n)
    parameter.register_hook(lambda grad: grad * factor)
    return port, name


class _ScaledBackward(torch.autograd.Function):
    """The identity forward; the backward scales the gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * 1.01


def _input_backward_port(layer):
    port = keras_to_torch(layer)

    def scale_input(module, arguments):
        return (_ScaledBackward.apply(arguments[0]), *arguments[1:])

    port.register_forward_pre_hook(scale_input)
    return port


def test_matching_forward_with_a_changed_weight_gradient_fails_on_gradients_only():
    layer = _built(keras.layers.GRU(4, return_sequences=True))
    port, name = _weight_hook_port(layer)
    report = compare(layer, against=port, frameworks=["torch"], gradients=True, steps=STEPS)
    assert all(report.pairs), report.to_text()  # the forward agrees
    assert not report
    failed = [pair for pair in report.gradient_pairs if not pair]
    assert failed and all("@against" in pair.label for pair in failed)
    worst = [a.name for pair in failed for a in pair.comparison.arrays if not a.passed]
    assert name.endswith("weight_hh_l0")
    prefix = f"grad layers[0].forward.recurrent_kernel (torch {name}"
    assert len(worst) == len(failed) and all(entry.startswith(prefix) for entry in worst)
    # Without gradients the same port is equivalent: only the gradients tell them apart.
    assert compare(layer, against=port, frameworks=["torch"], steps=STEPS)


def test_assert_equivalent_with_gradients_names_the_input_gradient():
    layer = _built(keras.layers.LSTM(3, return_sequences=True))
    port = _input_backward_port(layer)
    assert_equivalent(layer, port, frameworks=["torch"])  # the forward agrees
    with pytest.raises(AssertionError) as raised:
        assert_equivalent(layer, port, frameworks=["torch"], gradients=True)
    message = str(raised.value)
    assert message.startswith("not equivalent: gradients of torch[cpu,float32]@against vs")
    assert "grad inputs" in message.splitlines()[0]
    assert "worst per time step, grad inputs" in message


def test_the_gradient_of_the_port_is_the_reference_gradient():
    """Independent of the report: torch autograd on the port against the reference."""
    from xframe_bilstm.gradients import draw_cotangents
    from xframe_bilstm.reference import reference_gradients, reference_outputs
    from xframe_bilstm.sources import to_canonical

    layer = _built(keras.layers.SimpleRNN(3, return_sequences=True))
    stack = to_canonical(layer)
    x = np.random.default_rng(0).standard_normal((2, STEPS, 3))
    (cotangent,) = draw_cotangents(reference_outputs(stack, x), seed=0)
    port = keras_to_torch(layer).double()
    inputs = torch.tensor(x, requires_grad=True)
    (output,) = [port(inputs)] if torch.is_tensor(port(inputs)) else port(inputs)
    (output * torch.tensor(cotangent)).sum().backward()
    expected = reference_gradients(stack, x, [cotangent])
    np.testing.assert_allclose(inputs.grad.numpy(), expected.inputs, atol=1e-10)


def test_onnx_columns_are_left_out_of_gradients_only():
    layer = _built(keras.layers.LSTM(3, return_sequences=True))
    report = compare(layer, frameworks=["torch", "onnxruntime"], gradients=True, steps=STEPS)
    assert report, report.to_text()
    assert any(pair.actual.startswith("onnxruntime") for pair in report.pairs)
    assert not any(pair.actual.startswith("onnxruntime") for pair in report.gradient_pairs)
    assert any(
        entry.startswith("onnxruntime: gradients: onnxruntime computes no gradients")
        for entry in report.left_out
    )


def test_a_whole_model_compares_its_gradients():
    inputs = keras.Input((STEPS, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LSTM(3)(inputs)))
    report = compare(model, frameworks=["torch"], gradients=True)
    assert report and report.gradient_pairs, report.to_text()
    assert "grad inputs" in _gradient_names(report)


def test_views_carry_the_gradient_pairs():
    layer = _built(keras.layers.LSTM(3, return_sequences=True))
    port, _ = _weight_hook_port(layer)
    report = compare(layer, against=port, frameworks=["torch"], gradients=True, steps=STEPS)
    data = json.loads(report.to_json())
    assert data["gradient_pairs"] and data["gradient_pairs"][0]["kind"] == "gradients"
    assert "gradient tolerance" in data["gradient_tolerance"]
    assert "| gradients of torch[cpu,float32]@against" in report.to_markdown()
    assert "gradients of torch[cpu,float32]@against" in report.to_junit()
    assert "FAILED | gradients of torch[cpu,float32]@against" in report.to_text()
    plain = json.loads(compare(layer, frameworks=["torch"], steps=STEPS).to_json())
    assert "gradient_pairs" not in plain


def test_explicit_tolerances_apply_to_gradients():
    layer = _built(keras.layers.LSTM(3, return_sequences=True))
    report = compare(layer, frameworks=["torch"], gradients=True, rtol=0.0, atol=1e-12)
    assert not all(report.gradient_pairs)
    assert report.gradient_note == "gradient tolerance: rtol=0.0, atol=1e-12 (given)"
