"""``compare()`` for whole models: the float64 reference, the torch port, and Keras.

Rules of this module:

- A whole model (a file, or a live Keras model with layers other than recurrent ones) runs
  on ``inputs`` when given (one array per model input), else on seeded padded inputs
  (:func:`~xframe_bilstm.models.reference.example_inputs`, right-padded to ``lengths`` when
  they are given).
- The model masks padding by its values (``Embedding(mask_zero=True)``, ``Masking``), not
  by ``lengths``: given both, inputs and lengths must agree on every masked input (a
  padded step holds the pad, a valid one does not), else the lengths would describe a
  mask the model never computes. Every step, padded or not, is compared.
- Runs: the float64 numpy reference; the torch port in each of ``dtypes`` (float32,
  float64) on each device; Keras, in float32, for a live Keras model or a file when Keras
  is asked for by name, or by ``"auto"`` when it is installed and the file was written by
  Keras 3 (a Keras 2 file means what tf_keras computes, which Keras 3 does not reproduce);
  and ``against`` (your own torch module or Keras model) on its framework, labelled
  ``@against``. Devices: ``"auto"`` is the CPU; named devices run on the frameworks that
  see them. Kernel paths (``paths``) are PyTorch's: the port runs once more on each
  (``mkldnn-off`` on CPU, ``cudnn-off`` on GPUs); Keras runs the model as loaded.
- A run that fails (a file Keras cannot load, say) is recorded with the reason and the
  others go on, as in :func:`~xframe_bilstm.compare`.
- Every run is compared with the reference, within the tolerance rounding explains for
  this model on these inputs at the run's precision unless ``rtol``/``atol`` are given. The
  result is the same :class:`~xframe_bilstm.report.Report` as for recurrent stacks.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..comparison import compare_outputs
from ..errors import UnsupportedFeatureError, WeightShapeError
from ..frameworks.base import RunSpec
from ..graph import ModelGraph
from ..masks import check_lengths
from ..report import PairReport, Report, RunRecord
from .port import port_graph
from .reference import example_inputs, model_noise
from .runs import Runner, against_runs, keras_loader, run_keras, torch_runs

# What a whole model runs on besides the reference, and in which dtypes.
FRAMEWORKS = ("torch", "keras")
DTYPES = ("float32", "float64")


def _graph_of(source: Any) -> Any:
    from ..keras_files import is_model_path, read_model

    if is_model_path(source):
        return read_model(source)
    from .live import graph_from_keras

    return graph_from_keras(source)


def compare_model(
    source: Any,
    *,
    against: Any = None,
    inputs: np.ndarray | Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | None = None,
    frameworks: str | Sequence[str] = "auto",
    devices: str | Sequence[str] = "auto",
    dtypes: Sequence[str] = ("float32",),
    tf32: bool = False,
    paths: str | Sequence[str] = (),
    seed: int = 0,
    initial_states: Sequence[np.ndarray] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> Report:
    """Run a whole model on the reference, torch and Keras, and compare them.

    Args:
        source: a ``.keras``/``.h5`` file or a live Keras model.
        against: your own port, a torch module or Keras model taking the same inputs.
        inputs: one array per model input (token ids as integers); default: seeded.
        lengths: valid steps per row of right-padded inputs (see the module's rules).
        frameworks: ``"auto"`` or names among ``torch`` (the port) and ``keras``.
        devices: ``"auto"`` (the CPU) or names such as ``"cpu"``, ``"gpu:0"``.
        dtypes: ``float32`` and/or ``float64``, for the torch port and ``against``.
        tf32: allow TF32 on GPUs.
        paths: PyTorch kernel paths to run the port on besides the default (``"all"``,
            ``mkldnn-off``, ``cudnn-off``, or ``torch:``-qualified names).
        seed: seed of the generated inputs.
        initial_states: refused: a whole model starts its recurrent layers from zeros.
        rtol: relative tolerance; give both or neither of ``rtol`` and ``atol``.
        atol: absolute tolerance; default: derived from this model's rounding noise.

    Example:
        >>> report = compare_model("classifier.keras")  # doctest: +SKIP
        >>> [run.label for run in report.runs]  # doctest: +SKIP
        ['reference[cpu,float64]', 'torch[cpu,float32]', 'keras[cpu,float32]']
    """
    if (rtol is None) != (atol is None):
        raise ValueError(f"give both rtol and atol, or neither (got rtol={rtol!r}, atol={atol!r})")
    if initial_states is not None:
        raise UnsupportedFeatureError(
            "initial_states: a whole model starts its recurrent layers from zeros; compare "
            "the recurrent layers on their own to give initial states"
        )
    require("torch")  # before Keras, which a file's Keras run may import
    graph = _graph_of(source)
    _check_against(graph, against)
    arrays, checked = _model_inputs(graph, inputs, lengths, seed)
    noise, exact = model_noise(graph, arrays)
    plan = _plan(source, graph, arrays, against, frameworks, devices, dtypes, tf32, paths)
    reference = RunSpec("reference", "cpu", "float64")
    runs = [RunRecord(reference, 0.0)]
    pairs = []
    outputs_names = [f"output {name!r}" for name in graph.outputs]
    for spec, run in plan:
        started = time.perf_counter()
        try:
            outputs, settings = run()
        except Exception as error:  # reported as a failed run, as compare() does
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            runs.append(RunRecord(spec, time.perf_counter() - started, error=message))
            continue
        runs.append(RunRecord(spec, time.perf_counter() - started, settings))
        tolerance = noise.tolerance(spec.epsilon) if atol is None else atol
        comparison = compare_outputs(
            outputs_names, exact, outputs, atol=tolerance, rtol=rtol or 0.0, label=spec.label
        )
        pairs.append(PairReport(reference.label, spec.label, comparison))
    return Report(
        source=f"{graph.source} ({len(graph.layers)} layers)",
        input_shape=tuple(arrays[0].shape),
        seed=seed,
        lengths=None if checked is None else tuple(int(n) for n in checked),
        runs=tuple(runs),
        pairs=tuple(pairs),
        versions=_versions({spec.framework for spec, _ in plan}),
        tolerance_note=(
            f"tolerance: rtol={rtol}, atol={atol} (given)"
            if atol is not None
            else f"tolerance: derived from the float32 reference's drift {noise.float32:.3g} "
            f"(output scale {noise.scale:.3g}), scaled to each run's precision"
        ),
    )


def _check_against(graph: ModelGraph, against: Any) -> None:
    """Refuse a lone recurrent module (or its state_dict) as the port of a whole model: it
    lacks the model's other layers, so comparing it would compare a part as the whole."""
    import sys

    from ..sources import framework_of

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(against, torch.nn.RNNBase):
        what = f"{type(against).__name__} (one recurrent module)"
    elif isinstance(against, (str, os.PathLike)) and framework_of(against) == "torch":
        what = f"{os.fspath(against)} (the state_dict of one recurrent module)"
    else:
        return
    others = [
        f"{record.name} ({record.class_name})"
        for record in graph.layers
        if record.kind not in ("input", "recurrent")
    ]
    raise UnsupportedFeatureError(
        f"against: {what} cannot stand for {graph.source}, a whole model whose layers "
        f"{', '.join(others)} it lacks; compare a port of the whole model (keras_to_torch of "
        "the model, or an nn.Module of your own that runs every layer), or compare the "
        "recurrent layer alone"
    )


def _plan(
    source: Any,
    graph: ModelGraph,
    arrays: list[np.ndarray],
    against: Any,
    frameworks: str | Sequence[str],
    devices: str | Sequence[str],
    dtypes: Sequence[str],
    tf32: bool,
    paths: str | Sequence[str] = (),
) -> list[tuple[RunSpec, Runner]]:
    """Every run but the reference's: torch port, Keras, then ``against``."""
    names = _framework_names(source, frameworks)
    wanted_paths = _torch_paths(paths)
    wanted_dtypes = _dtypes(dtypes)
    wanted_devices = ["cpu"] if devices == "auto" else _as_list(devices)
    port = port_graph(graph, verify=False) if "torch" in names else None
    load_keras = keras_loader(source)  # loads once, on the first Keras run
    plan: list[tuple[RunSpec, Runner]] = []
    seen: set[str] = set()
    for name in names:
        offered = _devices(name, wanted_devices)
        seen.update(offered)
        for device in offered:
            if name == "torch":
                on = ["", *_offered_paths(device, wanted_paths)]
                plan += torch_runs(port, arrays, device, wanted_dtypes, tf32, "", on)
            elif "float32" in wanted_dtypes:
                keras_run = functools.partial(run_keras, load_keras, arrays, device)
                plan.append((RunSpec("keras", device, "float32"), keras_run))
    missing = sorted(set(wanted_devices) - seen)
    if names and missing:
        raise UnsupportedFeatureError(f"devices: {missing} not available to {names} here")
    unplanned = sorted(wanted_paths - {spec.path for spec, _ in plan})
    if paths != "all" and unplanned:
        raise UnsupportedFeatureError(
            f"paths: {unplanned} not offered by the torch port on {sorted(seen)} "
            "(mkldnn-off: CPU; cudnn-off: GPUs)"
        )
    if against is not None:
        on = sorted(seen) if names else wanted_devices
        plan += against_runs(against, arrays, on, wanted_dtypes, tf32)
    return plan


def _model_inputs(
    graph: ModelGraph,
    inputs: np.ndarray | Sequence[np.ndarray] | None,
    lengths: Sequence[int] | None,
    seed: int,
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The arrays every run sees, and the checked lengths."""
    if inputs is None:
        if lengths is None:
            return example_inputs(graph, seed=seed), None
        rows = np.asarray(lengths)
        if rows.ndim != 1 or rows.size == 0 or not np.issubdtype(rows.dtype, np.integer):
            raise WeightShapeError(f"lengths: expected one integer per row, got {lengths!r}")
        arrays = example_inputs(
            graph, batch=rows.size, steps=int(rows.max()), seed=seed, lengths=lengths
        )
        return arrays, check_lengths(lengths, rows.size, int(rows.max()))
    given = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    if len(given) != len(graph.inputs):
        raise WeightShapeError(
            f"inputs: the model takes {len(graph.inputs)} inputs ({', '.join(graph.inputs)}), "
            f"got {len(given)} arrays"
        )
    arrays = []
    for name, value in zip(graph.inputs, given):
        array = np.asarray(value)
        if array.dtype.kind not in "iuf" or array.ndim < 2 or 0 in array.shape:
            raise WeightShapeError(
                f"inputs ({name}): expected a non-empty array of numbers with a batch axis, "
                f"got {array.dtype} array of shape {array.shape}"
            )
        arrays.append(array.astype(np.int64) if array.dtype.kind in "iu" else array)
    if len({array.shape[0] for array in arrays}) != 1:
        raise WeightShapeError(
            f"inputs: every array needs the same batch size, got {[a.shape for a in arrays]}"
        )
    if lengths is None:
        return arrays, None
    checked = check_lengths(lengths, arrays[0].shape[0], arrays[0].shape[1])
    _check_padding(graph, arrays, checked)
    return arrays, checked


def _check_padding(graph: ModelGraph, arrays: list[np.ndarray], lengths: np.ndarray) -> None:
    """Refuse lengths that differ from the mask the model computes from its inputs."""
    for name, array in zip(graph.inputs, arrays):
        readers = [r for r in graph.layers if name in r.inputs and r.makes_mask]
        if not readers:
            continue  # no mask: padded steps are computed like any other
        record = readers[0]
        if record.kind == "embedding":
            masked, pad = array == 0, "id 0"
        else:
            value = record.options["mask_value"]
            masked, pad = np.all(array == value, axis=-1), f"the mask value {value!r}"
        padded = np.arange(array.shape[1])[None, :] >= lengths[:, None]
        if masked.shape == padded.shape and not np.array_equal(masked, padded):
            row, step = (int(i) for i in np.argwhere(masked != padded)[0])
            raise WeightShapeError(
                f"lengths: {record.name} ({record.class_name}) masks the steps of input "
                f"{name!r} that hold {pad}, which must be exactly the steps after each row's "
                f"length; row {row}, step {step} (length {int(lengths[row])}) differs"
            )


def _framework_names(source: Any, frameworks: str | Sequence[str]) -> list[str]:
    if frameworks == "auto":
        return ["torch", "keras"] if _keras_by_default(source) else ["torch"]
    names = [name for name in _as_list(frameworks) if name != "reference"]
    unknown = [name for name in names if name not in FRAMEWORKS]
    if unknown:
        raise UnsupportedFeatureError(
            f"frameworks: {unknown} cannot run a whole model (Embedding, Dense...): it runs "
            f"as the torch port and in Keras ({', '.join(FRAMEWORKS)})"
        )
    return [name for name in FRAMEWORKS if name in names]


def _keras_by_default(source: Any) -> bool:
    """Whether ``"auto"`` runs Keras: a live model, or a Keras 3 file where Keras is."""
    from .live import keras_flavour

    if keras_flavour(source) is not None:
        return True
    if not isinstance(source, (str, os.PathLike)) or not _installed("keras"):
        return False
    from ..keras_files import read_spec

    return read_spec(os.fspath(source)).major >= 3


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules
        return False


def _dtypes(dtypes: Sequence[str]) -> list[str]:
    wanted = _as_list(dtypes)
    refused = [dtype for dtype in wanted if dtype not in DTYPES]
    if refused or not wanted:
        raise UnsupportedFeatureError(
            f"dtypes: a whole model runs in {' and '.join(DTYPES)}, got {wanted}"
        )
    return wanted


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _devices(framework: str, wanted: list[str]) -> list[str]:
    """The wanted devices ``framework`` sees (the CPU without asking it)."""
    if wanted == ["cpu"]:
        return wanted
    from ..frameworks import FRAMEWORKS as REGISTRY

    seen = REGISTRY[framework]().devices()
    return [device for device in wanted if device in seen]


def _torch_paths(paths: str | Sequence[str]) -> set[str]:
    """The kernel paths asked of the torch port; others cannot apply to a whole model."""
    from ..runner import parse_paths

    wanted = parse_paths(paths)
    if paths == "all":
        return {path for _, path in wanted}
    others = sorted(
        path if framework is None else f"{framework}:{path}"
        for framework, path in wanted
        if framework not in (None, "torch")
    )
    if others:
        raise UnsupportedFeatureError(
            f"paths: {others}: a whole model (Embedding, Dense...) runs in Keras as it was "
            "loaded; its kernel paths apply to recurrent layers and stacks"
        )
    return {path for _, path in wanted}


def _offered_paths(device: str, wanted: set[str]) -> list[str]:
    if not wanted:
        return []
    from ..frameworks import TorchFramework

    return [path for path in TorchFramework().paths(device) if path in wanted]


def _versions(frameworks: set[str]) -> dict[str, str]:
    from ..frameworks import FRAMEWORKS as REGISTRY

    versions = {"python": platform.python_version()}
    for name in sorted(frameworks):
        versions.update(REGISTRY[name]().versions())
    return versions


__all__ = ["compare_model"]
