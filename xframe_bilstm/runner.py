"""``compare()``: run one model on every framework, device and dtype, and report how they agree.

The source is converted to the canonical form once; a live source also runs itself
(``@original``). One input is drawn once (seeded, in float64) and every run sees the same
values, cast to its own dtype. Every run is compared with the float64 reference and with
the original, and every two runs of the same dtype with each other; each comparison's
tolerance comes from the float32 rounding noise of this model on this input
(:class:`~xframe_bilstm.comparison.Noise`), scaled to the precision of the coarser run,
unless ``rtol`` and ``atol`` are given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import itertools
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .canonical import RecurrentStack, initial_state_count, layer_state_names, output_names
from .comparison import ArrayComparison, Comparison, compare_outputs, measure_noise
from .correspondence import Correspondence, Source, correspond, native_source, stack_source
from .errors import FrameworkUnavailableError, UnsupportedFeatureError, WeightShapeError
from .frameworks import FRAMEWORKS, Framework, RunSpec
from .frameworks.base import KERNEL_PATHS
from .frameworks.keras import KerasLayerFramework
from .frameworks.torch import TorchModuleFramework
from .masks import check_lengths
from .report import PairReport, Report, RunRecord
from .sources import framework_of, is_whole_model, to_canonical

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
    paths: str | Sequence[str] = (),
    seed: int = 0,
    lengths: Sequence[int] | None = None,
    initial_states: Sequence[np.ndarray] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    batch: int | None = None,
    steps: int = DEFAULT_STEPS,
    progress: Callable[[int, int, str], None] | None = None,
) -> Report:
    """Run ``source`` on every framework, device and dtype asked for, and compare them all.

    The frameworks run ``source`` as the library reads it (its canonical form). A live
    source, a Keras layer or ``Sequential``, a torch module or a state_dict file (the native
    module it holds), also runs itself: by its own ``call`` or ``forward``, in its own dtype
    (the layer's compute dtype, the module's parameters'), on the CPU and on the planned
    devices its framework sees, whatever ``frameworks`` says, labelled e.g.
    ``keras[cpu,float32]@original``. It is the expected side of its pairs: with the
    reference and with every other run, so a misreading fails instead of agreeing with
    itself. A stateful Keras layer runs from zero states (or ``initial_states``) and keeps
    the states it carries. A canonical stack and a Keras file have no computation of their
    own besides their reading.

    Args:
        source: a Keras layer or ``Sequential``, a torch ``nn.LSTM``/``nn.GRU``/``nn.RNN``
            or converted module, the path of a state_dict file or of a ``.keras``/``.h5``
            model, or a :class:`~xframe_bilstm.RecurrentStack`.
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
        paths: alternative kernel paths to run besides each framework's default: names
            from :data:`~xframe_bilstm.frameworks.base.KERNEL_PATHS` (``mkldnn-off``,
            ``onednn-off``, ``onednn-on``, ``unroll``, ``cudnn-off``), each optionally
            qualified by a framework (``keras:cudnn-off``), or ``"all"``; each runs on the
            frameworks and devices that offer it, labelled e.g.
            ``torch[cpu,float32,mkldnn-off]``, and its record's settings say which kernel ran.
        seed: seed of the generated input.
        lengths: valid steps per row (B,) for right-padded input (Keras mask semantics).
        initial_states: every layer's initial states in Keras order, each (B, H).
        rtol: relative tolerance; give both or neither of ``rtol`` and ``atol``.
        atol: absolute tolerance; default: derived from this model's rounding noise.
        batch: rows of the generated input; default 4, or the batch a stateful Keras
            source keeps its states for.
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
    if is_whole_model(source):  # Embedding, Dense...: compared layer by layer as a graph
        from .models.compare import compare_model

        return compare_model(
            source,
            against=against,
            inputs=inputs,
            lengths=lengths,
            frameworks=frameworks,
            devices=devices,
            dtypes=dtypes,
            tf32=tf32,
            paths=paths,
            seed=seed,
            initial_states=initial_states,
            rtol=rtol,
            atol=atol,
        )
    original = _live(source)
    stack = to_canonical(source if original is None else original)
    description = _describe(source, stack)
    x = _inputs(stack, inputs, seed, _batch(batch, original), steps)
    checked_lengths = None if lengths is None else check_lengths(lengths, *x.shape[:2])
    states = _initial_states(stack, initial_states, x)
    specs = _plan(frameworks, devices, dtypes, tf32, paths)
    mine = stack_source(stack, int(x.shape[0]), int(x.shape[1]), description)
    subjects: list[_Subject] = []
    if against is not None:
        subjects.append(_plan_against(against, stack, x, states, specs, dtypes, tf32))
    if original is not None:  # the ground truth: planned whatever the frameworks asked
        subjects.append(_plan_subject("original", source, original, stack, x, specs, tf32))
    readings = {"": stack, **{subject.name: subject.stack for subject in subjects}}
    views = _views(mine, subjects)
    counts = {spec: len(output_names(stack)) for spec, _ in specs}
    for subject in subjects:
        specs += subject.runs
        counts.update({spec: len(subject.outputs.names) for spec, _ in subject.runs})

    runs: list[RunRecord] = []
    results: dict[RunSpec, tuple[np.ndarray, ...]] = {}
    for index, (spec, framework) in enumerate(specs):
        if progress is not None:
            progress(index, len(specs), spec.label)
        record, outputs = _run(
            framework, spec, readings[spec.subject], x, states, checked_lengths, counts[spec]
        )
        runs.append(record)
        if outputs is not None:
            results[spec] = outputs

    non_finite = _non_finite(stack, x, states)
    reference = results.get(RunSpec("reference", "cpu", "float64"))
    noise = measure_noise(stack, x, initial_states=states, lengths=checked_lengths, exact=reference)
    pairs = []
    for expected, actual in _pairs(list(results), views):
        if rtol is None or atol is None:
            tolerance, relative = noise.tolerance(max(expected.epsilon, actual.epsilon)), 0.0
        else:
            tolerance, relative = atol, rtol
        names, want, got, shown = _pair_arrays(
            readings, views, expected, actual, results, checked_lengths
        )
        pair = _pair_report(
            shown, names, want, got, expected, actual, tolerance, relative, checked_lengths
        )
        if non_finite is not None:  # saturating gates can hide an Inf: fail on it anyway
            marked = ArrayComparison("arguments", (), np.inf, np.inf, np.inf, (), 1, 0.0, 0.0)
            marked = dataclasses.replace(marked, problem=non_finite)
            comparison = Comparison((marked, *pair.comparison.arrays), pair.comparison.label)
            pair = dataclasses.replace(pair, comparison=comparison)
        pairs.append(pair)
    return Report(
        source=description,
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
        correspondence=_correspondence_note(views, checked_lengths),
    )


def _positive_int(value: Any, name: str) -> int:
    # bool is an int to Python, but batch=True is a mistake, not one row.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise WeightShapeError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _real_array(value: Any, name: str) -> np.ndarray:
    """``value`` as float64, or an error naming ``name`` when it holds no real numbers."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:  # ragged nested lists
        raise WeightShapeError(f"{name}: expected an array of real numbers ({error})") from error
    if array.dtype.kind not in "iuf":
        raise WeightShapeError(
            f"{name}: expected real numbers (an integer or float dtype), got dtype {array.dtype}"
        )
    # NaN and Inf stay: every run then computes them and the comparison marks them failed.
    return array.astype(np.float64)


def _inputs(
    stack: RecurrentStack, inputs: np.ndarray | None, seed: int, batch: int, steps: int
) -> np.ndarray:
    if inputs is None:
        shape = (
            _positive_int(batch, "batch"),
            _positive_int(steps, "steps"),
            stack.input_size,
        )
        return np.random.default_rng(seed).standard_normal(shape)
    x = _real_array(inputs, "inputs")
    if x.ndim != 3 or x.shape[2] != stack.input_size or 0 in x.shape:
        raise WeightShapeError(
            f"inputs: expected a non-empty array of shape (batch, time, {stack.input_size}), "
            f"got {x.shape}"
        )
    return x


def _non_finite(
    stack: RecurrentStack, x: np.ndarray, states: list[np.ndarray] | None
) -> str | None:
    """Where the arguments hold NaN or Inf, or None: such a run proves nothing."""
    arrays = {"inputs": x}
    for index, state in enumerate(states or []):
        arrays[f"initial_states[{index}]"] = state
    for index, layer in enumerate(stack.layers):
        for side, weights in zip(("forward", "backward"), layer.weights):
            for name in ("kernel", "recurrent_kernel", "bias"):
                value = getattr(weights, name)
                if value is not None:
                    arrays[f"layers[{index}].{side}.{name}"] = value
    found = []
    for name, array in arrays.items():
        bad = ~np.isfinite(np.asarray(array, dtype=np.float64))
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            found.append(f"{name} ({int(bad.sum())}, first at {first})")
    if not found:
        return None
    return "non-finite values in the arguments: " + ", ".join(found)


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
    arrays = [_real_array(state, "initial_states") for state in states]
    remaining = list(arrays)
    for index, layer in enumerate(stack.layers):
        for name in layer_state_names(layer):
            state = remaining.pop(0)
            if state.shape != (x.shape[0], layer.units):
                raise WeightShapeError(
                    f"initial_states (layers[{index}] {name}): expected shape "
                    f"{(x.shape[0], layer.units)} (batch, units), got {state.shape}"
                )
    return arrays


def _plan(
    frameworks: str | Sequence[str],
    devices: str | Sequence[str],
    dtypes: Sequence[str],
    tf32: bool,
    paths: str | Sequence[str] = (),
) -> list[tuple[RunSpec, Framework]]:
    """Every (run, framework) to execute: the reference first, each default path before the
    alternatives asked for."""
    names = _framework_names(frameworks)
    wanted_paths = parse_paths(paths)
    wanted_devices = None if devices == "auto" else set(_as_list(devices))
    dtypes = _as_list(dtypes)
    for dtype in dtypes:
        if dtype not in ("float16", "bfloat16", "float32", "float64"):
            raise ValueError(f"dtypes: {dtype!r} is not float16, bfloat16, float32 or float64")
    plan = [(RunSpec("reference", "cpu", "float64"), FRAMEWORKS["reference"]())]
    seen_devices: set[str] = set()
    for name in names:
        framework = FRAMEWORKS[name]()
        for device in framework.devices():
            seen_devices.add(device)
            if wanted_devices is not None and device not in wanted_devices:
                continue
            supported = framework.dtypes(device)
            offered = [
                path
                for path in framework.paths(device)
                if (None, path) in wanted_paths or (name, path) in wanted_paths
            ]
            for dtype in dtypes:
                if dtype in supported:
                    for path in ["", *offered]:
                        plan.append((RunSpec(name, device, dtype, tf32, path=path), framework))
    _check_available(names, wanted_devices, seen_devices, dtypes, plan)
    _check_paths(paths, wanted_paths, names, plan)
    return plan


def parse_paths(paths: str | Sequence[str]) -> set[tuple[str | None, str]]:
    """``(framework or None, path)`` for each path asked for (``"torch:mkldnn-off"``)."""
    if paths == "all":
        return {(None, path) for path in KERNEL_PATHS}
    wanted: set[tuple[str | None, str]] = set()
    for entry in _as_list(paths):
        framework, _, path = entry.rpartition(":")
        if path not in KERNEL_PATHS:
            raise ValueError(
                f"paths: {entry!r} is not a kernel path; known: {sorted(KERNEL_PATHS)}"
            )
        if framework and framework not in FRAMEWORKS:
            raise ValueError(f"paths: {entry!r} names no framework of {sorted(FRAMEWORKS)}")
        wanted.add((framework or None, path))
    return wanted


def _check_paths(
    paths: str | Sequence[str],
    wanted: set[tuple[str | None, str]],
    names: list[str],
    plan: list[tuple[RunSpec, Framework]],
) -> None:
    """Refuse a path, named on its own, that none of the planned runs offers."""
    if paths == "all":
        return
    planned = {(spec.framework, spec.path) for spec, _ in plan}
    missing = sorted(
        path if framework is None else f"{framework}:{path}"
        for framework, path in wanted
        if not any(p == path and framework in (None, f) for f, p in planned)
    )
    if missing:
        raise UnsupportedFeatureError(
            f"paths: {missing} not offered by {names} on the devices planned here "
            f"(mkldnn-off: torch on CPU; onednn-off/on: keras on CPU; unroll: keras; "
            "cudnn-off: torch and keras on GPUs)"
        )


def _check_available(
    names: list[str],
    wanted_devices: set[str] | None,
    seen_devices: set[str],
    dtypes: Sequence[str],
    plan: list[tuple[RunSpec, Framework]],
) -> None:
    """Refuse a device or dtype that no framework asked for offers here.

    Otherwise it would be skipped without a word and a comparison of nothing would pass. A
    device or dtype that only some of the frameworks offer runs on those: a run a framework
    cannot do is not an error of the request.
    """
    if not names:
        return
    if wanted_devices is not None:
        missing = sorted(wanted_devices - seen_devices)
        if missing:
            raise UnsupportedFeatureError(
                f"devices: {missing} not available to {names}; available here: "
                f"{sorted(seen_devices)}"
            )
    planned = {spec.dtype for spec, _ in plan[1:]}
    missing = [dtype for dtype in dtypes if dtype not in planned]
    if missing:
        raise UnsupportedFeatureError(
            f"dtypes: {missing} not offered by {names} on "
            f"{sorted(wanted_devices or seen_devices)}; offered: {sorted(planned)}"
        )


@dataclasses.dataclass(frozen=True)
class _Subject:
    """A model that runs on its own framework beside the source's reading: the user's
    ``original`` object itself, or the port it is compared ``against``."""

    name: str  # the RunSpec subject: "original" or "against"
    runs: list[tuple[RunSpec, Framework]]
    stack: RecurrentStack  # its reading: the layout of its states, the profiles' halves
    outputs: Source  # what it returns, to match with the other runs' outputs by meaning


def _live(source: Any) -> Any:
    """The framework object ``source`` is or holds: a Keras layer or ``Sequential``, a torch
    module, or the native module of a state_dict file; None for a canonical stack or a
    Keras file, which have no computation of their own beside their reading."""
    module = _torch_module(source)
    if module is not None:
        return module
    keras = sys.modules.get("keras")
    return source if keras is not None and isinstance(source, keras.layers.Layer) else None


def _batch(batch: int | None, original: Any) -> int:
    """The rows of a generated input: ``batch``, else those a stateful Keras layer keeps
    states for (it runs on no other batch), else :data:`DEFAULT_BATCH`."""
    if batch is not None:
        return batch
    if original is not None and framework_of(original) == "keras":
        from .adapters.keras import fixed_batch_size

        fixed = fixed_batch_size(original)
        if fixed is not None:
            return fixed
    return DEFAULT_BATCH


def _plan_against(
    against: Any,
    stack: RecurrentStack,
    x: np.ndarray,
    states: list[np.ndarray] | None,
    specs: list[tuple[RunSpec, Framework]],
    dtypes: Sequence[str],
    tf32: bool,
) -> _Subject:
    """Runs of the second model on its own framework, on the devices the plan uses.

    A torch module runs by its own ``forward``, in each of ``dtypes``; a state_dict file as
    the native module it holds; a Keras layer or ``Sequential`` by its own call, in the dtype
    its policy computes in; a Keras file or a canonical stack as its reading."""
    module = _torch_module(against)
    live = _live(against)
    other = to_canonical(against if module is None else module)
    if other.input_size != stack.input_size:
        raise WeightShapeError(
            f"against: takes {other.input_size} input features where the source takes "
            f"{stack.input_size}; they cannot run on the same input"
        )
    if module is not None and states is not None:
        _check_against_states(other, module, len(states))
    own_dtype = module is None and live is not None  # a Keras layer runs as its policy says
    return _plan_subject(
        "against", against, live, other, x, specs, tf32, None if own_dtype else dtypes
    )


def _plan_subject(
    name: str,
    model: Any,
    live: Any,
    reading: RecurrentStack,
    x: np.ndarray,
    specs: list[tuple[RunSpec, Framework]],
    tf32: bool,
    dtypes: Sequence[str] | None = None,
) -> _Subject:
    """The runs of ``model`` labelled ``@name``, read as ``reading``.

    ``live`` (a torch module or a Keras layer) runs by its own computation; else ``model``
    runs as its reading on its framework. With ``dtypes`` it runs in each of them on the
    devices the plan uses; without (the ``original``, a Keras ``against``), in its own dtype
    on the CPU and on the planned devices its framework sees.
    """
    batch, steps = (int(n) for n in x.shape[:2])
    description = _describe(model, reading)
    framework: Framework
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(live, torch.nn.Module):
        framework = TorchModuleFramework(live, reading)
        kind = "torch"
        native = isinstance(live, torch.nn.RNNBase)
        outputs = (native_source if native else stack_source)(reading, batch, steps, description)
        own = _parameter_dtype(live)
    elif live is not None:
        from .adapters.keras import compute_dtype

        framework = KerasLayerFramework(live)
        kind = "keras"
        outputs = stack_source(reading, batch, steps, description)
        own = compute_dtype(live)
    else:
        origin = framework_of(model)
        kind = "reference" if origin == "canonical" else origin
        framework = FRAMEWORKS[kind]()
        outputs = stack_source(reading, batch, steps, description)
        own = "float64"
    planned = {spec.device for spec, _ in specs}
    if dtypes is None:  # the original: what the user has, wherever its framework runs
        devices = sorted({"cpu"} | (planned & set(_devices(framework))))
        runs = [(RunSpec(kind, device, own, tf32, subject=name), framework) for device in devices]
        return _Subject(name, runs, reading, outputs)
    wanted = ["float64"] if kind == "reference" else list(dtypes)
    runs = [
        (RunSpec(kind, device, dtype, tf32, subject=name), framework)
        for device in sorted(planned & set(framework.devices()))
        for dtype in wanted
        if dtype in framework.dtypes(device)
    ]
    return _Subject(name, runs, reading, outputs)


def _devices(framework: Framework) -> list[str]:
    """The devices ``framework`` sees; just the CPU when it cannot say, so that the run is
    still planned and its record says why it cannot run."""
    try:
        return framework.devices()
    except Exception:  # e.g. Keras on another backend, without TensorFlow
        return ["cpu"]


def _parameter_dtype(module: Any) -> str:
    """The dtype a torch module's parameters hold, e.g. ``"float32"``."""
    parameter = next(iter(module.parameters()), None)
    return "float32" if parameter is None else str(parameter.dtype).removeprefix("torch.")


def _views(mine: Source, subjects: Sequence[_Subject]) -> dict[tuple[str, str], Correspondence]:
    """How each two of the source's runs, ``@original`` and ``@against`` match their outputs,
    by subjects (``""`` for the source's runs); a pair of subjects that do not correspond
    (possible only between the original and against) is left out and compared through the
    reference alone. Refuses an ``against`` whose outputs do not correspond to the source's.
    """
    views = {("", subject.name): correspond(mine, subject.outputs) for subject in subjects}
    named = {subject.name: subject.outputs for subject in subjects}
    if "original" in named and "against" in named:
        with contextlib.suppress(UnsupportedFeatureError):
            views[("original", "against")] = correspond(named["original"], named["against"])
    return views


def _correspondence_note(
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


def _torch_module(against: Any) -> Any:
    """The torch module ``against`` is or holds (a state_dict file), or None."""
    if isinstance(against, (str, os.PathLike)):
        if framework_of(against) != "torch":
            return None
        from .models.from_torch import load_state_dict_module

        return load_state_dict_module(os.fspath(against))
    torch = sys.modules.get("torch")
    return against if torch is not None and isinstance(against, torch.nn.Module) else None


def _check_against_states(other: RecurrentStack, module: Any, given: int) -> None:
    expected = initial_state_count(other)
    if given != expected:
        raise WeightShapeError(
            f"initial_states: {given} arrays fit the source, but against "
            f"({type(module).__name__}) takes {expected} (every layer's states in Keras "
            "order); compare models with the same layers, or leave initial_states out"
        )


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
    expected: int,
) -> tuple[RunRecord, tuple[np.ndarray, ...] | None]:
    """One run; a framework that raises fails its own run, never the comparison."""
    start = time.perf_counter()
    try:
        outputs, settings = framework.run(stack, x, spec, initial_states=states, lengths=lengths)
    except Exception as error:  # recorded in its own run; the comparison goes on
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        return RunRecord(spec, time.perf_counter() - start, error=message), None
    seconds = time.perf_counter() - start
    if len(outputs) != expected:
        problem = f"returned {len(outputs)} arrays where {expected} were expected"
        return RunRecord(spec, seconds, settings, error=problem), None
    return RunRecord(spec, seconds, settings), outputs


def _pairs(
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


def _pair_arrays(
    readings: dict[str, RecurrentStack],
    views: dict[tuple[str, str], Correspondence],
    expected: RunSpec,
    actual: RunSpec,
    results: dict[RunSpec, tuple[np.ndarray, ...]],
    lengths: np.ndarray | None,
) -> tuple[tuple[str, ...], tuple[np.ndarray, ...], tuple[np.ndarray, ...], RecurrentStack]:
    """What a pair compares: names, expected and actual arrays, and the stack they belong to
    (for the profiles). A pair with ``@against`` or ``@original`` compares what corresponds:
    by the correspondence of the two subjects, or of the one with the source's runs."""
    subjects = {expected.subject, actual.subject}
    if subjects == {""}:
        return output_names(readings[""]), results[expected], results[actual], readings[""]
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


def _pair_report(
    stack: RecurrentStack,
    names: Sequence[str],
    want_arrays: Sequence[np.ndarray],
    got_arrays: Sequence[np.ndarray],
    expected: RunSpec,
    actual: RunSpec,
    atol: float,
    rtol: float,
    lengths: np.ndarray | None,
) -> PairReport:
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
        for part, part_error in _halves(stack, name, error):
            _note_direction(directions, part, part_error)
            if part_error.ndim == 3:  # a sequence: (B, T, F)
                timesteps[part] = part_error.max(axis=(0, 2)).tolist()
                if lengths is not None:
                    padding[part] = _padding_split(stack, part_error, lengths)
    return PairReport(
        expected=expected.label,
        actual=actual.label,
        comparison=comparison,
        timesteps=timesteps,
        directions=directions,
        padding=padding,
    )


def _halves(stack: RecurrentStack, name: str, error: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Split a concatenated bidirectional output into its forward and backward halves."""
    last = stack.last
    concatenated = last.direction == "bidirectional" and last.merge_mode == "concat"
    if name == "output" and concatenated and error.shape[-1] == 2 * last.units:
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
    if isinstance(source, (str, os.PathLike)):  # name the file, not its Python type
        kind = "torch state_dict" if framework_of(source) == "torch" else "Keras file"
        return f"{kind} {os.fspath(source)} ({kinds}, units {stack.last.units})"
    origin = framework_of(source)
    name = getattr(source, "name", None) or type(source).__name__
    return f"{origin} {name} ({kinds}, units {stack.last.units})"
