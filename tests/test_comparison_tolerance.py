"""The derived tolerance is pinned to its definition, and a port off by a fixed amount fails.

The definition (:class:`xframe_bilstm.comparison.Noise`; ``benchmarks/results/tolerance.md``
measures how far correct frameworks drift against it): run the reference in float32 and in
float64 on the model and input; the largest distance between them is the float32 drift.
A correct implementation of relative precision ``eps`` may lie ten times that drift
(scaled to ``eps``) from the exact values, but never less than 4 units in the last place of
the largest expected value (at least 1) and never more than 1 % of it (or 8 units in the
last place, where that is more); two runs may differ by the sum of their allowances. The
constants are written out here, not imported, so a change to any of them fails these tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer, RecurrentStack
from xframe_bilstm.comparison import Noise, compare_arrays, derived_tolerance
from xframe_bilstm.factories import random_stack
from xframe_bilstm.reference import run_reference

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)


def drift_and_scale(stack: RecurrentStack, x: np.ndarray) -> tuple[float, float]:
    """The float32 reference's largest distance from the float64 one, and the scale."""
    exact = run_reference(stack, x, dtype=np.float64)
    rounded = run_reference(stack, x, dtype=np.float32)
    drift = max(float(np.abs(r.astype(np.float64) - e).max()) for r, e in zip(rounded, exact))
    scale = max(1.0, max(float(np.abs(e).max()) for e in exact))
    return drift, scale


def defined_tolerance(drift: float, scale: float, eps: float = EPS32) -> float:
    """10 × drift (scaled to ``eps``), clipped to [4 ulps, max(1 %, 8 ulps)] of the scale."""
    floor = 4.0 * eps * scale
    cap = max(0.01, 8.0 * eps) * scale
    return min(max(10.0 * drift * eps / EPS32, floor), cap)


def chaotic_rnn(rng: np.random.Generator, units: int = 16) -> RecurrentStack:
    """A tanh RNN whose recurrent gain (3) makes float32 and float64 runs part entirely."""
    weights = DirectionWeights(
        rng.standard_normal((2, units)),
        rng.standard_normal((units, units)) * 3.0 / np.sqrt(units),
        np.zeros(units),
    )
    layer = RecurrentLayer("simple_rnn", 2, units, (weights,), recurrent_activation=None)
    return RecurrentStack((layer,))


def test_in_the_drift_regime_the_tolerance_is_ten_times_the_float32_drift() -> None:
    rng = np.random.default_rng(0)
    stack = random_stack(rng, "lstm", 4, 8, direction="bidirectional", num_layers=2)
    x = rng.standard_normal((3, 40, 4))
    drift, scale = drift_and_scale(stack, x)
    # The premise: neither the floor nor the cap decides here.
    assert 4 * EPS32 * scale < 10 * drift < 0.01 * scale
    assert derived_tolerance(stack, x) == pytest.approx(10.0 * drift, rel=1e-12)
    assert derived_tolerance(stack, x) == pytest.approx(defined_tolerance(drift, scale), rel=1e-12)


def test_float64_scales_the_float32_drift_by_machine_epsilon() -> None:
    rng = np.random.default_rng(1)
    stack = random_stack(rng, "gru", 3, 5)
    x = rng.standard_normal((2, 12, 3))
    drift, scale = drift_and_scale(stack, x)
    expected = defined_tolerance(drift, scale, EPS64)
    assert derived_tolerance(stack, x, dtype=np.float64) == pytest.approx(expected, rel=1e-12)


def test_where_float32_is_exact_the_floor_is_four_ulps_of_the_scale() -> None:
    # h_t = x_t/2 + h_{t-1}/2 with x = 4: 2, 3, 3.5, 3.75, all exact in float32.
    weights = DirectionWeights(np.full((1, 1), 0.5), np.full((1, 1), 0.5), np.zeros(1))
    layer = RecurrentLayer(
        "simple_rnn", 1, 1, (weights,), activation="linear", recurrent_activation=None
    )
    stack = RecurrentStack((layer,))
    x = np.full((1, 4, 1), 4.0)
    assert drift_and_scale(stack, x) == (0.0, 3.75)
    assert derived_tolerance(stack, x) == pytest.approx(4 * EPS32 * 3.75, rel=1e-12)


def test_past_one_percent_of_the_scale_the_tolerance_stops_growing() -> None:
    stack = chaotic_rnn(np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((2, 300, 2))
    drift, scale = drift_and_scale(stack, x)
    # The premise: ten times the drift is past even a 10 % cap.
    assert 10 * drift > 0.1 * scale
    tolerance = derived_tolerance(stack, x)
    assert tolerance == pytest.approx(0.01 * scale, rel=1e-12)
    # A port off by 5 % of the scale everywhere is wrong, however noisy the model.
    expected = run_reference(stack, x)[0]
    assert not compare_arrays("output", expected, expected + 0.05 * scale, atol=tolerance)


@pytest.mark.parametrize(
    ("noise", "epsilon", "expected"),
    [
        (Noise(1e-7, 1.0), EPS32, 1e-6),  # ten times the drift
        (Noise(0.0, 2.0), EPS32, 4 * EPS32 * 2.0),  # the floor, scaled
        (Noise(1.0, 3.0), EPS32, 0.03),  # the cap: 1 % of the scale
        (Noise(1.0, 3.0), 2.0**-7, 8 * 2.0**-7 * 3.0),  # bfloat16: 8 ulps is past 1 %
        (Noise(1e-7, 1.0), 2.0**-10, 10 * 1e-7 * 2.0**-10 / EPS32),  # float16: scaled drift
    ],
    ids=["drift", "floor", "cap", "bfloat16-cap", "float16-drift"],
)
def test_noise_tolerance_follows_its_definition(
    noise: Noise, epsilon: float, expected: float
) -> None:
    assert noise.tolerance(epsilon) == pytest.approx(expected, rel=1e-12)
    assert noise.tolerance(epsilon) == pytest.approx(
        defined_tolerance(noise.float32, noise.scale, epsilon), rel=1e-12
    )


# A port whose outputs are all off by this much is wrong; it is ~30 times the float32 drift
# of the layer below, so ten times the drift catches it and a hundred times would not.
OFFSET = 3e-6


@pytest.mark.torch
@pytest.mark.keras
def test_a_torch_port_off_by_a_fixed_amount_fails_verification(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    from xframe_bilstm import ToleranceExceededError, keras_to_torch
    from xframe_bilstm.adapters import keras as keras_adapter
    from xframe_bilstm.adapters import torch as torch_adapter
    from xframe_bilstm.converters import verification_input

    layer = keras.layers.LSTM(8, return_sequences=True)
    layer.build((None, None, 3))
    rng = np.random.default_rng(0)
    layer.set_weights(
        [(rng.standard_normal(w.shape) * 0.8).astype("float32") for w in layer.get_weights()]
    )
    x = verification_input(keras_adapter.keras_to_canonical(layer))
    drift, scale = drift_and_scale(keras_adapter.keras_to_canonical(layer), x.astype(np.float64))
    assert scale == 1.0 and 10 * drift < OFFSET < 100 * drift  # the premise

    build = torch_adapter.canonical_to_torch

    def shifted(*args, **kwargs):
        module = build(*args, **kwargs)
        module.register_forward_hook(lambda _module, _inputs, output: output + OFFSET)
        return module

    assert keras_to_torch(layer) is not None  # the faithful port passes
    monkeypatch.setattr(torch_adapter, "canonical_to_torch", shifted)
    with pytest.raises(ToleranceExceededError, match="greatest absolute difference 3"):
        keras_to_torch(layer)
    module = keras_to_torch(layer, verify=False)
    with torch.no_grad():
        ported = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ported - np.asarray(layer(x)), OFFSET, rtol=0.1)


def test_two_runs_may_differ_by_the_sum_of_their_allowances() -> None:
    """Each run may lie its own tolerance from the exact values, in opposite directions:
    against the float64 reference a float32 run is held to one allowance (and the
    reference's own, float64's), two float32 runs to two."""
    from xframe_bilstm import compare

    rng = np.random.default_rng(3)
    stack = random_stack(rng, "lstm", 4, 5, scale=3.0)
    x = rng.standard_normal((3, 6, 4))
    report = compare(stack, inputs=x, frameworks=["reference", "torch", "keras"])
    drift, scale = drift_and_scale(stack, x)
    one, exact = defined_tolerance(drift, scale), defined_tolerance(drift, scale, EPS64)
    allowed = {(p.expected, p.actual): p.comparison.arrays[0].atol for p in report.pairs}
    assert allowed["reference[cpu,float64]", "torch[cpu,float32]"] == pytest.approx(one + exact)
    assert allowed["torch[cpu,float32]", "keras[cpu,float32]"] == pytest.approx(2 * one)


def test_a_port_and_its_original_may_each_lie_one_allowance_from_the_exact_values() -> None:
    """Every converter's check (``check_port``): a float32 port against a float32 original
    is allowed two allowances, against the float64 reference standing for it one."""
    from xframe_bilstm.comparison import check_port
    from xframe_bilstm.errors import ToleranceExceededError

    rng = np.random.default_rng(7)
    stack = random_stack(rng, "lstm", 3, 4, scale=3.0)
    x = rng.standard_normal((2, 5, 3))
    (exact,) = run_reference(stack, x, dtype=np.float64)[:1]
    one = defined_tolerance(*drift_and_scale(stack, x))
    apart = exact + 1.5 * one  # beyond one allowance, within two
    check_port(stack, x, [exact], [apart], label="float32 port vs float32 original")
    with pytest.raises(ToleranceExceededError):
        check_port(stack, x, [exact], [exact + 2.5 * one], label="too far")
    with pytest.raises(ToleranceExceededError):
        check_port(stack, x, [exact], [apart], label="vs the reference", original_dtype="float64")
