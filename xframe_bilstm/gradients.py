"""Gradients in ``compare(..., gradients=True)``: cotangents, runs, noise and pairs.

Every output gets one seeded random cotangent, drawn once like the input; each run that
can differentiate (the float64 reference, PyTorch's autograd, Keras's ``GradientTape``)
returns the gradient of ``Σ cotangent ⊙ output`` with respect to the input, the initial
states (when given) and every weight, by canonical name
(:mod:`~xframe_bilstm.gradient_arrays`). Runs are paired as their forward outputs are
(:func:`~xframe_bilstm.pairing.pairs_of`); a split bias row (PyTorch's ``bias_ih`` and
``bias_hh``, each of which receives the full bias gradient of an LSTM or SimpleRNN) is
compared with a single bias's gradient, row by row. Tolerances come from the float32 noise
of the backward pass: the reference's float32 gradients against its float64 ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .canonical import layer_state_names
from .comparison import ArrayComparison, Comparison, Noise, compare_outputs
from .correspondence import Correspondence
from .errors import UnsupportedFeatureError
from .frameworks.base import Framework, RunSpec
from .gradient_arrays import GradientArrays, reference_arrays
from .pairing import pairs_of
from .reference import Reading, reference_outputs
from .report import PairReport
from .stack_graph import as_graph

# Added to the seed, so the cotangents are not the input's own random numbers.
COTANGENT_STREAM = 1


@dataclass(frozen=True)
class GradientSection:
    """What the gradient comparison adds to a report."""

    pairs: tuple[PairReport, ...]
    failures: tuple[str, ...]  # ``FAILED | gradients of <run> | why`` per run that raised
    left_out: tuple[str, ...]  # ``<run or framework>: why`` per run left out
    note: str  # the gradient tolerance


def draw_cotangents(outputs: Sequence[np.ndarray], seed: int) -> list[np.ndarray]:
    """One standard normal cotangent per output, shaped as it, drawn from ``seed``.

    Example:
        >>> [c.shape for c in draw_cotangents([np.zeros((2, 3)), np.zeros(4)], seed=0)]
        [(2, 3), (4,)]
    """
    rng = np.random.default_rng([seed, COTANGENT_STREAM])
    return [rng.standard_normal(np.shape(output)) for output in outputs]


def gradient_refusal(reading: Reading) -> str | None:
    """Why no run can differentiate ``reading`` (a layer kind without a backward), or None."""
    from .reference.graph_backward import backward_refusal

    return backward_refusal(as_graph(reading))


def gradient_noise(
    stack: Reading,
    x: Any,
    cotangents: Sequence[np.ndarray],
    *,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> Noise:
    """How far float32 rounding moves the reference's gradients from its float64 ones (of
    every input, initial state, zeros included, and weight)."""
    given: dict[str, Any] = {"initial_states": initial_states, "lengths": lengths}
    exact, rounded = (
        reference_arrays(stack, x, cotangents, dtype=dtype, zero_states=True, **given).arrays
        for dtype in (np.float64, np.float32)
    )
    drift = max(float(np.abs(rounded[k] - exact[k]).max(initial=0.0)) for k in exact)
    scale = max(max(float(np.abs(e).max(initial=0.0)) for e in exact.values()), 1.0)
    return Noise(drift, scale)


def compare_gradients(
    stack: Reading,
    plan: Sequence[tuple[RunSpec, Framework]],
    readings: dict[str, Any],
    views: dict[tuple[str, str], Correspondence],
    x: Any,
    *,
    seed: int,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
    tolerance: tuple[float, float] | None,
    progress: Callable[[int, int, str], None] | None = None,
) -> GradientSection:
    """Differentiate every run that can, and pair them as the forward runs are paired.

    ``tolerance`` is ``(atol, rtol)`` when given; else it is derived from the noise.
    """
    given: dict[str, Any] = {"initial_states": initial_states, "lengths": lengths}
    cotangents = draw_cotangents(reference_outputs(stack, x, **given), seed)
    left_out: dict[str, str] = {}
    taken: list[tuple[RunSpec, Framework]] = []
    for spec, framework in plan:
        why = _refusal(spec, framework, readings, views)
        if why is None:
            taken.append((spec, framework))
        else:
            left_out.setdefault(spec.label if spec.subject else spec.framework, why)
    results: dict[RunSpec, GradientArrays] = {}
    failures: list[str] = []
    for index, (spec, framework) in enumerate(taken):
        if progress is not None:
            progress(index, len(taken), f"gradients of {spec.label}")
        try:
            results[spec] = framework.gradients(
                readings[spec.subject], x, spec, cotangents, **given
            )
        except UnsupportedFeatureError as error:
            left_out[spec.label] = str(error).splitlines()[0]
        except Exception as error:  # its own failure; the comparison goes on
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            failures.append(f"FAILED | gradients of {spec.label} | {message}")
    noise = gradient_noise(stack, x, cotangents, **given)
    labels = _state_labels(stack)
    pairs = []
    for expected, actual in pairs_of(list(results), views):
        if tolerance is None:
            atol, rtol = noise.pair_tolerance(expected.epsilon, actual.epsilon), 0.0
        else:
            atol, rtol = tolerance
        pairs.append(
            gradient_pair(results[expected], results[actual], expected, actual, labels, atol, rtol)
        )
    note = (
        f"gradient tolerance: rtol={tolerance[1]}, atol={tolerance[0]} (given)"
        if tolerance is not None
        else f"gradient tolerance: derived from the float32 reference gradient's drift "
        f"{noise.float32:.3g} (gradient scale {noise.scale:.3g}), each run allowed ten "
        "times it at its precision, a pair the sum of its runs'"
    )
    missing = tuple(f"{name}: gradients: {why}" for name, why in left_out.items())
    return GradientSection(tuple(pairs), tuple(failures), missing, note)


def _refusal(
    spec: RunSpec,
    framework: Framework,
    readings: dict[str, Any],
    views: dict[tuple[str, str], Correspondence],
) -> str | None:
    """Why a run is left out of the gradient comparison, or None."""
    why = framework.gradient_refusal(readings[spec.subject])
    if why is not None or not spec.subject:
        return why
    view = views.get(("", spec.subject))
    if view is None or view.note or view.valid_steps_only:
        return (
            f"its outputs are matched with the source's by meaning, so the same cotangents "
            f"would weight other values; give @{spec.subject} the source's outputs "
            "(return_sequences, return_state) to compare its gradients"
        )
    return None


def _state_labels(stack: Reading) -> list[str]:
    """What each initial state is: ``h_forward`` (``layers[1].h_forward`` in a deeper stack,
    named by its record), in the order the graph's recurrent records take them."""
    recurrent = [r for r in as_graph(stack).layers if r.recurrent is not None]
    return [
        f"{record.name}.{name}" if len(recurrent) > 1 else name
        for record in recurrent
        if record.recurrent is not None
        for name in layer_state_names(record.recurrent)
    ]


def _unmatched(
    want: GradientArrays, got: GradientArrays, expected: RunSpec, actual: RunSpec
) -> tuple[ArrayComparison, ...]:
    """A failed entry for each gradient only one of two runs gives: a weight (or input)
    the other run has no gradient for. Initial states are given to every run or to none;
    where a run cannot take them, its own run says so."""
    entries = []
    for name, lacking in (
        *((n, actual) for n in want.arrays if n not in got.arrays),
        *((n, expected) for n in got.arrays if n not in want.arrays),
    ):
        if name.startswith("initial_states["):
            continue
        entry = ArrayComparison(f"grad {name}", (), np.inf, np.inf, np.inf, (), 1, 0.0, 0.0)
        problem = f"{lacking.label} gives no gradient of {name!r}"
        entries.append(dataclasses.replace(entry, problem=problem))
    return tuple(entries)


def gradient_pair(
    want: GradientArrays,
    got: GradientArrays,
    expected: RunSpec,
    actual: RunSpec,
    state_labels: Sequence[str],
    atol: float,
    rtol: float,
) -> PairReport:
    """Compare two runs' gradients, each array named, with the input gradient's per-step
    profile (its largest error at each time step, as the error flows backward in time)."""
    names: list[str] = []
    wanted: list[np.ndarray] = []
    gotten: list[np.ndarray] = []
    for name, expected_array in want.arrays.items():
        if name not in got.arrays:
            continue  # e.g. no initial states on one side: nothing to compare
        for label, one, other in _matched(name, expected_array, got.arrays[name], want, got):
            names.append(
                label
                if not name.startswith("initial_states[")
                else _state(label, name, state_labels)
            )
            wanted.append(one)
            gotten.append(other)
    comparison = compare_outputs(
        names,
        wanted,
        gotten,
        atol=atol,
        rtol=rtol,
        label=f"gradients of {actual.label} vs {expected.label}",
    )
    unmatched = _unmatched(want, got, expected, actual)
    if unmatched:  # a weight one run has and the other lacks fails, never passes unseen
        comparison = Comparison((*comparison.arrays, *unmatched), comparison.label)
    timesteps = {}
    if (
        "inputs" in want.arrays
        and "inputs" in got.arrays
        and np.shape(want.arrays["inputs"]) == np.shape(got.arrays["inputs"])
        and np.ndim(want.arrays["inputs"]) == 3
    ):
        error = np.abs(got.arrays["inputs"] - want.arrays["inputs"])
        timesteps["grad inputs"] = np.nan_to_num(error, nan=np.inf).max(axis=(0, 2)).tolist()
    return PairReport(
        expected=expected.label,
        actual=actual.label,
        comparison=comparison,
        timesteps=timesteps,
        kind="gradients",
    )


def _state(label: str, name: str, state_labels: Sequence[str]) -> str:
    index = int(name[len("initial_states[") : -1])
    return f"{label} ({state_labels[index]})" if index < len(state_labels) else label


def _matched(
    name: str,
    want: np.ndarray,
    got: np.ndarray,
    want_side: GradientArrays,
    got_side: GradientArrays,
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The arrays to compare for one canonical name, each labelled ``grad <name> (<native>)``.

    A split bias is compared row by row: with the other side's rows, or each row with the
    other side's single bias (only the rows' sum enters an LSTM's or SimpleRNN's equations,
    so each row receives the full bias gradient)."""
    if (
        not name.endswith(".bias")
        or (want.ndim == 1 and got.ndim == 1)
        or want.ndim == got.ndim == 0
    ):
        return [(_label(name, 0, want_side, got_side), want, got)]
    want_rows = list(want) if want.ndim == 2 else None
    got_rows = list(got) if got.ndim == 2 else None
    if want_rows is not None and got_rows is not None and len(want_rows) == len(got_rows):
        pairs = list(zip(want_rows, got_rows))
    elif want_rows is not None and got_rows is None:
        pairs = [(row, got) for row in want_rows]
    elif got_rows is not None and want_rows is None:
        pairs = [(want, row) for row in got_rows]
    else:
        return [(_label(name, 0, want_side, got_side), want, got)]
    return [
        (_label(name, row, want_side, got_side, split=True), w, g)
        for row, (w, g) in enumerate(pairs)
    ]


def _label(
    name: str, row: int, want: GradientArrays, got: GradientArrays, *, split: bool = False
) -> str:
    """``grad <name>`` with the native name(s) of the row beside, the actual side's first."""
    natives = []
    for side in (got, want):
        found = side.native.get(name, ())
        if len(found) > 1 or (found and not split):
            natives.append(found[row] if row < len(found) else found[-1])
        elif found:
            natives.append(found[0])
    if not natives and split:
        natives.append(("input-side", "recurrent-side")[row] if row < 2 else f"row {row}")
    shown = ", ".join(dict.fromkeys(natives))
    return f"grad {name}" + (f" ({shown})" if shown else "")


__all__ = [
    "COTANGENT_STREAM",
    "GradientSection",
    "compare_gradients",
    "draw_cotangents",
    "gradient_noise",
    "gradient_pair",
    "gradient_refusal",
]
