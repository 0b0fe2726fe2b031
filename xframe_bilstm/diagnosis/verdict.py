""":func:`diagnose`: run both sides, test the hypotheses in order, assemble the verdict.

The order (see the package docstring): agreement within the strict tolerance; options and
weights (:mod:`.weights`); unless actual's weights already reproduce actual, its outputs
(:mod:`.outputs`); ``numerical_only`` when nothing applies and the weights match; else
``unknown``. Several causes can apply: :data:`_PRIORITY` picks the primary one. A whole
model is diagnosed by :mod:`.models`, which calls :func:`diagnose` on each recurrent layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..comparison import Comparison, compare_outputs
from ..custom import custom_layers_in_use
from ..errors import UnsupportedFeatureError
from ..stack_graph import as_graph, stack_of
from .context import Context, tolerances
from .models import diagnose_model, read_once
from .outputs import output_findings, valid_only
from .result import Diagnosis, Finding, format_error
from .runners import align, run
from .sides import (
    Side,
    apply_flags,
    build_keras,
    choose_input,
    classify,
    read_canonical,
    refusal,
    target_flags,
)
from .weights import WeightReport, structure_difference, weight_report

# Which cause is primary when several apply: options first (they are facts, not guesses),
# then specific weight faults, then unexplained weights, then what the outputs show.
_PRIORITY = (
    "activation_mismatch",
    "gru_reset_after_mismatch",
    "directions_swapped",
    "kernel_not_transposed",
    "gate_order",
    "bias_double_counted",
    "bias_missing",
    "weights_differ",
    "backward_not_reversed",
    "final_state_from_last_output",
    "padding_semantics",
)


def diagnose(
    expected: Any,
    actual: Any,
    *,
    inputs: np.ndarray | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
    seed: int = 0,
    custom_layers: Mapping[str, Callable[..., Any]] | None = None,
) -> Diagnosis:
    """Run ``expected`` and ``actual`` on one input and say why they differ, if they do.

    Args:
        expected: the reference object: a Keras 3 layer or ``Sequential``, a torch
            ``nn.LSTM``/``nn.GRU``/``nn.RNN``, a ``KerasRecurrent``, a ``RecurrentStack``, a
            ``.keras``/``.h5`` or state_dict file, an ONNX graph (path or ``ModelProto``) or
            a custom torch module (see the module docstring); or a whole model (a
            ``.keras``/``.h5`` file, a live Keras model with Embedding, Dense, masks..., or
            an ONNX graph of one).
        actual: the object to check: any of those, or a pair ``(forward_layer,
            backward_layer)`` run alone and concatenated as they come; for a whole model,
            its port: a torch module whose ``forward`` takes the model's inputs, or an ONNX
            export of the model.
        inputs: batch-first input (B, T, D); default a seeded float32 normal input with
            B=2, T=7. For a whole model, one array per model input; default its seeded
            padded inputs (:func:`~xframe_bilstm.inputs.example_inputs`).
        lengths: valid steps per row (B,) of right-padded input, passed to every side but
            custom modules; for a whole model, they pad the generated inputs (its masks
            come from the inputs' values).
        seed: seed of the default input.
        custom_layers: factories of a whole Keras model's layers of your own classes, as
            :func:`~xframe_bilstm.keras_to_torch` takes them; their weights are not
            compared, and the tolerance comes from the torch port's own rounding.

    Returns:
        A :class:`Diagnosis`; truthy when they agree up to rounding.

    Example:
        >>> bi = keras.layers.Bidirectional(keras.layers.LSTM(2, return_sequences=True))
        >>> diagnose(bi, keras_to_torch(bi)).code  # doctest: +SKIP
        'equivalent'
    """
    with custom_layers_in_use(custom_layers):
        try:
            read = read_once(expected)
        except UnsupportedFeatureError as error:
            raise refusal("expected", error) from error
    if read is not None and stack_of(as_graph(read.reading)) is None:  # more than layers
        return diagnose_model(read, actual, diagnose, inputs=inputs, lengths=lengths, seed=seed)
    exp, act = classify(expected, "expected", read), classify(actual, "actual")
    read_canonical(exp, "expected")
    read_canonical(act, "actual")
    x = choose_input(inputs, exp, act, seed)
    for side, role in ((exp, "expected"), (act, "actual")):
        build_keras(side, x)
        read_canonical(side, role)
    flags = target_flags(exp, act)
    apply_flags(exp, flags)
    apply_flags(act, flags)
    e_run, a_run = run(exp, x, lengths), run(act, x, lengths)
    names, e, a = align(e_run, a_run)
    layout = exp.stack or act.stack
    if lengths is not None and (e_run.valid_steps_only or a_run.valid_steps_only):
        # One side pads with zeros where the other repeats a step: compare valid steps.
        e, a = valid_only(e, lengths, layout), valid_only(a, lengths, layout)
    strict = np.float64 if e_run.double and a_run.double else np.float32
    tolerance, bound = tolerances(layout, x, strict, lengths, list(e.values()))
    comparison = compare_outputs(
        names,
        [e[n] for n in names],
        [a[n] for n in names],
        atol=tolerance,
        label=f"expected {exp.label} vs actual {act.label}",
    )
    ctx = Context(
        x, lengths, names, e, a, strict, tolerance, bound, comparison.max_abs_error, layout
    )
    if comparison:
        text = f"{np.dtype(strict).name} tolerance {format_error(tolerance)}"
        agree = Finding(
            "equivalent", f"they agree to {format_error(ctx.before)}, within the {text}"
        )
        return _verdict(ctx, comparison, [agree])
    findings, structure, params_equal = _find_causes(ctx, exp, act)
    if not findings and params_equal and structure is None and ctx.before <= bound:
        findings = [
            Finding(
                "numerical_only",
                f"they differ by up to {format_error(ctx.before)}, more than "
                f"{np.dtype(strict).name} rounding explains ({format_error(tolerance)}) but "
                "within the bound for 10-bit-mantissa (TF32/float16) rounding "
                f"({format_error(bound)}), and no hypothesis applies",
            )
        ]
    return _verdict(ctx, comparison, findings or [_unknown(ctx, comparison, structure)])


def _find_causes(
    ctx: Context, expected: Side, actual: Side
) -> tuple[list[Finding], str | None, bool]:
    """(findings, a structural difference if any, whether the weights and options match)."""
    findings: list[Finding] = []
    structure: str | None = None
    report: WeightReport | None = None
    if expected.stack is not None and actual.stack is not None:
        structure = structure_difference(expected.stack, actual.stack)
        if structure is None:
            report = weight_report(expected.stack, actual.stack, ctx)
            findings += report.findings
    # Output-level hypotheses compare actual with expected's layer; once weight faults are
    # found, with actual's weights (faults undone) in it, so that both kinds can show at once.
    target, target_stack, where = ctx.expected, expected.stack, ""
    if report is not None and not report.params_equal:
        raw = report.raw
        if raw is not None and ctx.error(ctx.reference(raw), ctx.actual) <= ctx.tolerance_for(raw):
            return findings, structure, False  # the weights explain all of it
        target, target_stack = ctx.reference(report.fixed), report.fixed
        where = "with actual's weights in expected's layer, "
    unmasked = None
    if ctx.lengths is not None and target_stack is not None:
        unmasked = ctx.reference(target_stack, masked=False)
    findings += output_findings(ctx, target, target_stack, unmasked, where)
    return findings, structure, report is None or report.params_equal


def _unknown(ctx: Context, comparison: Comparison, structure: str | None) -> Finding:
    worst = max(comparison.arrays, key=lambda array: array.max_abs_error)
    problem = f" ({worst.problem})" if worst.problem else f" at index {worst.worst_index}"
    note = f"; {structure}" if structure else ""
    return Finding(
        "unknown",
        f"no hypothesis explains the difference: max error {format_error(ctx.before)} in "
        f"{worst.name!r}{problem}{note}",
    )


def _verdict(ctx: Context, comparison: Comparison, findings: list[Finding]) -> Diagnosis:
    """The primary cause first (by :data:`_PRIORITY`), one finding per code."""
    order = {code: rank for rank, code in enumerate(_PRIORITY)}
    unique: dict[str, Finding] = {}
    for finding in sorted(findings, key=lambda f: order.get(f.code, -1)):
        unique.setdefault(finding.code, finding)
    primary = next(iter(unique.values()))
    return Diagnosis(
        code=primary.code,
        causes=tuple(unique),
        message=primary.message,
        max_abs_error=ctx.before,
        comparison=comparison,
        error_after_fix=primary.error_after,
        details=tuple(f.message for f in unique.values()),
    )
