"""``compare()``: run one model on every framework, device and dtype, and report how they agree.

The source is converted to the canonical form once. One input is drawn once (seeded, in
float64) and every run sees the same values, cast to its own dtype. Every run is compared
with the float64 reference, and every two runs of the same dtype with each other; each
comparison's tolerance comes from the float32 rounding noise of this model on this input
(:class:`~xframe_bilstm.comparison.Noise`), scaled to the precision of the coarser run,
unless ``rtol`` and ``atol`` are given.
"""

from __future__ import annotations

import importlib.util
import itertools
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .canonical import RecurrentStack, initial_state_count, output_names
from .comparison import Comparison, compare_arrays, measure_noise
from .errors import FrameworkUnavailableError, WeightShapeError
from .frameworks import FRAMEWORKS, Framework, RunSpec
from .masks import check_lengths
from .report import PairReport, Report, RunRecord
from .sources import framework_of, to_canonical

DEFAULT_BATCH = 4
DEFAULT_STEPS = 20

_EXTRAS = {
    "torch": "torch",
    "keras": "tf",
    "onnxruntime": "onnx",
    "torch-onnx": "torch,onnx",
    "torch-onnx-dynamo": "torch,onnx",
    "keras-onnx": "tf,onnx",
}


def compare(
    source: Any,
    *,
    against: Any = None,
    inputs: np.ndarray | None = None,
    frameworks: str | Sequence[str] = "auto",
    devices: str | Sequence[str] = "auto",
    dtypes: Sequence[str] = ("float32",),
    tf32: bool = False,
    seed: int = 0,
    lengths: Sequence[int] | None = None,
    initial_states: Sequence[np.ndarray] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    batch: int = DEFAULT_BATCH,
    steps: int = DEFAULT_STEPS,
    progress: Callable[[int, int, str], None] | None = None,
) -> Report:
    """Run ``source`` on every framework, device and dtype asked for, and compare them all.

    Args:
        source: a Keras layer or ``Sequential``, a torch ``nn.LSTM``/``nn.GRU``/``nn.RNN``
            or converted module, or a :class:`~xframe_bilstm.RecurrentStack`.
        against: optionally a second model of any of those kinds, e.g. your own port of
            ``source``: it runs on its own framework (labelled ``@against``) and is compared
            with the source's reference and runs.
        inputs: the input (B, T, D); default a seeded standard normal (batch, steps, D).
        frameworks: ``"auto"`` (every installed one) or names among ``torch``, ``keras``,
            ``onnxruntime`` (our ONNX export), ``torch-onnx``, ``torch-onnx-dynamo`` and
            ``keras-onnx`` (the frameworks' own ONNX exporters, run in onnxruntime). The
            float64 reference always runs.
        devices: ``"auto"`` (every device each framework sees) or names such as ``"cpu"``,
            ``"gpu:0"``.
        dtypes: dtypes to run in (``float32``, ``float64``, ``float16``, ``bfloat16``).
        tf32: allow TF32 on GPUs (both frameworks turn it on by default; we turn it off
            unless asked, and put the previous setting back after each run).
        seed: seed of the generated input.
        lengths: valid steps per row (B,) for right-padded input (Keras mask semantics).
        initial_states: every layer's initial states in Keras order, each (B, H).
        rtol: relative tolerance; give both or neither of ``rtol`` and ``atol``.
        atol: absolute tolerance; default: derived from this model's rounding noise.
        batch: rows of the generated input.
        steps: time steps of the generated input.
        progress: called as ``progress(done, total, label)`` before each run starts.

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
    stack = to_canonical(source)
    x = _inputs(stack, inputs, seed, batch, steps)
    checked_lengths = None if lengths is None else check_lengths(lengths, *x.shape[:2])
    states = _initial_states(stack, initial_states, x)
    specs = _plan(frameworks, devices, dtypes, tf32)
    models = {spec: stack for spec, _ in specs}
    if against is not None:
        other = _against(against, stack)
        extra = _plan_against(framework_of(against), specs, dtypes, tf32)
        specs += extra
        models.update({spec: other for spec, _ in extra})

    runs: list[RunRecord] = []
    results: dict[RunSpec, tuple[np.ndarray, ...]] = {}
    for index, (spec, framework) in enumerate(specs):
        if progress is not None:
            progress(index, len(specs), spec.label)
        record, outputs = _run(framework, spec, models[spec], x, states, checked_lengths)
        runs.append(record)
        if outputs is not None:
            results[spec] = outputs

    reference = results.get(RunSpec("reference", "cpu", "float64"))
    noise = measure_noise(stack, x, initial_states=states, lengths=checked_lengths, exact=reference)
    pairs = []
    for expected, actual in _pairs(list(results)):
        if rtol is None or atol is None:
            tolerance, relative = noise.tolerance(max(expected.epsilon, actual.epsilon)), 0.0
        else:
            tolerance, relative = atol, rtol
        pairs.append(
            _pair_report(stack, expected, actual, results, tolerance, relative, checked_lengths)
        )
    return Report(
        source=_describe(source, stack),
        input_shape=tuple(x.shape),
        seed=seed,
        lengths=None if checked_lengths is None else tuple(int(n) for n in checked_lengths),
        runs=tuple(runs),
        pairs=tuple(pairs),
        versions=_versions(framework for _, framework in specs),
        tolerance_note=(
            f"tolerance: rtol={rtol}, atol={atol} (given)"
            if rtol is not None
            else f"tolerance: derived from the float32 reference's drift {noise.float32:.3g} "
            f"(output scale {noise.scale:.3g}), scaled to each pair's coarser precision"
        ),
    )


def _inputs(
    stack: RecurrentStack, inputs: np.ndarray | None, seed: int, batch: int, steps: int
) -> np.ndarray:
    if inputs is None:
        rng = np.random.default_rng(seed)
        return rng.standard_normal((batch, steps, stack.input_size))
    x = np.asarray(inputs, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != stack.input_size or 0 in x.shape:
        raise WeightShapeError(
            f"inputs: expected a non-empty array of shape (batch, time, {stack.input_size}), "
            f"got {x.shape}"
        )
    return x


def _initial_states(
    stack: RecurrentStack, states: Sequence[np.ndarray] | None, x: np.ndarray
) -> list[np.ndarray] | None:
    if states is None:
        return None
    expected = initial_state_count(stack)
    if len(states) != expected:
        raise WeightShapeError(
            f"initial_states: expected {expected} arrays (every layer's states in Keras "
            f"order), got {len(states)}"
        )
    return [np.asarray(state, dtype=np.float64) for state in states]


def _plan(
    frameworks: str | Sequence[str],
    devices: str | Sequence[str],
    dtypes: Sequence[str],
    tf32: bool,
) -> list[tuple[RunSpec, Framework]]:
    """Every (run, framework) to execute: the reference first."""
    names = _framework_names(frameworks)
    wanted_devices = None if devices == "auto" else set(_as_list(devices))
    plan = [(RunSpec("reference", "cpu", "float64"), FRAMEWORKS["reference"]())]
    for name in names:
        framework = FRAMEWORKS[name]()
        for device in framework.devices():
            if wanted_devices is not None and device not in wanted_devices:
                continue
            supported = framework.dtypes(device)
            for dtype in dtypes:
                if dtype not in ("float16", "bfloat16", "float32", "float64"):
                    raise ValueError(
                        f"dtypes: {dtype!r} is not float16, bfloat16, float32 or float64"
                    )
                if dtype in supported:
                    plan.append((RunSpec(name, device, dtype, tf32), framework))
    return plan


def _against(against: Any, stack: RecurrentStack) -> RecurrentStack:
    other = to_canonical(against)
    if other.input_size != stack.input_size:
        raise WeightShapeError(
            f"against: takes {other.input_size} input features where the source takes "
            f"{stack.input_size}; they cannot run on the same input"
        )
    return other


def _plan_against(
    origin: str, specs: list[tuple[RunSpec, Framework]], dtypes: Sequence[str], tf32: bool
) -> list[tuple[RunSpec, Framework]]:
    """Runs of the second model: on its own framework, on the devices the plan uses."""
    name = "reference" if origin == "canonical" else origin
    framework = FRAMEWORKS[name]()
    devices = sorted({spec.device for spec, _ in specs} & set(framework.devices()))
    wanted = ["float64"] if name == "reference" else list(dtypes)
    return [
        (RunSpec(name, device, dtype, tf32, subject="against"), framework)
        for device in devices
        for dtype in wanted
        if dtype in framework.dtypes(device)
    ]


def _framework_names(frameworks: str | Sequence[str]) -> list[str]:
    runnable = [name for name in FRAMEWORKS if name != "reference"]
    if frameworks == "auto":
        return [name for name in runnable if FRAMEWORKS[name].available()]
    names = [name for name in _as_list(frameworks) if name != "reference"]
    for name in names:
        if name not in FRAMEWORKS:
            raise ValueError(f"frameworks: {name!r} is not one of {sorted(FRAMEWORKS)}")
        # Asked for by name, a framework runs when its own package is there; a missing
        # helper package (an exporter's, say) then fails its run with the reason.
        if importlib.util.find_spec(FRAMEWORKS[name].module) is None:
            raise FrameworkUnavailableError(
                f"framework {name!r} is not installed; install it with: "
                f"pip install 'xframe_bilstm[{_EXTRAS.get(name, 'all')}]'"
            )
    return names


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _run(
    framework: Framework,
    spec: RunSpec,
    stack: RecurrentStack,
    x: np.ndarray,
    states: list[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> tuple[RunRecord, tuple[np.ndarray, ...] | None]:
    """One run; a framework that raises fails its own run, never the comparison."""
    start = time.perf_counter()
    try:
        outputs, settings = framework.run(stack, x, spec, initial_states=states, lengths=lengths)
    except Exception as error:  # recorded in its own run; the comparison goes on
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        return RunRecord(spec, time.perf_counter() - start, error=message), None
    seconds = time.perf_counter() - start
    expected = len(output_names(stack))
    if len(outputs) != expected:
        problem = f"returned {len(outputs)} arrays where {expected} were expected"
        return RunRecord(spec, seconds, settings, error=problem), None
    return RunRecord(spec, seconds, settings), outputs


def _pairs(specs: list[RunSpec]) -> Iterable[tuple[RunSpec, RunSpec]]:
    """Each run against the reference, and every two runs of one dtype against each other."""
    reference = [s for s in specs if s.framework == "reference" and not s.subject]
    others = [s for s in specs if s.framework != "reference" or s.subject]
    for spec in others:
        for ref in reference:
            yield ref, spec
    for first, second in itertools.combinations(others, 2):
        if first.dtype == second.dtype:
            yield first, second


def _pair_report(
    stack: RecurrentStack,
    expected: RunSpec,
    actual: RunSpec,
    results: dict[RunSpec, tuple[np.ndarray, ...]],
    atol: float,
    rtol: float,
    lengths: np.ndarray | None,
) -> PairReport:
    names = output_names(stack)
    comparison_arrays = []
    timesteps: dict[str, list[float]] = {}
    directions: dict[str, float] = {}
    padding: dict[str, dict[str, float]] = {}
    for name, want, got in zip(names, results[expected], results[actual]):
        comparison_arrays.append(compare_arrays(name, want, got, atol=atol, rtol=rtol))
        error = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
        for part, part_error in _halves(stack, name, error):
            _note_direction(directions, part, part_error)
            if part_error.ndim == 3:  # a sequence: (B, T, F)
                timesteps[part] = part_error.max(axis=(0, 2)).tolist()
                if lengths is not None:
                    padding[part] = _padding_split(stack, part_error, lengths)
    return PairReport(
        expected=expected.label,
        actual=actual.label,
        comparison=Comparison(tuple(comparison_arrays), f"{actual.label} vs {expected.label}"),
        timesteps=timesteps,
        directions=directions,
        padding=padding,
    )


def _halves(stack: RecurrentStack, name: str, error: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Split a concatenated bidirectional output into its forward and backward halves."""
    last = stack.last
    concatenated = last.direction == "bidirectional" and last.merge_mode == "concat"
    if name == "output" and concatenated:
        units = last.units
        return [("output.forward", error[..., :units]), ("output.backward", error[..., units:])]
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
    stack: RecurrentStack, error: np.ndarray, lengths: np.ndarray
) -> dict[str, float]:
    steps = np.arange(error.shape[1])[None, :]
    if stack.last.direction == "backward":
        # go_backwards outputs are in processing order: the padding comes first.
        valid = steps >= error.shape[1] - lengths[:, None]
    else:
        valid = steps < lengths[:, None]
    error = np.nan_to_num(error, nan=np.inf)
    return {
        "valid": float(error[valid].max(initial=0.0)),
        "padded": float(error[~valid].max(initial=0.0)),
    }


def _versions(frameworks: Iterable[Framework]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for framework in frameworks:
        versions.update(framework.versions())
    return versions


def _describe(source: Any, stack: RecurrentStack) -> str:
    kinds = "+".join(
        f"{layer.cell}{'' if layer.direction == 'forward' else '/' + layer.direction}"
        for layer in stack.layers
    )
    origin = framework_of(source)
    name = getattr(source, "name", None) or type(source).__name__
    return f"{origin} {name} ({kinds}, units {stack.last.units})"
