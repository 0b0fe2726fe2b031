"""What a comparison runs: every (run, framework) for the source's reading, its original
and the model it is compared ``against``, each labelled by a :class:`RunSpec`.

The reference runs first, then each framework asked for on each device and dtype it offers,
each default kernel path before the alternatives asked for. A framework that cannot run the
reading (``Framework.supports``) is left out under ``"auto"`` and refused by name when asked
for, unless the source's original runs on it (a Keras model runs in Keras as loaded). What
is asked for and offered nowhere is refused, so that a comparison of nothing never passes.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .correspondence import Source, graph_source, native_source, stack_source
from .errors import FrameworkUnavailableError, UnsupportedFeatureError
from .frameworks import FRAMEWORKS, Framework, RunSpec, auto_frameworks
from .frameworks.base import KERNEL_PATHS
from .frameworks.keras import KerasLayerFramework
from .frameworks.keras_backends import with_backend_originals
from .frameworks.onnxruntime import OnnxGraphFramework
from .frameworks.torch import TorchModuleFramework
from .left_out import refusal
from .reference import Reading
from .sources import Read, describe, source_type
from .stack_graph import as_graph, stack_of, takes_lengths

Plan = list[tuple[RunSpec, Framework]]

_EXTRAS = {
    "torch": "torch",
    "keras": "tf",
    "onnxruntime": "onnx",
    "torch-onnx": "torch,onnx",
    "torch-onnx-dynamo": "torch,onnx",
    "keras-onnx": "tf,onnx",
    "keras-jax": "keras-jax",
    "keras-torch": "keras-torch",
    "tflite": "tflite",
}
# The dtypes a model graph's torch port is checked in.
GRAPH_DTYPES = ("float32", "float64")


def plan_runs(
    reading: Reading,
    frameworks: str | Sequence[str],
    devices: str | Sequence[str],
    dtypes: Sequence[str],
    tf32: bool,
    paths: str | Sequence[str] = (),
    *,
    original: str = "",
    masked: bool = False,
) -> Plan:
    """Every run of the reading: the reference first, each default path before the
    alternatives asked for. ``original`` names the framework the source's original runs on;
    ``masked``, that the runs get per-row lengths."""
    auto = frameworks == "auto"
    names = _runnable(reading, _framework_names(frameworks), auto, original, masked)
    wanted_paths = parse_paths(paths)
    wanted_devices = None if devices == "auto" else set(as_list(devices))
    dtypes = as_list(dtypes)
    for dtype in dtypes:
        if dtype not in ("float16", "bfloat16", "float32", "float64"):
            raise ValueError(f"dtypes: {dtype!r} is not float16, bfloat16, float32 or float64")
    why = dtype_refusal(reading, dtypes)
    if why:
        raise UnsupportedFeatureError(f"dtypes: {why}, got {dtypes}")
    reference = FRAMEWORKS["reference"]()
    # Left out where it cannot run the reading (custom layers); the report says why.
    plan: Plan = (
        [] if reference.supports(reading) else [(RunSpec("reference", "cpu", "float64"), reference)]
    )
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


def dtype_refusal(reading: Reading, dtypes: Sequence[str]) -> str:
    """Why ``reading`` cannot run in every one of ``dtypes`` (none at all included), or ""
    when it can. A graph whose input takes lengths (recurrent layers, which every framework
    runs as the layers' own modules) runs in any float dtype; one that masks by its values
    (a whole model, whose torch port is built in :data:`GRAPH_DTYPES`) in those only.

    Example:
        >>> from xframe_bilstm.graph import LayerRecord, ModelGraph
        >>> x = LayerRecord("x", "input", "InputLayer", options={"shape": (2,), "dtype": "f"})
        >>> dtype_refusal(ModelGraph("m", (x,), ("x",), ("x",)), ["float16"])
        'a whole model runs in float32 and float64'
    """
    if takes_lengths(as_graph(reading)):
        return ""
    if dtypes and all(dtype in GRAPH_DTYPES for dtype in dtypes):
        return ""
    return f"a whole model runs in {' and '.join(GRAPH_DTYPES)}"


def _runnable(
    reading: Reading, names: list[str], auto: bool, original: str, masked: bool
) -> list[str]:
    """The frameworks that can run ``reading`` (with per-row lengths where ``masked``); one
    asked for by name that cannot (and on which the original does not run either) is
    refused with the reason."""
    reasons = {name: refusal(name, reading, masked) for name in names}
    refused = [name for name, why in reasons.items() if why and name != original]
    if refused and not auto:
        layers = as_graph(reading).layers
        kinds = [r.class_name for r in layers if r.kind not in ("input", "recurrent")]
        what = f"a whole model ({', '.join(dict.fromkeys(kinds))})" if kinds else "these layers"
        raise UnsupportedFeatureError(
            f"frameworks: {refused} cannot run {what}: "
            + "; ".join(str(reasons[name]) for name in refused)
            + "; a model runs on the reference, as the torch port, on onnxruntime and "
            "rebuilt in Keras (run by Keras or exported by it) where they can run it, and, "
            "for a Keras or torch source, as loaded (@original)"
        )
    return [name for name in names if not reasons[name]]


def parse_paths(paths: str | Sequence[str]) -> set[tuple[str | None, str]]:
    """``(framework or None, path)`` for each path asked for (``"torch:mkldnn-off"``)."""
    if paths == "all":
        return {(None, path) for path in KERNEL_PATHS}
    wanted: set[tuple[str | None, str]] = set()
    for entry in as_list(paths):
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
    plan: Plan,
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
            "cudnn-off: torch and keras on GPUs; dynamic-range-int8: tflite, named in "
            "frameworks); an @original runs as it was loaded or "
            "built, on its default path"
        )


def _check_available(
    names: list[str],
    wanted_devices: set[str] | None,
    seen_devices: set[str],
    dtypes: Sequence[str],
    plan: Plan,
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


def _framework_names(frameworks: str | Sequence[str]) -> list[str]:
    if frameworks == "auto":
        return auto_frameworks()
    names = [name for name in as_list(frameworks) if name != "reference"]
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


def as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@dataclass(frozen=True)
class Subject:
    """A model that runs on its own framework beside the source's reading: the user's
    ``original`` object itself, or the port it is compared ``against``."""

    name: str  # the RunSpec subject: "original" or "against"
    runs: Plan
    reading: Reading  # the layout of its states and outputs, the profiles' halves
    outputs: Source  # what it returns, to match with the other runs' outputs by meaning


def plan_original(
    read: Read,
    source: Any,
    frameworks: str | Sequence[str],
    batch: int,
    steps: int,
    specs: Plan,
    tf32: bool,
) -> Subject | None:
    """The runs of the source's own computation, ``@original``, or None when it has none.

    A live object or an ONNX graph runs whatever the frameworks asked; a Keras file's model,
    which Keras has to load, runs when Keras is asked for, or is installed under ``"auto"``."""
    if read.original is None:
        return None
    if source_type(source) == "Keras file":
        wanted = "keras" in as_list(frameworks) if frameworks != "auto" else None
        if not (wanted or (wanted is None and FRAMEWORKS["keras"].available())):
            return None
    subject = plan_subject("original", source, read, batch, steps, specs, tf32)
    return with_backend_originals(subject, read, frameworks, specs)


def plan_subject(
    name: str,
    model: Any,
    read: Read,
    batch: int,
    steps: int,
    specs: Plan,
    tf32: bool,
    dtypes: Sequence[str] | None = None,
) -> Subject:
    """The runs of ``model`` labelled ``@name``.

    Its original (a torch module, a Keras layer or model, an ONNX graph) runs by its own
    computation; else it runs as its reading on the reference. With ``dtypes`` it runs in
    each of them on the devices the plan uses; without (the ``original``, a Keras or ONNX
    ``against``), in its own dtype on the CPU and on the planned devices its framework sees.
    """
    reading = read.reading
    description = describe(model, reading)
    framework: Framework = FRAMEWORKS["reference"]()
    kind, own, outputs = "reference", "float64", outputs_of(reading, batch, steps, description)
    if read.framework == "torch" and read.original is not None:
        live = read.original()
        framework, kind, own = TorchModuleFramework(live), "torch", _parameter_dtype(live)
        native = isinstance(live, sys.modules["torch"].nn.RNNBase)
        outputs = outputs_of(reading, batch, steps, description, native=native)
    elif read.framework == "keras" and read.original is not None:
        framework, kind, own = KerasLayerFramework(read.original), "keras", _keras_dtype(read)
    elif read.framework == "onnxruntime" and read.original is not None:
        framework = graph = _onnx_framework(read)
        kind, own, outputs = "onnxruntime", graph.dtype, graph.returns(batch, steps, description)
    planned = {spec.device for spec, _ in specs}
    if dtypes is None:  # the original: what the user has, wherever its framework runs
        devices = sorted({"cpu"} | (planned & set(_devices(framework))))
        own_runs = [
            (RunSpec(kind, device, own, tf32, subject=name), framework) for device in devices
        ]
        return Subject(name, own_runs, reading, outputs)
    wanted = ["float64"] if kind == "reference" else list(dtypes)
    runs: Plan = [
        (RunSpec(kind, device, dtype, tf32, subject=name), framework)
        for device in sorted(planned & set(framework.devices()))
        for dtype in wanted
        if dtype in framework.dtypes(device)
    ]
    return Subject(name, runs, reading, outputs)


def _onnx_framework(read: Read) -> OnnxGraphFramework:
    """The framework an ONNX original runs on: an int8 graph on onnxruntime's int8 kernels,
    its inputs and outputs meaning what its dequantized float model's mean."""
    assert read.original is not None
    if not read.quantized:
        return OnnxGraphFramework(read.original(), read.reading)
    from .adapters.onnx.quantized import dequantized_model
    from .frameworks.onnx_int8 import OnnxInt8Framework

    int8 = read.original()
    return OnnxInt8Framework(int8, dequantized_model(int8), read.reading)


def outputs_of(
    reading: Reading, batch: int, steps: int, description: str, *, native: bool = False
) -> Source:
    """What a run of ``reading`` returns (a native torch module's own layout with ``native``):
    a stack's module returns a sequence, directions and states; a whole model, its outputs."""
    graph = as_graph(reading)
    stack = stack_of(graph)  # the stack whose own module each framework runs
    if stack is None:
        return graph_source(graph, description)
    return (native_source if native else stack_source)(stack, batch, steps, description)


def _keras_dtype(read: Read) -> str:
    """The least precise dtype a Keras original computes in (a mixed-precision policy
    computes in float16); float32 when the model cannot be loaded, whose runs then fail."""
    from .adapters.keras import compute_dtype

    assert read.original is not None
    try:
        return compute_dtype(read.original())
    except Exception:  # recorded by each of its runs
        return "float32"


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


__all__ = [
    "Plan",
    "Subject",
    "dtype_refusal",
    "parse_paths",
    "plan_original",
    "plan_runs",
    "plan_subject",
]
