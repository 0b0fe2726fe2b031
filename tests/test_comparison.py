from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm.comparison import (
    Noise,
    check_port,
    compare_arrays,
    compare_outputs,
    derived_tolerance,
    measure_noise,
)
from xframe_bilstm.errors import ToleranceExceededError
from xframe_bilstm.factories import random_stack
from xframe_bilstm.reference import reference_outputs


def test_identical_arrays_pass_with_zero_error() -> None:
    result = compare_arrays("output", np.ones((2, 3)), np.ones((2, 3)), atol=0.0)
    assert result and result.max_abs_error == 0.0 and result.mismatched == 0


def test_worst_element_is_located_and_counted() -> None:
    expected = np.zeros((2, 3))
    actual = expected.copy()
    actual[1, 2], actual[0, 0] = 0.5, 1e-9
    result = compare_arrays("output", expected, actual, atol=1e-6)
    assert not result
    assert (result.worst_index, result.mismatched, result.max_abs_error) == ((1, 2), 1, 0.5)
    assert "mismatched elements 1 / 6" in result.describe()
    assert "0.5 at index (1, 2)" in result.describe()


def test_relative_tolerance_scales_with_expected() -> None:
    assert compare_arrays("x", np.array([1000.0]), np.array([1000.5]), atol=0.0, rtol=1e-3)
    assert not compare_arrays("x", np.array([1.0]), np.array([1.5]), atol=0.0, rtol=1e-3)


def test_shape_is_checked_before_values() -> None:
    result = compare_arrays("h", np.zeros((2, 3)), np.zeros((3, 2)), atol=1.0)
    assert not result and "shape (3, 2) where (2, 3) was expected" in result.describe()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_fail_even_when_equal(bad: float) -> None:
    values = np.array([1.0, bad])
    result = compare_arrays("output", values, values.copy(), atol=1.0)
    assert not result and "non-finite" in result.describe()


def test_difference_is_taken_in_float64() -> None:
    expected = np.array([1.0], dtype=np.float32)
    actual = np.array([1.0 + 2**-20], dtype=np.float32)
    assert compare_arrays("x", expected, actual, atol=0.0).max_abs_error == 2**-20


def test_output_count_mismatch_fails() -> None:
    result = compare_outputs(["output", "h"], [np.ones(1)] * 2, [np.ones(1)], atol=1.0)
    assert not result and "different numbers of outputs" in result.message()


def test_derived_tolerance_grows_with_weight_scale_and_length() -> None:
    rng = np.random.default_rng(0)
    stack = random_stack(rng, "lstm", 4, 8, direction="bidirectional")
    small = derived_tolerance(stack, rng.standard_normal((2, 5, 4)))
    scaled = type(stack)(
        tuple(
            type(layer)(
                layer.cell,
                layer.input_size,
                layer.units,
                tuple(type(w)(w.kernel * 6, w.recurrent_kernel * 6, w.bias) for w in layer.weights),
                layer.direction,
                layer.merge_mode,
            )
            for layer in stack.layers
        )
    )
    large = derived_tolerance(scaled, rng.standard_normal((2, 200, 4)) * 3)
    assert 0 < small < 1e-5
    assert large > 3 * small


def test_derived_tolerance_for_float64_is_far_tighter() -> None:
    rng = np.random.default_rng(0)
    stack = random_stack(rng, "gru", 3, 4)
    x = rng.standard_normal((2, 6, 3))
    assert derived_tolerance(stack, x, dtype=np.float64) < 1e-6 * derived_tolerance(stack, x)


def test_relative_error_ignores_exact_zeros_of_expected() -> None:
    # An exact zero (a padded step, say) would make any difference relative to it enormous.
    result = compare_arrays("y", np.array([0.0, 2.0]), np.array([1e-9, 2.5]), atol=1.0, rtol=0.0)
    assert result.max_rel_error == pytest.approx(0.25)
    assert "greatest relative difference 0.25 (where expected ≠ 0)" in result.describe()


@pytest.mark.parametrize(
    ("expected", "actual"),
    [([np.inf], [1.0]), ([1.0], [np.inf]), ([-np.inf], [-1e308])],
    ids=["expected-inf", "actual-inf", "expected-minus-inf"],
)
def test_an_infinity_on_one_side_fails_under_a_relative_tolerance(expected, actual) -> None:
    # With an infinite expected value, atol + rtol·|expected| is infinite: only the
    # non-finite check stands between this comparison and a pass.
    result = compare_arrays("output", np.array(expected), np.array(actual), atol=1e-6, rtol=1e-3)
    assert not result.passed and not result
    assert "non-finite values" in result.describe() and "1 infinite" in result.describe()
    assert not compare_outputs(["output"], [np.array(expected)], [np.array(actual)], atol=1e-6)


@pytest.mark.parametrize("side", ["expected", "actual"])
def test_a_nan_on_one_side_only_fails_and_is_named(side: str) -> None:
    values = np.array([0.5, 1.0, -2.0])
    damaged = values.copy()
    damaged[1] = np.nan
    expected, actual = (damaged, values) if side == "expected" else (values, damaged)
    result = compare_arrays("output", expected, actual, atol=1.0, rtol=1.0)
    assert not result
    assert f"{side} has 1 (1 NaN, 0 infinite)" in result.describe()


def test_nan_on_both_sides_at_the_same_place_fails() -> None:
    # Two models that both produce NaN there agree on nothing: the comparison fails.
    values = np.array([[0.5, np.nan], [1.0, 2.0]])
    result = compare_arrays("output", values, values.copy(), atol=np.inf, rtol=np.inf)
    assert not result
    assert result.describe() == (
        "FAILED | output: non-finite values: expected has 1 (1 NaN, 0 infinite), "
        "actual has 1 (1 NaN, 0 infinite)"
    )


def test_the_non_finite_flag_alone_fails_a_comparison() -> None:
    # Every element within tolerance (inf <= inf): the flag is what fails it.
    result = compare_arrays(
        "output", np.array([np.inf, 1.0]), np.array([5.0, 1.0]), atol=0.0, rtol=1.0
    )
    assert result.mismatched == 0 and result.problem is not None
    assert not result.passed


def test_check_port_takes_the_noise_measured_before_the_port_was_built() -> None:
    rng = np.random.default_rng(2)
    stack = random_stack(rng, "lstm", 3, 4)
    x = rng.standard_normal((2, 5, 3))
    expected = list(reference_outputs(stack, x))
    noise = measure_noise(stack, x)
    # Off by a quarter of the derived tolerance: the same verdict with the noise given or not.
    nudged = [expected[0] + noise.tolerance() / 4]
    check_port(stack, x, expected, nudged, label="a vs b")
    check_port(stack, x, expected, nudged, label="a vs b", noise=noise)
    # The noise given is the one used: a drift of 1e-5 allows ten times that; none at all
    # leaves the floor, 4 float32 ulps of the largest value (at least 1: 4.8e-7).
    off = [expected[0] + 1e-5]
    check_port(stack, x, expected, off, label="a vs b", noise=Noise(1e-5, 1))
    with pytest.raises(ToleranceExceededError, match="a vs b"):
        check_port(stack, x, expected, off, label="a vs b", noise=Noise(0, 1))
