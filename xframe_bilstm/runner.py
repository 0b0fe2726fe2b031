"""``compare()``: run one model on every framework, device and dtype, and report how they agree.

One path for every source: it is read once (:mod:`~xframe_bilstm.sources`) into a stack
or a graph, and its original, if it has one, runs itself (``@original``). One input is
drawn once (seeded, in float64) or checked once (:mod:`~xframe_bilstm.inputs`) and every
run sees the same values, cast to its own dtype. The runs are planned
(:mod:`~xframe_bilstm.planning`), each runs alone (a framework that raises fails its own
run), and they are paired and profiled (:mod:`~xframe_bilstm.pairing`). Each pair's
tolerance comes from the float32 rounding noise of this model on this input
(:class:`~xframe_bilstm.comparison.Noise`): each run may lie ten times it from the exact
values at its own precision, so a pair may differ by the sum of its two runs' allowances
(:meth:`~xframe_bilstm.comparison.Noise.pair_tolerance`), unless ``rtol`` and ``atol`` are
given.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .against import plan_against, read_against
from .comparison import ArrayComparison, Comparison, measure_noise
from .correspondence import output_names_of
from .custom import custom_layers_in_use
from .errors import UnsupportedFeatureError
from .frameworks import Framework, RunSpec
from .gradients import compare_gradients, gradient_refusal
from .inputs import as_list, named_shapes, non_finite, run_inputs
from .inputs import initial_states as checked_states
from .left_out import left_out
from .pairing import correspondence_note, pair_arrays, pair_report, pairs_of, views_of
from .planning import Plan, Subject, outputs_of, plan_original, plan_runs
from .quantization_budget import check_budget, measure_budgets
from .report import Report, RunRecord
from .sources import Read, describe, read_source, source_type
from .stack_graph import as_graph, state_layers, takes_lengths

DEFAULT_BATCH = 4
DEFAULT_STEPS = 20


def compare(
    source: Any,
    *,
    against: Any = None,
    inputs: Any = None,
    frameworks: str | Sequence[str] = "auto",
    devices: str | Sequence[str] = "auto",
    dtypes: Sequence[str] = ("float32",),
    tf32: bool = False,
    paths: str | Sequence[str] = (),
    seed: int = 0,
    lengths: Sequence[int] | None = None,
    initial_states: Sequence[np.ndarray] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    batch: int | None = None,
    steps: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    custom_layers: Mapping[str, Callable[..., Any]] | None = None,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None = None,
    gradients: bool = False,
    quantization_budget: float | None = None,
) -> Report:
    """Run ``source`` on every framework, device and dtype asked for, and compare them all.

    The frameworks run ``source`` as the library reads it: recurrent layers in a chain as
    their canonical stack, a whole model (Embedding, Dense, masks...) as its graph, which
    runs on the reference and as the torch port. A live source, a Keras layer or model, a
    torch module or a state_dict file (the native module it holds), also runs itself: by
    its own ``call`` or ``forward``, in its own dtype (the layer's compute dtype, the
    module's parameters'), on the CPU and on the planned devices its framework sees,
    whatever ``frameworks`` says, labelled e.g. ``keras[cpu,float32]@original``; so does a
    Keras 3 file, as Keras loads it, when Keras is asked for (or installed, under
    ``"auto"``). It is the expected side of its pairs: with the reference and with every
    other run, so a misreading fails instead of agreeing with itself. A stateful Keras
    layer runs from zero states (or ``initial_states``) and keeps the states it carries. A
    canonical stack has no computation of its own besides its reading.

    Args:
        source: a Keras layer or model, a torch ``nn.LSTM``/``nn.GRU``/``nn.RNN`` or
            converted module, the path of a state_dict file or of a ``.keras``/``.h5`` or
            ``.onnx`` model (an ONNX graph runs as given, ``onnxruntime[...]@original``), an
            ``onnx.ModelProto``, or a :class:`~xframe_bilstm.RecurrentStack`.
        against: optionally a second model of any of those kinds, e.g. your own port of
            ``source``: it runs on its own framework (labelled ``@against``) and is compared
            with the source's reference and runs.
        inputs: the input (B, T, D), or one array per input of a whole model (token ids
            as integers); default seeded: standard normal (batch, steps, D), and for a
            whole model padded the way its masks read (right- and left-padded rows).
        frameworks: ``"auto"`` (every installed one) or names among ``torch``, ``keras``,
            ``onnxruntime`` (our ONNX export), ``torch-onnx``, ``torch-onnx-dynamo`` and
            ``keras-onnx`` (the frameworks' own ONNX exporters, run in onnxruntime). The
            float64 reference always runs.
        devices: ``"auto"`` (every device each framework sees) or names such as ``"cpu"``,
            ``"gpu:0"``.
        dtypes: dtypes to run in (``float32``, ``float64``, ``float16``, ``bfloat16``; a
            whole model's port: ``float32`` and ``float64``).
        tf32: allow TF32 on GPUs (both frameworks turn it on by default; we turn it off
            unless asked, and put the previous setting back after each run).
        paths: alternative kernel paths to run besides each framework's default: names
            from :data:`~xframe_bilstm.frameworks.base.KERNEL_PATHS` (``mkldnn-off``,
            ``onednn-off``, ``onednn-on``, ``unroll``, ``cudnn-off``), each optionally
            qualified by a framework (``keras:cudnn-off``), or ``"all"``; each runs on the
            frameworks and devices that offer it, labelled e.g.
            ``torch[cpu,float32,mkldnn-off]``, and its record's settings say which kernel ran.
        seed: seed of the generated input.
        lengths: valid steps per row (B,) for right-padded input (Keras mask semantics). A
            whole model masks by its inputs' values: the lengths pad the generated input,
            and must agree with the mask the model computes from given inputs.
        initial_states: every layer's initial states in Keras order, each (B, H).
        rtol: relative tolerance; give both or neither of ``rtol`` and ``atol``.
        atol: absolute tolerance; default: derived from this model's rounding noise.
        batch: rows of the generated input; default 4, or the batch a stateful Keras
            source keeps its states for.
        steps: time steps of the generated input; default 20, or the length a Keras file's
            input is fixed to.
        progress: called as ``progress(done, total, label)`` before each run starts.
        custom_layers: factories of a Keras model's custom layers, as
            :func:`~xframe_bilstm.keras_to_torch` takes them. The float64 reference and
            the ONNX export cannot run a custom layer: they are left out, the report says
            so naming the class, and the tolerance comes from the torch port's own rounding.
        custom_modules: factories of the Keras layers of a torch module's custom children
            (or of a port's custom layers, once changed), by class or class name, as
            :func:`~xframe_bilstm.torch_to_keras` takes them; left out of the reference
            and the ONNX export as custom layers are.
        gradients: also compare, for one seeded random cotangent per output, the gradients
            with respect to the input, the initial states (when given) and every weight, in
            the float64 reference, PyTorch (autograd) and Keras (``GradientTape``), in gradient
            pairs of their own (:mod:`~xframe_bilstm.gradients`); runs that cannot
            differentiate (the ONNX columns) are named in ``left_out``. Recurrent layers
            only: a whole model is refused.
        quantization_budget: the allowance of the pairs of an int8 ONNX graph's run
            (``onnxruntime[cpu,int8]@original``; the graph reads as its dequantized float
            model, every other run runs that): the largest error it may have at any step.
            Default: the largest step budget of the rule
            :func:`~xframe_bilstm.quantization.quantization_error` uses, on this input.
            Pairs of float runs keep the float32 tolerance.

    Returns:
        A :class:`~xframe_bilstm.report.Report`, truthy when everything agrees.

    Example:
        >>> from xframe_bilstm import DirectionWeights, RecurrentLayer, RecurrentStack
        >>> w = DirectionWeights(np.full((2, 1), 0.5), np.full((1, 1), 0.5), np.zeros(1))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 2, 1, (w,),
        ...                                        recurrent_activation=None),))
        >>> report = compare(stack, frameworks=["torch"], dtypes=["float32", "float64"])
        >>> bool(report), [run.label for run in report.runs]
        (True, ['reference[cpu,float64]', 'torch[cpu,float32]', 'torch[cpu,float64]'])
    """
    if (rtol is None) != (atol is None):
        raise ValueError(
            f"give both rtol and atol, or neither (got rtol={rtol!r}, atol={atol!r}); "
            "with neither, the tolerance is derived from the model's rounding noise"
        )
    check_budget(quantization_budget)
    with custom_layers_in_use(custom_layers):
        read = read_source(
            source, example_shapes=_example_shapes(inputs), custom_modules=custom_modules
        )
    source, reading = read.source, read.reading  # the object read, also when given a Read
    if gradients and (why := gradient_refusal(reading)) is not None:
        raise UnsupportedFeatureError(f"gradients=True: {describe(source, reading)}: {why}")
    theirs = None if against is None else read_against(against, as_graph(reading))
    x, checked_lengths = run_inputs(
        reading,
        inputs,
        lengths,
        seed=seed,
        batch=_batch(batch, source, read, theirs),
        steps=_steps(steps, read, theirs),
    )
    states = _initial_states(reading, initial_states, x)
    masked = checked_lengths is not None
    specs = plan_runs(
        reading, frameworks, devices, dtypes, tf32, paths, original=read.framework, masked=masked
    )
    rows, time_steps = _shape(x)
    subjects: list[Subject] = []
    if theirs is not None:
        subjects.append(
            plan_against(against, theirs, reading, rows, time_steps, states, specs, dtypes, tf32)
        )
    original = plan_original(read, source, frameworks, rows, time_steps, specs, tf32)
    if original is not None:  # the ground truth
        subjects.append(original)
    description = describe(source, reading)
    readings = {"": reading, **{subject.name: subject.reading for subject in subjects}}
    mine = outputs_of(reading, rows, time_steps, description)
    views = views_of(mine, {subject.name: subject.outputs for subject in subjects})
    counts = {spec: len(output_names_of(reading)) for spec, _ in specs}
    for subject in subjects:
        specs += subject.runs
        counts.update({spec: len(subject.outputs.names) for spec, _ in subject.runs})

    runs, results = _run_all(specs, readings, x, states, checked_lengths, counts, progress)
    budgets = measure_budgets(specs, runs, results, x, states, checked_lengths, quantization_budget)
    non_finite_note = non_finite(reading, x, states)
    missing = left_out(reading, frameworks, masked=masked)
    if read.unrun:
        missing["the source's own run"] = read.unrun
    if "reference" not in missing:
        noise = measure_noise(
            reading,
            x,
            initial_states=states,
            lengths=checked_lengths,
            exact=results.get(RunSpec("reference", "cpu", "float64")),
        )
    else:  # no reference (a user's class): the torch port's own rounding
        from .models.to_torch import build_torch
        from .models.torch_custom import module_noise

        noise = module_noise(build_torch(as_graph(reading)), as_list(x))
    pairs = []
    for expected, actual in pairs_of(list(results), views):
        budget = budgets.of(expected, actual)
        if budget is not None:  # an int8 run: quantization, not float32 rounding
            tolerance, relative = budget, 0.0
        elif rtol is None or atol is None:
            tolerance = noise.pair_tolerance(expected.epsilon, actual.epsilon)
            relative = 0.0
        else:
            tolerance, relative = atol, rtol
        names, want, got, shown = pair_arrays(
            readings, views, expected, actual, results, checked_lengths
        )
        kind = "outputs" if budget is None else "quantization"
        pair = pair_report(
            shown, names, want, got, expected, actual, tolerance, relative, checked_lengths, kind
        )
        if non_finite_note is not None:  # saturating gates can hide an Inf: fail on it anyway
            marked = ArrayComparison("arguments", (), np.inf, np.inf, np.inf, (), 1, 0.0, 0.0)
            marked = dataclasses.replace(marked, problem=non_finite_note)
            comparison = Comparison((marked, *pair.comparison.arrays), pair.comparison.label)
            pair = dataclasses.replace(pair, comparison=comparison)
        pairs.append(pair)
    section = None
    if gradients:
        section = compare_gradients(
            reading,
            specs,
            readings,
            views,
            x,
            seed=seed,
            initial_states=states,
            lengths=checked_lengths,
            tolerance=None if atol is None or rtol is None else (atol, rtol),
            progress=progress,
        )
    report = Report(
        source=description,
        input_shape=(rows, time_steps, *_first(x).shape[2:]),
        inputs=named_shapes(as_graph(reading), x),
        seed=seed,
        lengths=None if checked_lengths is None else tuple(int(n) for n in checked_lengths),
        runs=tuple(runs),
        pairs=tuple(pairs),
        versions=_versions(framework for _, framework in specs),
        tolerance_note=_joined(_tolerance_note(rtol, atol, noise, missing), budgets.note()),
        quantization_budget=budgets.value,
        left_out=tuple(f"{name}: {why}" for name, why in missing.items()),
        correspondence=correspondence_note(views, checked_lengths),
    )
    if section is None:
        return report
    return dataclasses.replace(
        report,
        gradient_pairs=section.pairs,
        gradient_failures=section.failures,
        gradient_note=section.note,
        left_out=report.left_out + section.left_out,
    )


def _tolerance_note(
    rtol: float | None, atol: float | None, noise: Any, missing: Mapping[str, str]
) -> str:
    """Where the float pairs' tolerance comes from."""
    if rtol is not None:
        return f"tolerance: rtol={rtol}, atol={atol} (given)"
    allowed = "each run allowed ten times it at its precision, a pair the sum of its runs'"
    if "reference" not in missing:
        return (
            f"tolerance: derived from the float32 reference's drift {noise.float32:.3g} "
            f"(output scale {noise.scale:.3g}), {allowed}"
        )
    return (
        f"tolerance: derived from the torch port's float32 drift {noise.float32:.3g} from "
        f"its float64 run (output scale {noise.scale:.3g}), {allowed}"
    )


def _joined(*notes: str) -> str:
    """The notes that say something, one after the other."""
    return "; ".join(note for note in notes if note)


def _example_shapes(inputs: Any) -> list[tuple[int | str, ...]] | None:
    """The shape of each input given, without its batch axis; None when none is. The batch
    axis is the first, or, where the inputs' first axes differ and one size is among the
    first two axes of each, the axis holding it: marked ``"batch"`` where it is second (a
    decoder's step: (layers, batch, units) states beside (batch,) ids)."""
    if inputs is None:
        return None
    given = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    shapes = [tuple(int(n) for n in np.shape(one)) for one in given]
    if len({shape[:1] for shape in shapes}) < 2:  # one input, or one first axis
        return [shape[1:] for shape in shapes]
    shared = set.intersection(*(set(shape[:2]) for shape in shapes))
    if len(shared) != 1:
        return [shape[1:] for shape in shapes]
    (batch,) = shared
    return [shape[1:] if shape[0] == batch else (shape[0], "batch", *shape[2:]) for shape in shapes]


def _first(x: Any) -> np.ndarray:
    return x[0] if isinstance(x, tuple) else x


def _shape(x: Any) -> tuple[int, int]:
    """Rows and time steps of the input (of the first input of a graph)."""
    first = _first(x)
    return int(first.shape[0]), int(first.shape[1]) if first.ndim > 1 else 1


def _batch(batch: int | None, source: Any, read: Read, against: Read | None) -> int:
    """The rows of a generated input: ``batch``, else those the original's input (or the
    ``against`` model's: an ONNX export of one batch size) is fixed to, or the stateful
    Keras layers of a live source keep states for (they run on no other batch), else
    :data:`DEFAULT_BATCH`."""
    if batch is not None:
        return batch
    fixed = read.batch or (against.batch if against is not None else None)
    if fixed is not None:
        return fixed
    live = source_type(source) == "keras" and read.original is not None
    if live:
        from .adapters.keras import fixed_batch_size

        fixed = fixed_batch_size(source)
        if fixed is not None:
            return fixed
    return DEFAULT_BATCH


def _steps(steps: int | None, read: Read, against: Read | None) -> int:
    """The time steps of a generated input: ``steps``, else those the original's input
    (or the ``against`` model's) is fixed to, else :data:`DEFAULT_STEPS`."""
    fixed = read.steps or (against.steps if against is not None else None)
    return steps if steps is not None else fixed or DEFAULT_STEPS


def _initial_states(reading: Any, states: Any, x: Any) -> list[np.ndarray] | None:
    """The initial states checked (count and shapes, by layer name) against the graph's
    :func:`~.stack_graph.state_layers`. Every run takes them beside the inputs where the
    graph's input takes lengths (:func:`~.stack_graph.takes_lengths`); a graph that masks
    by its values (a whole model) gives its runs besides the reference (its port, Keras as
    loaded, the ONNX exports) no place for them yet."""
    graph = as_graph(reading)
    if states is not None and state_layers(graph) and not takes_lengths(graph):
        raise UnsupportedFeatureError(
            f"initial_states: {graph.source}: the runs of a whole model (its torch port, "
            "the model as loaded, its ONNX exports) start its recurrent layers from zeros; "
            "compare the recurrent layers on their own to give initial states"
        )
    return checked_states(reading, states, x)


def _run_all(
    specs: Plan,
    readings: dict[str, Any],
    x: Any,
    states: list[np.ndarray] | None,
    lengths: np.ndarray | None,
    counts: dict[RunSpec, int],
    progress: Callable[[int, int, str], None] | None,
) -> tuple[list[RunRecord], dict[RunSpec, tuple[np.ndarray, ...]]]:
    runs: list[RunRecord] = []
    results: dict[RunSpec, tuple[np.ndarray, ...]] = {}
    for index, (spec, framework) in enumerate(specs):
        if progress is not None:
            progress(index, len(specs), spec.label)
        record, outputs = _run(
            framework, spec, readings[spec.subject], x, states, lengths, counts[spec]
        )
        runs.append(record)
        if outputs is not None:
            results[spec] = outputs
    return runs, results


def _run(
    framework: Framework,
    spec: RunSpec,
    reading: Any,
    x: Any,
    states: list[np.ndarray] | None,
    lengths: np.ndarray | None,
    expected: int,
) -> tuple[RunRecord, tuple[np.ndarray, ...] | None]:
    """One run; a framework that raises fails its own run, never the comparison."""
    start = time.perf_counter()
    try:
        outputs, settings = framework.run(reading, x, spec, initial_states=states, lengths=lengths)
    except Exception as error:  # recorded in its own run; the comparison goes on
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        return RunRecord(spec, time.perf_counter() - start, error=message), None
    seconds = time.perf_counter() - start
    if len(outputs) != expected:
        problem = f"returned {len(outputs)} arrays where {expected} were expected"
        return RunRecord(spec, seconds, settings, error=problem), None
    return RunRecord(spec, seconds, settings), outputs


def _versions(frameworks: Iterable[Framework]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for framework in frameworks:
        versions.update(framework.versions())
    return versions


__all__ = ["DEFAULT_BATCH", "DEFAULT_STEPS", "compare"]
