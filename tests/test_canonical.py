from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xframe_bilstm import (
    DirectionWeights,
    RecurrentLayer,
    RecurrentStack,
    UnsupportedFeatureError,
    WeightShapeError,
    output_names,
)


def lstm_weights(input_size: int = 3, units: int = 2, bias: object = "single") -> DirectionWeights:
    bias_array = {"single": np.zeros(4 * units), "split": np.zeros((2, 4 * units)), None: None}
    return DirectionWeights(
        np.zeros((input_size, 4 * units)), np.zeros((units, 4 * units)), bias_array[bias]
    )


def test_wrong_kernel_shape_names_field_expected_and_received() -> None:
    with pytest.raises(WeightShapeError) as raised:
        RecurrentLayer("lstm", 4, 2, (lstm_weights(input_size=3),))
    message = str(raised.value)
    assert "weights[0].kernel" in message
    assert "(4, 8)" in message and "(3, 8)" in message


def test_wrong_backward_recurrent_shape_names_direction() -> None:
    bad = DirectionWeights(np.zeros((3, 8)), np.zeros((3, 8)), np.zeros(8))
    with pytest.raises(WeightShapeError, match=r"weights\[1\]\.recurrent_kernel"):
        RecurrentLayer("lstm", 3, 2, (lstm_weights(), bad), direction="bidirectional")


def test_gru_reset_after_needs_two_bias_rows() -> None:
    weights = DirectionWeights(np.zeros((3, 6)), np.zeros((2, 6)), np.zeros(6))
    with pytest.raises(WeightShapeError, match=r"bias: expected shape \(2, 6\)"):
        RecurrentLayer("gru", 3, 2, (weights,), reset_after=True)
    RecurrentLayer("gru", 3, 2, (weights,), reset_after=False)  # one row is right here


def test_direction_count_must_match_direction() -> None:
    with pytest.raises(WeightShapeError, match="expected 2 DirectionWeights"):
        RecurrentLayer("lstm", 3, 2, (lstm_weights(),), direction="bidirectional")


def test_mixed_bias_layouts_are_rejected() -> None:
    with pytest.raises(WeightShapeError, match="same bias layout"):
        RecurrentLayer(
            "lstm", 3, 2, (lstm_weights(), lstm_weights(bias="split")), direction="bidirectional"
        )


@pytest.mark.parametrize(
    ("options", "match"),
    [
        pytest.param({"cell": "peephole_lstm"}, "cell=", id="unknown-cell"),
        pytest.param({"direction": "reverse"}, "direction=", id="unknown-direction"),
        pytest.param({"merge_mode": "max"}, "merge_mode=", id="unknown-merge"),
        pytest.param(
            {"activation": "sparsemax"}, "activation='sparsemax'", id="unknown-activation"
        ),
        pytest.param({"recurrent_activation": "hard_sigmoid"}, "hard_sigmoid", id="ambiguous-hard"),
        pytest.param({"reset_after": True}, "reset_after", id="reset_after-on-lstm"),
    ],
)
def test_unsupported_options_raise(options: dict, match: str) -> None:
    fields = {"cell": "lstm", "input_size": 3, "units": 2, "weights": (lstm_weights(),)}
    with pytest.raises(UnsupportedFeatureError, match=match):
        RecurrentLayer(**{**fields, **options})


def test_weights_are_frozen_copies() -> None:
    kernel = np.zeros((3, 8))
    weights = DirectionWeights(kernel, np.zeros((2, 8)))
    kernel[0, 0] = 1.0
    assert weights.kernel[0, 0] == 0.0
    with pytest.raises(ValueError):
        weights.kernel[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        weights.kernel = kernel  # type: ignore[misc]


def test_integer_weights_are_rejected() -> None:
    with pytest.raises(WeightShapeError, match="floating-point"):
        DirectionWeights(np.zeros((3, 8), dtype=int), np.zeros((2, 8)))


def test_stack_checks_sizes_between_layers() -> None:
    first = RecurrentLayer("lstm", 3, 2, (lstm_weights(), lstm_weights()), "bidirectional")
    second = RecurrentLayer("lstm", 2, 2, (lstm_weights(input_size=2),))
    with pytest.raises(WeightShapeError, match=r"layers\[1\]\.input_size: expected 4"):
        RecurrentStack((first, second))


def test_only_the_last_layer_may_leave_directions_unmerged() -> None:
    first = RecurrentLayer(
        "lstm", 3, 2, (lstm_weights(), lstm_weights()), "bidirectional", merge_mode=None
    )
    second = RecurrentLayer("lstm", 2, 2, (lstm_weights(input_size=2),))
    with pytest.raises(UnsupportedFeatureError, match=r"layers\[1\]"):
        RecurrentStack((first, second))


@pytest.mark.parametrize(
    ("direction", "merge_mode", "return_state", "expected"),
    [
        ("forward", "concat", False, ("output",)),
        ("backward", "concat", True, ("output", "h", "c")),
        (
            "bidirectional",
            "sum",
            True,
            ("output", "h_forward", "c_forward", "h_backward", "c_backward"),
        ),
        ("bidirectional", None, False, ("output_forward", "output_backward")),
    ],
)
def test_output_names_follow_keras_return_order(
    direction: str, merge_mode: str | None, return_state: bool, expected: tuple
) -> None:
    count = 2 if direction == "bidirectional" else 1
    layer = RecurrentLayer("lstm", 3, 2, (lstm_weights(),) * count, direction, merge_mode)
    assert output_names(RecurrentStack((layer,), return_state=return_state)) == expected


def test_equality_compares_array_values() -> None:
    first = lstm_weights()
    assert first == lstm_weights()
    assert first != lstm_weights(bias=None)
    changed = DirectionWeights(first.kernel + 1, first.recurrent_kernel, first.bias)
    assert first != changed
    layer = RecurrentLayer("lstm", 3, 2, (first,))
    assert layer == RecurrentLayer("lstm", 3, 2, (lstm_weights(),))
    assert layer != RecurrentLayer("lstm", 3, 2, (changed,))
