"""``compare()`` for whole models: the float64 reference, the torch port, and Keras.

Rules of this module:

- A whole model (a file, or a live Keras model with layers other than recurrent ones) runs
  on seeded padded inputs (:func:`~xframe_bilstm.models.reference.example_inputs`) as:
  the float64 numpy reference, its torch port in float32, the live Keras model when there
  is one and Keras is asked for, and ``against`` (your own torch port) when given.
- Every run is compared with the reference, within the tolerance float32 rounding explains
  for this model on these inputs unless ``rtol``/``atol`` are given. The result is the
  same :class:`~xframe_bilstm.report.Report` as for recurrent stacks.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..comparison import compare_outputs
from ..frameworks.base import RunSpec
from ..report import PairReport, Report, RunRecord
from .port import port_graph, run_port
from .reference import example_inputs, model_noise


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
    frameworks: str | Sequence[str] = "auto",
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
) -> Report:
    """Run a whole model on the reference, torch and Keras, and compare them.

    Example:
        >>> report = compare_model("classifier.keras")  # doctest: +SKIP
        >>> [run.label for run in report.runs]  # doctest: +SKIP
        ['reference[cpu,float64]', 'torch[cpu,float32]']
    """
    import torch

    graph = _graph_of(source)
    inputs = example_inputs(graph, seed=seed)
    noise, exact = model_noise(graph, inputs)
    wanted = None if frameworks == "auto" else set(frameworks)
    runners: list[tuple[RunSpec, Callable[[], Sequence[np.ndarray]]]] = []
    port = port_graph(graph, verify=False)
    if wanted is None or "torch" in wanted:
        runners.append((RunSpec("torch", "cpu", "float32"), lambda: run_port(port, inputs)))
    from .live import keras_flavour

    if keras_flavour(source) is not None and (wanted is None or "keras" in wanted):

        def run_keras() -> Sequence[np.ndarray]:
            result = source(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
            return [np.asarray(y) for y in (result if isinstance(result, list) else [result])]

        runners.append((RunSpec("keras", "cpu", "float32"), run_keras))
    if against is not None:
        runners.append(
            (
                RunSpec("torch", "cpu", "float32", subject="against"),
                lambda: run_port(against, inputs),
            )
        )
    reference = RunSpec("reference", "cpu", "float64")
    runs = [RunRecord(reference, 0.0)]
    pairs = []
    names = [f"output {name!r}" for name in graph.outputs]
    tolerance = noise.tolerance() if atol is None else atol
    for spec, run in runners:
        started = time.perf_counter()
        try:
            outputs = run()
        except Exception as error:  # reported as a failed run, as compare() does
            runs.append(RunRecord(spec, time.perf_counter() - started, error=str(error)))
            continue
        runs.append(RunRecord(spec, time.perf_counter() - started))
        comparison = compare_outputs(
            names, exact, outputs, atol=tolerance, rtol=rtol or 0.0, label=spec.label
        )
        pairs.append(PairReport(reference.label, spec.label, comparison))
    return Report(
        source=f"{graph.source} ({len(graph.layers)} layers)",
        input_shape=tuple(inputs[0].shape),
        seed=seed,
        lengths=None,
        runs=tuple(runs),
        pairs=tuple(pairs),
        versions={"python": platform.python_version(), "torch": torch.__version__},
        tolerance_note=(
            f"tolerance: rtol={rtol}, atol={atol} (given)"
            if atol is not None
            else f"tolerance: derived from the float32 reference's drift {noise.float32:.3g} "
            f"(output scale {noise.scale:.3g})"
        ),
    )


__all__ = ["compare_model"]
