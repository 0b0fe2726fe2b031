"""Equivalence assertions for test suites: :func:`assert_equivalent` and seeded inputs.

``assert_equivalent(expected, actual)`` runs :func:`~xframe_bilstm.compare` with ``actual``
as the model compared against ``expected`` and raises an ``AssertionError`` that carries the
report's numbers and, when :func:`~xframe_bilstm.diagnose` finds one, the cause. The pytest
plugin (:mod:`xframe_bilstm.pytest_plugin`) fills :data:`SELECTION` from its command-line
options; without pytest the defaults are every installed framework on every device.

Importing this module imports numpy and this package only: no framework, no pytest.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .comparison import Comparison, compare_outputs
from .diagnosis import Diagnosis, diagnose, format_error
from .errors import UnsupportedFeatureError
from .graph import ModelGraph
from .masks import check_lengths
from .report import PairReport, Report
from .runner import compare
from .sources import read_source

# Longest per-step profile a failure message prints in full.
_MAX_STEPS_SHOWN = 40


@dataclass
class Selection:
    """Frameworks, devices and kernel paths :func:`assert_equivalent` uses when a call
    names none."""

    frameworks: str | tuple[str, ...] = "auto"
    devices: str | tuple[str, ...] = "auto"
    paths: str | tuple[str, ...] = ()


SELECTION = Selection()


def seeded_inputs(
    batch: int,
    steps: int,
    features: int,
    *,
    seed: int | np.random.Generator = 0,
    lengths: Sequence[int] | None = None,
) -> np.ndarray:
    """A float32 standard-normal input (batch, steps, features), zero past each row's length.

    Example:
        >>> x = seeded_inputs(2, 3, 1, seed=7, lengths=[3, 1])
        >>> x.dtype, x[1, :, 0].tolist()[1:], bool((x == seeded_inputs(2, 3, 1, seed=7)).any())
        (dtype('float32'), [0.0, 0.0], True)
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    x = rng.standard_normal((batch, steps, features)).astype(np.float32)
    if lengths is not None:
        valid = np.arange(steps)[None, :] < check_lengths(lengths, batch, steps)[:, None]
        x[~valid] = 0.0  # right padding holds zeros, as padded batches (and Masking) expect
    return x


def assert_equivalent(
    expected: Any,
    actual: Any,
    *,
    inputs: np.ndarray | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    frameworks: str | Sequence[str] | None = None,
    devices: str | Sequence[str] | None = None,
    paths: str | Sequence[str] | None = None,
    lengths: Sequence[int] | None = None,
    seed: int = 0,
    gradients: bool = False,
) -> Report | Diagnosis | Comparison:
    """Fail unless ``actual`` computes what ``expected`` computes, on every framework asked.

    Args:
        expected: the model ``actual`` must reproduce: anything
            :func:`~xframe_bilstm.compare` reads (a Keras layer or ``Sequential``, a torch
            module, a ``RecurrentStack``, a ``.keras``/``.h5``/state_dict path).
        actual: the model under test (e.g. your port): anything ``compare`` reads, or what
            only :func:`~xframe_bilstm.diagnose` runs (a custom torch module, a pair
            ``(forward_layer, backward_layer)``), which is then judged by ``diagnose``.
            Two numpy arrays are compared element-wise, with ``rtol`` and ``atol`` required.
        inputs: the input (B, T, D); default a seeded one.
        rtol: relative tolerance; give both or neither of ``rtol`` and ``atol``.
        atol: absolute tolerance; default: derived from the model's float32 rounding noise.
        frameworks: as in ``compare``; default the pytest option ``--xframe-frameworks``,
            else every installed framework.
        devices: as in ``compare``; default ``--xframe-devices``, else every device.
        paths: kernel paths as in ``compare``; default ``--xframe-paths``, else none.
        lengths: valid steps per row of right-padded input.
        seed: seed of the default input.
        gradients: also compare the gradients (input, initial states, every weight) for a
            seeded random cotangent on every output, as ``compare(gradients=True)`` does:
            a port whose forward matches but trains differently fails, naming the weight.

    Returns:
        What it judged by: the :class:`~xframe_bilstm.Report`, the
        :class:`~xframe_bilstm.Diagnosis` or, for arrays, the
        :class:`~xframe_bilstm.Comparison`.

    Example:
        >>> assert_equivalent(np.ones(3), np.ones(3) + 1e-9, rtol=0.0, atol=1e-6).max_abs_error
        1...e-09
    """
    __tracebackhide__ = True
    if isinstance(expected, np.ndarray) and isinstance(actual, np.ndarray):
        if rtol is None or atol is None:
            raise ValueError("comparing two arrays needs rtol and atol: there is no model")
        result = compare_outputs(["array"], [expected], [actual], atol=atol, rtol=rtol)
        if not result:
            raise AssertionError(_headline(result, "actual vs expected") + "\n" + result.message())
        return result
    if _judged_by_diagnose(actual):
        if gradients:
            raise UnsupportedFeatureError(
                f"gradients=True: {type(actual).__name__} is judged by diagnose(), which "
                "compares forward outputs only; compare a model compare() reads (a converted "
                "module, an nn.LSTM/GRU/RNN, a Keras layer)"
            )
        if rtol is not None or atol is not None:
            raise ValueError(
                "rtol/atol: a model that compare() cannot read (a custom module or a pair of "
                "layers) is judged by diagnose() with the tolerance derived from expected"
            )
        diagnosis = diagnose(_readable(expected), actual, inputs=inputs, lengths=lengths, seed=seed)
        if not diagnosis:
            label = diagnosis.comparison.label or "actual vs expected"
            lines = [_headline(diagnosis.comparison, label), _cause(diagnosis)]
            raise AssertionError("\n".join([*lines, diagnosis.comparison.message()]))
        return diagnosis
    report = compare(
        expected,
        against=actual,
        inputs=inputs,
        frameworks=SELECTION.frameworks if frameworks is None else frameworks,
        devices=SELECTION.devices if devices is None else devices,
        paths=SELECTION.paths if paths is None else paths,
        lengths=lengths,
        seed=seed,
        rtol=rtol,
        atol=atol,
        gradients=gradients,
    )
    if not report:
        raise AssertionError(_failure(report, expected, actual, inputs, lengths, seed))
    return report


def _judged_by_diagnose(actual: Any) -> bool:
    """Whether only ``diagnose`` can run ``actual``: a pair of layers, a custom module."""
    if isinstance(actual, (tuple, list)):
        return True
    if isinstance(actual, (str, os.PathLike)):
        return False
    from .diagnosis.sides import classify  # imports torch only for a torch object

    return classify(actual, "actual").kind == "custom"


def _readable(model: Any) -> Any:
    """What ``diagnose`` takes for ``model``: a file of recurrent layers becomes its
    canonical stack; a whole model's file, whose graph is no source ``diagnose`` takes
    (it reads the file itself), stays a path."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    reading = read_source(model).reading
    return model if isinstance(reading, ModelGraph) else reading


def _failure(
    report: Report, expected: Any, actual: Any, inputs: Any, lengths: Any, seed: int
) -> str:
    """The assertion message: headline, diagnosis, every run and pair, where it parts."""
    forward = [pair for pair in report.pairs if not pair]
    failed = forward + [pair for pair in report.gradient_pairs if not pair]
    # The port's own pairs first (a disagreement among expected's runs is not about it),
    # forward outputs before gradients, and among those the one against the float64
    # reference, then the largest error.
    ported = [pair for pair in failed if "@against" in pair.label]
    worst = max(
        ported or failed,
        key=lambda pair: (
            pair.kind == "outputs",
            pair.expected.startswith("reference["),
            pair.max_abs_error,
        ),
        default=None,
    )
    broken = [f"{run.label} failed: {run.error}" for run in report.runs if run.error]
    broken += [" failed: ".join(line.split(" | ")[1:3]) for line in report.gradient_failures]
    if worst is not None:
        lines = [_headline(worst.comparison, worst.label)]
    else:
        lines = [f"not equivalent: run {broken[0]}"]
    if any("@against" in pair.label for pair in forward):  # diagnose() judges outputs
        lines.append(_diagnosis_line(expected, actual, inputs, lengths, seed))
    shape = "x".join(str(n) for n in report.input_shape)
    lines.append(f"{report.source}; input {shape}, seed {report.seed}")
    lines += ["  " + line for line in report.lines()]
    if worst is not None:
        lines += _profile(worst)
    if report.tolerance_note:
        lines.append(report.tolerance_note)
    if report.gradient_note:
        lines.append(report.gradient_note)
    return "\n".join(lines)


def _headline(comparison: Comparison, label: str) -> str:
    worst = max(comparison.arrays, key=lambda a: a.max_abs_error)
    if worst.problem:
        return f"not equivalent: {label}: {worst.name}: {worst.problem}"
    tolerance = format_error(worst.atol) + (
        f" + {format_error(worst.rtol)}·|expected|" if worst.rtol else ""
    )
    return (
        f"not equivalent: {label}: max abs error {format_error(worst.max_abs_error)} "
        f"at {worst.name}{list(worst.worst_index)}, tolerance {tolerance}"
    )


def _diagnosis_line(expected: Any, actual: Any, inputs: Any, lengths: Any, seed: int) -> str:
    """``diagnose``'s verdict; its own failure must never hide the comparison's."""
    __tracebackhide__ = True
    try:
        diagnosis = diagnose(
            _readable(expected), _readable(actual), inputs=inputs, lengths=lengths, seed=seed
        )
    except Exception as error:  # reported in the message; the assertion still stands
        return f"diagnosis: none ({type(error).__name__}: {error})".splitlines()[0]
    return _cause(diagnosis)


def _cause(diagnosis: Diagnosis) -> str:
    others = [code for code in diagnosis.causes if code != diagnosis.code]
    also = f" (also: {', '.join(others)})" if others else ""
    return f"diagnosis: {diagnosis.code}: {diagnosis.message}{also}"


def _profile(pair: PairReport) -> list[str]:
    """Where the headline pair parts: worst error per time step, valid vs padded steps."""
    lines = []
    for part, errors in pair.timesteps.items():
        shown = " ".join(format_error(e) for e in errors[:_MAX_STEPS_SHOWN])
        more = " …" if len(errors) > _MAX_STEPS_SHOWN else ""
        lines.append(f"worst per time step, {part}: {shown}{more}")
    for part, split in pair.padding.items():
        lines.append(
            f"{part}: valid steps {format_error(split['valid'])}, "
            f"padded steps {format_error(split['padded'])}"
        )
    return lines
