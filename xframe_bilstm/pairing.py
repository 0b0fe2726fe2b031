"""Which runs a comparison pairs, what each pair compares, and where two runs part.

Every run is compared with the float64 reference, and every two runs of one dtype with
each other. The user's original object is the ground truth: it is the expected side of its
pairs, and every run of the source's reading is compared with it whatever their dtypes.
Outputs of ``@original`` and ``@against`` are matched with the source's by meaning
(:mod:`~xframe_bilstm.correspondence`). Each pair reports, besides its comparison, the
largest error per time step, per direction and on valid versus padded steps.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from .canonical import RecurrentLayer
from .comparison import compare_outputs
from .correspondence import Correspondence, Source, correspond, output_names_of
from .errors import UnsupportedFeatureError
from .frameworks.base import RunSpec
from .reference import Reading
from .report import PairReport
from .stack_graph import as_graph


def views_of(mine: Source, subjects: dict[str, Source]) -> dict[tuple[str, str], Correspondence]:
    """How each two of the source's runs, ``@original`` and ``@against`` match their outputs,
    by subjects (``""`` for the source's runs; ``subjects`` holds what each other subject
    returns); a pair of subjects that do not correspond (possible only between the original
    and against) is left out and compared through the reference alone. Refuses an
    ``against`` whose outputs do not correspond to the source's.
    """
    views = {("", name): correspond(mine, outputs) for name, outputs in subjects.items()}
    if "original" in subjects and "against" in subjects:
        with contextlib.suppress(UnsupportedFeatureError):
            views[("original", "against")] = correspond(subjects["original"], subjects["against"])
    return views


def correspondence_note(
    views: dict[tuple[str, str], Correspondence], lengths: np.ndarray | None
) -> str:
    """What the report says about outputs matched by meaning, "" when all are the same."""
    notes = []
    for (first, second), view in views.items():
        matched = [view.note] if view.note else []
        if view.valid_steps_only and lengths is not None:
            matched.append(
                "sequences on valid steps only (a native module on a packed sequence writes "
                "zeros at padded steps, a Keras layer its own padding)"
            )
        if not matched:
            continue
        whose = f" with @{first}'s" if first else ""
        notes.append(f"@{second} outputs matched{whose} by meaning: {'; '.join(matched)}")
    return "; ".join(notes)


def pairs_of(
    specs: list[RunSpec], views: dict[tuple[str, str], Correspondence]
) -> Iterable[tuple[RunSpec, RunSpec]]:
    """Each run against the reference, and every two runs of one dtype against each other.

    The user's original object is the ground truth: it is the expected side of its pairs,
    and every run of the source's reading is compared with it whatever their dtypes."""
    reference = [s for s in specs if s.framework == "reference" and not s.subject]
    others = [s for s in specs if s.framework != "reference" or s.subject]
    for spec in others:
        for ref in reference:
            yield ref, spec
    for first, second in itertools.combinations(others, 2):
        if second.subject == "original" and first.subject != "original":
            if not first.subject or (
                first.dtype == second.dtype and ("original", first.subject) in views
            ):
                yield second, first
        elif first.dtype == second.dtype:
            yield first, second


def pair_arrays(
    readings: dict[str, Reading],
    views: dict[tuple[str, str], Correspondence],
    expected: RunSpec,
    actual: RunSpec,
    results: dict[RunSpec, tuple[np.ndarray, ...]],
    lengths: np.ndarray | None,
) -> tuple[tuple[str, ...], tuple[np.ndarray, ...], tuple[np.ndarray, ...], Reading]:
    """What a pair compares: names, expected and actual arrays, and the reading they belong to
    (for the profiles). A pair with ``@against`` or ``@original`` compares what corresponds:
    by the correspondence of the two subjects, or of the one with the source's runs."""
    subjects = {expected.subject, actual.subject}
    if subjects == {""}:
        return output_names_of(readings[""]), results[expected], results[actual], readings[""]
    named = sorted(subjects - {""})
    # Two subjects: the original and against; else one, with the source's runs or itself.
    key = ("original", "against") if len(named) == 2 else ("", named[0])
    correspondence = views[key]

    def view(spec: RunSpec) -> tuple[np.ndarray, ...]:
        if spec.subject == key[0]:
            return correspondence.source_view(results[spec], lengths)
        return correspondence.against_view(results[spec], lengths)

    shown = readings[key[0] if correspondence.by_source else key[1]]
    return correspondence.names, view(expected), view(actual), shown


def pair_report(
    reading: Reading,
    names: Sequence[str],
    want_arrays: Sequence[np.ndarray],
    got_arrays: Sequence[np.ndarray],
    expected: RunSpec,
    actual: RunSpec,
    atol: float,
    rtol: float,
    lengths: np.ndarray | None,
    kind: str = "outputs",
) -> PairReport:
    """The pair's comparison and profiles; ``kind="quantization"`` for a pair judged against
    a quantization budget (``atol``)."""
    comparison = compare_outputs(
        names,
        want_arrays,
        got_arrays,
        atol=atol,
        rtol=rtol,
        label=f"{actual.label} vs {expected.label}",
    )
    timesteps: dict[str, list[float]] = {}
    directions: dict[str, float] = {}
    padding: dict[str, dict[str, float]] = {}
    for name, want, got, result in zip(names, want_arrays, got_arrays, comparison.arrays):
        if result.problem is not None and np.shape(want) != np.shape(got):
            continue  # the comparison says which shapes differ; there is nothing to profile
        error = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
        if _time_first(reading, name):  # profiled by row and step as any other sequence
            error = np.swapaxes(error, 0, 1)
        layer = _last_layer(reading, name)
        for part, part_error in _halves(layer, name, error):
            _note_direction(directions, part, part_error)
            if part_error.ndim == 3:  # a sequence: (B, T, F)
                timesteps[part] = part_error.max(axis=(0, 2)).tolist()
                if lengths is not None:
                    padding[part] = _padding_split(layer, part_error, lengths)
    return PairReport(
        expected=expected.label,
        actual=actual.label,
        comparison=comparison,
        timesteps=timesteps,
        directions=directions,
        padding=padding,
        kind=kind,
    )


def _last_layer(reading: Reading, name: str) -> RecurrentLayer | None:
    """The recurrent layer that makes output ``name``, or None (a Dense head, say)."""
    graph = as_graph(reading)
    names = graph.output_labels
    if name in names:
        return graph.layer(graph.outputs[names.index(name)]).recurrent
    makers = {graph.layer(output).name for output in graph.outputs}
    # A name the correspondence gave (a half, a last step) belongs to the one output layer.
    return graph.layer(makers.pop()).recurrent if len(makers) == 1 else None


def _time_first(reading: Reading, name: str) -> bool:
    """Whether output ``name`` is returned time-major, (time, batch, ...)."""
    graph = as_graph(reading)
    labels = graph.output_labels
    return name in labels and graph.layer(graph.outputs[labels.index(name)]).kind == "time_first"


def _halves(
    layer: RecurrentLayer | None, name: str, error: np.ndarray
) -> list[tuple[str, np.ndarray]]:
    """Split a concatenated bidirectional output into its forward and backward halves."""
    if (
        layer is not None
        and name.startswith("output")
        and not name.startswith("output_")
        and layer.direction == "bidirectional"
        and layer.merge_mode == "concat"
        and error.shape[-1] == 2 * layer.units
    ):
        units = layer.units
        return [(f"{name}.forward", error[..., :units]), (f"{name}.backward", error[..., units:])]
    return [(name, error)]


def _note_direction(directions: dict[str, float], part: str, error: np.ndarray) -> None:
    """Keep the largest error per direction, judged by the name of what it belongs to."""
    if "forward" in part:
        key = "forward"
    elif "backward" in part:
        key = "backward"
    else:
        return
    largest = float(np.nan_to_num(error, nan=np.inf).max(initial=0.0))
    directions[key] = max(directions.get(key, 0.0), largest)


def _padding_split(
    layer: RecurrentLayer | None, error: np.ndarray, lengths: np.ndarray
) -> dict[str, float]:
    steps = np.arange(error.shape[1])[None, :]
    if layer is not None and layer.direction == "backward":
        # go_backwards outputs are in processing order: the padding comes first.
        valid = steps >= error.shape[1] - lengths[:, None]
    else:
        valid = steps < lengths[:, None]
    error = np.nan_to_num(error, nan=np.inf)
    return {
        "valid": float(error[valid].max(initial=0.0)),
        "padded": float(error[~valid].max(initial=0.0)),
    }
