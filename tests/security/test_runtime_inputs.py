"""Bad arguments at run time: each gets an error naming the argument, what was expected
and what came; non-finite numbers are marked by the comparison and fail it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xframe_bilstm.canonical import DirectionWeights, RecurrentStack
from xframe_bilstm.errors import UnsupportedFeatureError, WeightShapeError
from xframe_bilstm.factories import random_stack
from xframe_bilstm.masks import check_lengths
from xframe_bilstm.reference import run_reference
from xframe_bilstm.runner import compare

STACK = random_stack(np.random.default_rng(0), "lstm", 3, 2, direction="bidirectional")
GOOD = np.random.default_rng(1).standard_normal((2, 4, 3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"inputs": np.zeros((2, 4))}, r"inputs: .*\(batch, time, 3\), got \(2, 4\)"),
        ({"inputs": np.zeros((2, 4, 5))}, r"inputs: .*got \(2, 4, 5\)"),
        ({"inputs": np.zeros((2, 0, 3))}, r"inputs: expected a non-empty .*got \(2, 0, 3\)"),
        ({"inputs": np.zeros((0, 4, 3))}, r"inputs: expected a non-empty .*got \(0, 4, 3\)"),
        ({"inputs": GOOD.astype(complex)}, "inputs: expected real numbers .*complex128"),
        ({"inputs": np.full((2, 4, 3), "a")}, "inputs: expected real numbers .*<U1"),
        ({"inputs": [[[1.0, 2.0, 3.0]], [[1.0]]]}, "inputs: expected an array of real numbers"),
        ({"steps": 0}, "steps: expected a positive integer, got 0"),
        ({"batch": 0}, "batch: expected a positive integer, got 0"),
        ({"batch": -2}, "batch: expected a positive integer, got -2"),
        ({"steps": 2.5}, "steps: expected a positive integer, got 2.5"),
        ({"lengths": [5, 1]}, r"lengths: each must be in 1..4 .*got \[5, 1\]"),
        ({"lengths": [0, 1]}, r"lengths: each must be in 1..4 .*got \[0, 1\]"),
        ({"lengths": [-1, 2]}, r"lengths: each must be in 1..4 .*got \[-1, 2\]"),
        ({"lengths": [2.0, 1.0]}, "lengths: expected 2 integers .*float64"),
        ({"lengths": [1, 2, 3]}, r"lengths: expected 2 integers .*shape \(3,\)"),
        ({"initial_states": [np.zeros((2, 2))]}, "initial_states: expected 4 arrays .*got 1"),
        (
            {"initial_states": [np.zeros((2, 5))] * 4},
            r"initial_states \(layers\[0\] h_forward\): expected shape \(2, 2\).*got \(2, 5\)",
        ),
        ({"initial_states": [np.zeros((2, 2), complex)] * 4}, "initial_states: expected real"),
    ],
)
def test_bad_arguments_are_named_with_expected_and_received(kwargs: dict, match: str) -> None:
    arguments = {"inputs": GOOD, **kwargs}
    if "batch" in kwargs or "steps" in kwargs:
        del arguments["inputs"]
    with pytest.raises(WeightShapeError, match=match):
        compare(STACK, frameworks=[], **arguments)


def test_unknown_and_unavailable_devices_and_dtypes_are_refused() -> None:
    pytest.importorskip("torch")
    with pytest.raises(UnsupportedFeatureError, match=r"devices: \['tpu:7'\] not available"):
        compare(STACK, frameworks=["torch"], devices=["cpu", "tpu:7"], inputs=GOOD)
    with pytest.raises(ValueError, match="dtypes: 'float8' is not float16"):
        compare(STACK, frameworks=["torch"], dtypes=["float8"], inputs=GOOD)


def test_a_dtype_no_framework_offers_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from xframe_bilstm.frameworks import FRAMEWORKS

    monkeypatch.setattr(FRAMEWORKS["torch"], "dtypes", lambda self, device: ["float32"])
    with pytest.raises(UnsupportedFeatureError, match=r"dtypes: \['float16'\] not offered"):
        compare(STACK, frameworks=["torch"], dtypes=["float32", "float16"], inputs=GOOD)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_marked_and_fail(value: float) -> None:
    pytest.importorskip("torch")
    x = GOOD.copy()
    x[1, 2, 0] = value
    report = compare(STACK, frameworks=["torch"], inputs=x)
    assert not report
    assert report.pairs and all(not pair for pair in report.pairs)
    assert any("inputs (1, first at (1, 2, 0))" in line for line in report.failures)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights_are_marked_and_fail(value: float) -> None:
    pytest.importorskip("torch")
    layer = random_stack(np.random.default_rng(0), "gru", 3, 2).layers[0]
    weights = layer.weights[0]
    recurrent = weights.recurrent_kernel.copy()
    recurrent[0, 1] = value
    damaged = DirectionWeights(weights.kernel, recurrent, weights.bias)
    stack = RecurrentStack((dataclasses.replace(layer, weights=(damaged,)),))
    report = compare(stack, frameworks=["torch"], inputs=GOOD)
    assert not report
    assert any(
        "layers[0].forward.recurrent_kernel (1, first at (0, 1))" in line
        for line in report.failures
    )


def test_reference_and_masks_name_their_arguments() -> None:
    with pytest.raises(WeightShapeError, match=r"x: expected shape \(batch, time, 3\)"):
        run_reference(STACK, np.zeros((2, 3)))
    with pytest.raises(WeightShapeError, match="x: expected at least one batch row"):
        run_reference(STACK, np.zeros((2, 0, 3)))
    with pytest.raises(WeightShapeError, match=r"lengths: each must be in 1..4"):
        check_lengths([9], batch=1, steps=4)


@pytest.mark.torch
def test_converted_module_names_bad_inputs() -> None:
    torch = pytest.importorskip("torch")
    from xframe_bilstm.adapters.torch import KerasRecurrent

    module = KerasRecurrent(STACK)
    cases = [
        (torch.zeros(2, 4), r"x: expected shape \(batch >= 1, time >= 1, 3\), got \(2, 4\)"),
        (torch.zeros(2, 4, 5), r"got \(2, 4, 5\)"),
        (torch.zeros(2, 0, 3), r"got \(2, 0, 3\)"),
        (torch.zeros(0, 4, 3), r"got \(0, 4, 3\)"),
        (torch.zeros(2, 4, 3, dtype=torch.long), "x: expected a floating-point tensor"),
        (np.zeros((2, 4, 3)), "x: expected a floating-point tensor, got ndarray"),
    ]
    for x, match in cases:
        with pytest.raises(WeightShapeError, match=match):
            module(x)
    x = torch.zeros(2, 4, 3, dtype=torch.float64)
    for lengths in ([5, 1], [0, 1], [1]):
        with pytest.raises(WeightShapeError, match="lengths"):
            module(x, lengths=lengths)
    with pytest.raises(WeightShapeError, match="initial_state: expected 4 tensors"):
        module(x, initial_state=[torch.zeros(2, 2)])
