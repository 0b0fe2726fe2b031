"""TFLite's dynamic-range quantized variant (``tflite[cpu,float32,dynamic-range-int8]``):
int8 weights, judged against a quantization budget rather than the float32 tolerance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xframe_bilstm import compare
from xframe_bilstm.factories import random_stack
from xframe_bilstm.frameworks import FRAMEWORKS, RunSpec
from xframe_bilstm.frameworks.tflite import BUDGET_SETTING
from xframe_bilstm.reference import run_reference

pytest.importorskip("torch")
keras = pytest.importorskip("keras")
pytestmark = pytest.mark.skipif(
    not FRAMEWORKS["tflite"].available(), reason="pip install '.[tflite]'"
)

QUANTIZED = "tflite[cpu,float32,dynamic-range-int8]"
SPEC = RunSpec("tflite", "cpu", "float32", path="dynamic-range-int8")


def _failures(report) -> str:
    return "\n".join([*report.lines(), *(f"{r.label}: {r.error}" for r in report.runs)])


def _run(report, label=QUANTIZED):
    return next(run for run in report.runs if run.label == label)


def _stack(cell="lstm", units=32, **options):
    # 32 units: the weights have the 1024 elements the converter quantizes.
    return random_stack(np.random.default_rng(0), cell, 8, units, **options)


@pytest.mark.parametrize(
    "cell, options",
    [("lstm", {}), ("gru", {"direction": "bidirectional", "num_layers": 2}), ("simple_rnn", {})],
)
def test_the_quantized_run_agrees_within_its_budget_and_says_what_was_quantized(
    cell, options
) -> None:
    stack = _stack(cell, **options)
    report = compare(
        stack,
        frameworks=["tflite", "torch"],
        paths=["tflite:dynamic-range-int8"],
        steps=10,
        batch=3,
        lengths=[10, 4, 7],
    )
    assert report, _failures(report)
    run = _run(report)
    assert "FULLY_CONNECTED (subgraph" in str(run.settings["quantized"])
    assert "per-channel" in str(run.settings["quantized"])
    assert "dynamic-range quantized (Optimize.DEFAULT)" in str(run.settings["converter"])
    budget = float(run.settings[BUDGET_SETTING])  # type: ignore[arg-type]
    assert report.quantization_budget == budget
    quantized_pairs = [pair for pair in report.pairs if QUANTIZED in pair.label]
    float_pairs = [pair for pair in report.pairs if QUANTIZED not in pair.label]
    assert quantized_pairs and all(pair.kind == "quantization" for pair in quantized_pairs)
    assert all(pair.kind == "outputs" for pair in float_pairs)
    # The int8 weights move the outputs far beyond float32 rounding, and within the budget.
    worst = max(pair.max_abs_error for pair in quantized_pairs)
    assert max(pair.tolerance for pair in float_pairs) < 1e-4 < worst <= budget


def test_a_wrong_weight_fails_beyond_the_budget() -> None:
    stack = _stack()
    x = np.random.default_rng(4).standard_normal((3, 10, 8))
    layer = stack.layers[0]
    first = layer.weights[0]
    wrong = dataclasses.replace(first, recurrent_kernel=first.recurrent_kernel * 1.25)
    perturbed = dataclasses.replace(stack, layers=(dataclasses.replace(layer, weights=(wrong,)),))
    framework = FRAMEWORKS["tflite"]()
    (want, *_) = run_reference(stack, x)
    (good, *_), settings = framework.run(stack, x, SPEC, initial_states=None, lengths=None)
    (bad, *_), _ = framework.run(perturbed, x, SPEC, initial_states=None, lengths=None)
    budget = float(settings[BUDGET_SETTING])  # type: ignore[arg-type]
    assert np.abs(good - want).max() <= budget < np.abs(bad - want).max()


def test_a_too_small_budget_given_fails_the_quantized_pairs_only() -> None:
    report = compare(
        _stack(),
        frameworks=["tflite"],
        paths=["tflite:dynamic-range-int8"],
        steps=6,
        quantization_budget=1e-5,
    )
    assert not report
    failed = [line for line in report.lines() if line.startswith("FAILED")]
    assert failed and all(QUANTIZED in line and "budget 1e-05" in line for line in failed)


def test_a_model_too_small_to_quantize_runs_in_float32_and_says_so() -> None:
    report = compare(
        _stack(units=4), frameworks=["tflite"], paths=["tflite:dynamic-range-int8"], steps=6
    )
    assert report, _failures(report)
    run = _run(report)
    assert str(run.settings["quantized"]).startswith("nothing: no weight had the 1024")
    assert BUDGET_SETTING not in run.settings and report.quantization_budget is None


def test_a_whole_model_needs_a_budget_given() -> None:
    model = keras.Sequential(
        [
            keras.Input((None, 8)),
            keras.layers.LSTM(32, return_sequences=True),
            keras.layers.Dense(40),
        ]
    )
    report = compare(model, frameworks=["tflite"], paths=["tflite:dynamic-range-int8"], steps=6)
    assert not report
    assert "give quantization_budget=" in str(_run(report).error)
    given = compare(
        model,
        frameworks=["tflite"],
        paths=["tflite:dynamic-range-int8"],
        steps=6,
        quantization_budget=0.05,
    )
    assert given, _failures(given)
    assert given.quantization_budget == 0.05
