"""The quantization budget of a comparison: the allowance of every pair with an int8 run.

An int8 ONNX source runs as given (``onnxruntime[cpu,int8]@original``) beside its
dequantized float reading; what parts them is quantization, not float32 rounding, so its
pairs are judged against a budget: the one given (``compare(quantization_budget=...)``),
else the largest step budget :func:`~xframe_bilstm.quantization.quantization_steps` gives
on the comparison's input (the rule :func:`~xframe_bilstm.quantization.quantization_error`
uses). TFLite's dynamic-range quantized run (``tflite[cpu,float32,dynamic-range-int8]``)
is judged alike, against the budget given or the default its run derived
(:mod:`~xframe_bilstm.frameworks.tflite_quantized`). Pairs of float runs keep the float32
tolerance.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UnsupportedFeatureError
from .frameworks.base import RunSpec
from .frameworks.onnx_int8 import INT8, OnnxInt8Framework
from .frameworks.tflite import BUDGET_SETTING
from .frameworks.tflite_quantized import QUANTIZED
from .report import RunRecord


@dataclass(frozen=True)
class QuantizationBudgets:
    """The budget of each int8 run, and whether it was given."""

    budgets: dict[RunSpec, float] = field(default_factory=dict)
    given: float | None = None

    def of(self, expected: RunSpec, actual: RunSpec) -> float | None:
        """The budget of a pair with an int8 side (the larger of two), else None."""
        found = [self.budgets[spec] for spec in (expected, actual) if spec in self.budgets]
        return max(found) if found else None

    @property
    def value(self) -> float | None:
        """The largest budget of the comparison, None without an int8 run."""
        return max(self.budgets.values(), default=None)

    def note(self) -> str:
        """What the report's tolerance note says of the budget ("" without an int8 run)."""
        from .quantization import QUANTIZATION_SIGMAS

        if not self.budgets:
            return ""
        runs = ", ".join(spec.label for spec in self.budgets)
        where = (
            "given"
            if self.given is not None
            else f"the largest step budget on this input: {QUANTIZATION_SIGMAS:g} sigma of the "
            "rounding the quantized products add per step, grown as sqrt(steps processed), "
            "as quantization_error derives it"
        )
        return f"quantization budget {self.value:.3g} for the pairs of {runs} ({where})"


def check_budget(budget: float | None) -> None:
    """Refuse a budget that is not a positive finite number."""
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise ValueError(
            f"quantization_budget: {budget!r} is not a positive finite number; give the "
            "largest error an int8 run may have at any step, or leave it out for the default"
        )


def measure_budgets(
    specs: Sequence[tuple[RunSpec, Any]],
    runs: list[RunRecord],
    results: dict[RunSpec, tuple[np.ndarray, ...]],
    x: Any,
    states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
    given: float | None,
) -> QuantizationBudgets:
    """The budget of every int8 run that finished. A default budget that cannot be measured
    fails its run (its record says why; ``runs`` and ``results`` are updated in place).

    Raises:
        UnsupportedFeatureError: a budget given where no int8 graph runs.
    """
    int8 = [(s, f) for s, f in specs if s.dtype == INT8 and isinstance(f, OnnxInt8Framework)]
    dynamic = [s for s, _ in specs if s.framework == "tflite" and s.path == QUANTIZED]
    if given is not None and not int8 and not dynamic:
        raise UnsupportedFeatureError(
            "quantization_budget: no int8 graph runs in this comparison; the budget judges "
            "the runs of an int8 ONNX graph (from onnxruntime.quantization.quantize_dynamic) "
            "against their dequantized float model, and TFLite's dynamic-range quantized run "
            "(paths=['tflite:dynamic-range-int8']) against the float runs"
        )
    budgets: dict[RunSpec, float] = {}
    for spec in dynamic:
        _dynamic_range_budget(spec, runs, results, given, budgets)
    for spec, framework in int8:
        if spec not in results:
            continue
        if given is not None:
            budgets[spec] = given
            continue
        try:
            budgets[spec] = framework.quantization_budget(x, states, lengths)
        except Exception as error:  # fails this run alone, as a run that raises does
            message = f"quantization budget: {type(error).__name__}: {error}".splitlines()[0]
            index = next(i for i, run in enumerate(runs) if run.spec == spec)
            runs[index] = dataclasses.replace(runs[index], error=message)
            del results[spec]
    return QuantizationBudgets(budgets, given)


def _dynamic_range_budget(
    spec: RunSpec,
    runs: list[RunRecord],
    results: dict[RunSpec, tuple[np.ndarray, ...]],
    given: float | None,
    budgets: dict[RunSpec, float],
) -> None:
    """The budget of a TFLite dynamic-range run that finished: the one given, else the
    default its run derived. One that quantized nothing keeps the float32 tolerance; a
    quantized whole model without a budget given fails its run, saying so."""
    if spec not in results:
        return
    index = next(i for i, run in enumerate(runs) if run.spec == spec)
    settings = runs[index].settings
    if given is not None:
        budgets[spec] = given
    elif BUDGET_SETTING not in settings:
        return  # nothing quantized: a float32 run
    elif settings[BUDGET_SETTING] is None:
        runs[index] = dataclasses.replace(
            runs[index],
            error="quantization budget: the default is derived for recurrent layers; for a "
            "whole model's dynamic-range run give quantization_budget= (the largest error "
            "its outputs may have)",
        )
        del results[spec]
    else:
        budgets[spec] = float(settings[BUDGET_SETTING])  # type: ignore[arg-type]


__all__ = ["QuantizationBudgets", "check_budget", "measure_budgets"]
