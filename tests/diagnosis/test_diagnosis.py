"""diagnose() names the cause of a disagreement: each test builds one faulty port on purpose
(Keras layers with random weights, torch modules filled by hand the way people port them) and
checks the code and that the message carries the numbers."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from torch import nn  # noqa: E402

from xframe_bilstm import keras_to_torch  # noqa: E402
from xframe_bilstm.adapters.keras import canonical_to_keras  # noqa: E402
from xframe_bilstm.diagnosis import CODES, Diagnosis, diagnose, format_error  # noqa: E402
from xframe_bilstm.factories import random_direction, random_stack  # noqa: E402
from xframe_bilstm.gates import reorder_gates  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def keras_layer(cell: str, *, seed: int, **options):
    """A built float32 Keras layer whose gates have distinct scales and non-zero biases."""
    stack = random_stack(np.random.default_rng(seed), cell, 3, 4, dtype=np.float32, **options)
    return canonical_to_keras(stack)


@pytest.fixture(scope="module")
def bilstm():
    """Keras Bidirectional LSTM returning its sequence and its four states."""
    return keras_layer("lstm", seed=1, direction="bidirectional", return_state=True)


def hand_port(layer, *, permute=True, reshape=False, bias="ih", swap=False):
    """Copy a Keras layer into its native torch module by hand; each flag is one mistake.

    permute=False skips the GRU z,r -> r,z reorder; reshape=True reshapes kernels instead of
    transposing them; bias="both" copies the Keras bias into bias_ih and bias_hh, "none"
    drops it; swap=True loads the backward half into the forward direction and back.
    """
    bidirectional = isinstance(layer, keras.layers.Bidirectional)
    halves = [layer.forward_layer, layer.backward_layer] if bidirectional else [layer]
    if swap:
        halves.reverse()
    is_gru = isinstance(halves[0], keras.layers.GRU)
    cell = halves[0].cell
    module = (nn.GRU if is_gru else nn.LSTM)(
        cell.kernel.shape[0],
        cell.units,
        batch_first=True,
        bidirectional=bidirectional,
        bias=bias != "none",
    )

    def gates(array):
        return reorder_gates(array, "zrh", "rzn") if is_gru and permute else array

    def to_torch(array):
        array = gates(array)
        return array.reshape(array.shape[::-1]) if reshape else array.T

    with torch.no_grad():
        for suffix, half in zip(("", "_reverse"), halves):
            kernel, recurrent, keras_bias = (w.numpy() for w in half.cell.weights)
            getattr(module, f"weight_ih_l0{suffix}").copy_(torch.tensor(to_torch(kernel)))
            getattr(module, f"weight_hh_l0{suffix}").copy_(torch.tensor(to_torch(recurrent)))
            if bias == "none":
                continue
            if keras_bias.ndim == 2:  # a reset_after GRU: input row, recurrent row
                rows = keras_bias
            else:
                rows = [keras_bias, keras_bias if bias == "both" else np.zeros_like(keras_bias)]
            for name, row in zip(("bias_ih", "bias_hh"), rows):
                getattr(module, f"{name}_l0{suffix}").copy_(torch.tensor(gates(row)))
    return module


def round_to_tf32(tensor):
    """Round float32 values to TF32's 10-bit mantissa (what Ampere+ GPU matmuls read)."""
    bits = tensor.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


class KerasOrderPort(nn.Module):
    """A hand-written port of a Keras Bidirectional LSTM(return_state=True): it returns
    ``output, h_f, c_f, h_b, c_b`` from an nn.LSTM, with an optional mistake."""

    def __init__(self, lstm, fault=None):
        super().__init__()
        self.lstm, self.fault = copy.deepcopy(lstm), fault
        if fault == "tf32":  # weights and inputs rounded, as TF32 matrix products do
            with torch.no_grad():
                for parameter in self.lstm.parameters():
                    parameter.copy_(round_to_tf32(parameter))

    def forward(self, x):
        output, (h_n, c_n) = self.lstm(round_to_tf32(x) if self.fault == "tf32" else x)
        units = self.lstm.hidden_size
        h_backward = output[:, -1, units:] if self.fault == "last_output" else h_n[1]
        return output, h_n[0], c_n[0], h_backward, c_n[1]


def assert_evidence(result: Diagnosis) -> None:
    assert result.code in CODES and set(result.causes) <= set(CODES)
    assert format_error(result.max_abs_error) in result.message
    if result.error_after_fix is not None:
        assert format_error(result.error_after_fix) in result.message


# --------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("port", ["keras_to_torch", "native", "hand_port"])
def test_correct_ports_are_equivalent(bilstm, port) -> None:
    module = keras_to_torch(bilstm, verify=False)
    actual = {"keras_to_torch": module, "native": module.rnns[0], "hand_port": hand_port(bilstm)}
    result = diagnose(bilstm, actual[port])
    assert result.code == "equivalent" and result.causes == ("equivalent",)
    assert result and result.max_abs_error <= result.comparison.arrays[0].atol
    assert [a.name for a in result.comparison.arrays][1:] == [
        "h_forward",
        "c_forward",
        "h_backward",
        "c_backward",
    ]
    assert_evidence(result)


def test_tf32_rounding_is_numerical_only(bilstm) -> None:
    native = keras_to_torch(bilstm, verify=False).rnns[0]
    result = diagnose(bilstm, KerasOrderPort(native, "tf32"))
    assert result.code == "numerical_only" and result
    assert 1e-6 < result.max_abs_error < 1e-2
    assert_evidence(result)


# --------------------------------------------------------------------------- weight level


@pytest.mark.parametrize(
    ("mistake", "code"),
    [
        ({"bias": "both"}, "bias_double_counted"),
        ({"bias": "none"}, "bias_missing"),
        ({"reshape": True}, "kernel_not_transposed"),
        ({"swap": True}, "directions_swapped"),
    ],
    ids=["bias-copied-into-both", "bias-dropped", "kernel-reshaped", "directions-swapped"],
)
def test_weight_mistakes_in_a_hand_port(bilstm, mistake, code) -> None:
    result = diagnose(bilstm, hand_port(bilstm, **mistake))
    assert (result.code, result.causes) == (code, (code,))
    assert not result and result.max_abs_error > 0.05
    assert result.error_after_fix is not None and result.error_after_fix < 1e-5
    assert "layer 0" in result.message
    assert_evidence(result)


@pytest.mark.parametrize(
    ("mistake", "code", "evidence"),
    [
        ({"permute": False}, "gate_order", "z,r,h read as r,z,h"),
        (
            {"reshape": True},
            "kernel_not_transposed",
            "kernel and recurrent_kernel reshaped instead of transposed",
        ),
    ],
    ids=["gates-not-reordered", "kernel-reshaped"],
)
def test_gru_mistakes_in_a_hand_port(mistake, code, evidence) -> None:
    gru = keras_layer("gru", seed=2)
    result = diagnose(gru, hand_port(gru, **mistake))
    assert (result.code, result.causes) == (code, (code,))
    assert evidence in result.message
    assert result.error_after_fix is not None and result.error_after_fix < 1e-5
    assert_evidence(result)


def test_gru_reset_after_false_ported_to_nn_gru() -> None:
    gru = keras_layer("gru", seed=3, reset_after=False)
    result = diagnose(gru, hand_port(gru))  # nn.GRU always resets after the product
    assert result.code == "gru_reset_after_mismatch"
    assert "reset_after is True in actual but False in expected" in result.message
    assert result.error_after_fix is not None and result.error_after_fix < 1e-5
    assert_evidence(result)


def test_keras2_hard_sigmoid_loaded_as_keras3() -> None:
    old = keras_layer("lstm", seed=4, recurrent_activation="hard_sigmoid_keras2")
    loaded = keras.layers.LSTM(4, recurrent_activation="hard_sigmoid", return_sequences=True)
    loaded.build((None, None, 3))
    loaded.set_weights(old.get_weights())
    result = diagnose(old, keras_to_torch(loaded, verify=False))
    assert result.code == "activation_mismatch"
    assert "hard_sigmoid_keras3 in actual but hard_sigmoid_keras2 in expected" in result.message
    assert_evidence(result)


# --------------------------------------------------------------------------- the seed question


def test_seed_question_fresh_weights_then_reversed_backward() -> None:
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).standard_normal((1, 5, 10)).astype(np.float32)
    forward = keras.layers.LSTM(2, return_sequences=True)
    backward = keras.layers.LSTM(2, return_sequences=True, go_backwards=True)
    f_copy, b_copy = copy.deepcopy(forward), copy.deepcopy(backward)
    bidirectional = keras.layers.Bidirectional(forward, backward_layer=backward)
    rng = np.random.default_rng(5)
    for layer in (f_copy, b_copy):
        layer.build((None, None, 10))
        w = random_direction(rng, "lstm", 10, 2, dtype=np.float32)
        layer.set_weights([w.kernel, w.recurrent_kernel, w.bias])

    first = diagnose(bidirectional, (f_copy, b_copy), inputs=x)  # builds bidirectional
    assert first.code == "weights_differ"
    assert first.causes == ("weights_differ", "backward_not_reversed")
    assert "layer 0 forward (kernel by up to" in first.message
    assert_evidence(first)

    bidirectional.forward_layer.set_weights(f_copy.get_weights())
    bidirectional.backward_layer.set_weights(b_copy.get_weights())
    second = diagnose(bidirectional, (f_copy, b_copy), inputs=x)
    assert (second.code, second.causes) == ("backward_not_reversed", ("backward_not_reversed",))
    assert second.message.startswith("flipping the backward half in time makes them agree to")
    assert second.error_after_fix is not None and second.error_after_fix < 1e-6
    assert_evidence(second)

    swapped = diagnose(bidirectional, (b_copy, f_copy), inputs=x)
    assert swapped.causes == ("directions_swapped", "backward_not_reversed")


# --------------------------------------------------------------------------- output level


def test_backward_final_state_taken_from_last_output(bilstm) -> None:
    native = keras_to_torch(bilstm, verify=False).rnns[0]
    result = diagnose(bilstm, KerasOrderPort(native, "last_output"))
    assert result.code == "final_state_from_last_output"
    assert "output[:, 0, H:]" in result.message
    assert result.error_after_fix is not None and result.error_after_fix < 1e-5
    assert_evidence(result)


def test_port_that_runs_over_the_padding(bilstm) -> None:
    native = keras_to_torch(bilstm, verify=False).rnns[0]
    result = diagnose(bilstm, KerasOrderPort(native), lengths=[7, 4])  # it gets no lengths
    assert result.code == "padding_semantics"
    assert "ran over the padding" in result.message
    assert_evidence(result)
    assert diagnose(bilstm, keras_to_torch(bilstm, verify=False), lengths=[7, 4])


def test_unrelated_module_is_unknown(bilstm) -> None:
    torch.manual_seed(0)
    other = nn.LSTM(3, 4, batch_first=True, bidirectional=True)
    result = diagnose(bilstm, KerasOrderPort(other))
    assert (result.code, result.error_after_fix) == ("unknown", None)
    assert_evidence(result)
    summary = result.to_dict()
    assert summary["code"] == "unknown" and summary["comparison"]["passed"] is False
    assert summary["comparison"]["arrays"][0]["name"] == "output"


def test_importing_diagnosis_imports_no_framework() -> None:
    code = (
        "import sys, xframe_bilstm.diagnosis; "
        "print(','.join(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == ""
