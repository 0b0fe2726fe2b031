"""Run one side on the input and line both sides' outputs up by name, as float64.

A side read by :func:`~xframe_bilstm.sources.read_source` runs as the comparison runner runs
it (:func:`~xframe_bilstm.planning.plan_subject`): its original by its own computation (the
Keras layer's call, the torch module's ``forward``, onnxruntime on the given ONNX graph, a
Keras 3 file as Keras loads it), else its reading on the float64 reference, in the dtype it
computes in; its outputs are matched by meaning with what its reading returns in the Keras
output structure (:func:`~xframe_bilstm.correspondence.correspond`: a native module's
``h_n``, an ONNX graph's time-major sequence). Custom modules, which have no reading, are
called on the input and matched by position; a Keras layer without a canonical form is
called eagerly; pairs run half by half. A stateful layer or module does not remember the
run. Keras and torch are imported inside the functions that use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import layer_state_names, output_names
from ..correspondence import correspond, stack_source
from ..errors import WeightShapeError
from ..planning import plan_subject
from .sides import Side


@dataclass(frozen=True)
class Outputs:
    """What one side returned, with the names of its arrays when it has a canonical form,
    whether it computed in float64, and whether its sequences were read at valid steps only
    (a native module on a packed sequence writes zeros where Keras repeats a step)."""

    names: tuple[str, ...] | None  # None: positional (a custom module)
    arrays: tuple[np.ndarray, ...]
    double: bool = False
    valid_steps_only: bool = False


def run(side: Side, x: np.ndarray, lengths: Any) -> Outputs:
    """Run ``side`` on ``x`` (with ``lengths``, except custom modules, which get none)."""
    if side.halves is not None:
        return _run_pair(side.halves, x, lengths)
    if side.kind == "custom":
        return _run_custom(side.obj, x)
    if side.kind == "keras_opaque":
        return _run_keras_eager(side.obj, x, lengths)
    return _run_read(side, x, lengths)


def _run_read(side: Side, x: np.ndarray, lengths: Any) -> Outputs:
    """The side's own run, as ``compare()`` plans it, matched by meaning with its reading's
    outputs (with the flags asked of a native module)."""
    assert side.read is not None and side.stack is not None
    batch, steps = x.shape[:2]
    subject = plan_subject("diagnosed", side.obj, side.read, batch, steps, [], False)
    spec, framework = subject.runs[0]  # on the CPU, in the dtype it computes in
    arrays, _ = framework.run(side.stack, x, spec, initial_states=None, lengths=lengths)
    wanted = stack_source(side.stack, batch, steps, subject.outputs.description)
    view = correspond(wanted, subject.outputs)
    rows = None if lengths is None else np.asarray(lengths)
    named = view.against_view(arrays, rows)
    return Outputs(
        output_names(side.stack),
        tuple(np.asarray(a, dtype=np.float64) for a in named),
        spec.dtype == "float64",
        view.valid_steps_only,
    )


def _run_keras_eager(obj: Any, x: np.ndarray, lengths: Any) -> Outputs:
    """Call a Keras layer that has no canonical form directly, in inference mode."""
    keras = require("keras")
    from ..adapters.keras import restore_states, snapshot_states

    kwargs: dict[str, Any] = {"training": False}
    if lengths is not None:
        kwargs["mask"] = np.arange(x.shape[1])[None, :] < np.asarray(lengths)[:, None]
    states = snapshot_states(obj)
    try:
        result = obj(np.asarray(x, dtype=obj.compute_dtype), **kwargs)
    finally:
        restore_states(obj, states)
    arrays = tuple(np.asarray(v, dtype=np.float64) for v in keras.tree.flatten(result))
    return Outputs(None, arrays, obj.compute_dtype == "float64")


def _run_custom(module: Any, x: np.ndarray) -> Outputs:
    torch = require("torch")
    from ..adapters.torch import run_module

    arrays = tuple(np.asarray(a, np.float64) for a in run_module(module, [np.asarray(x)]))
    parameter = next(iter(module.parameters()), None)
    return Outputs(None, arrays, parameter is not None and parameter.dtype == torch.float64)


def _run_pair(halves: tuple[Side, Side], x: np.ndarray, lengths: Any) -> Outputs:
    """Each half alone; first outputs concatenated as they come, states forward first."""
    runs = [run(half, x, lengths) for half in halves]
    firsts = [one.arrays[0] for one in runs]
    if firsts[0].shape[:-1] != firsts[1].shape[:-1]:
        raise WeightShapeError(
            f"the halves' outputs do not concatenate: shapes {firsts[0].shape} and "
            f"{firsts[1].shape}"
        )
    names, arrays = ["output"], [np.concatenate(firsts, axis=-1)]
    double = all(one.double for one in runs)
    valid_only = any(one.valid_steps_only for one in runs)
    for suffix, half, one in zip(("_forward", "_backward"), halves, runs):
        if half.stack is not None:
            state_names = layer_state_names(half.stack.last) if half.stack.return_state else ()
        else:  # no canonical form: one extra array is h, two are h and c
            state_names = ("h", "c")[: len(one.arrays) - 1] if len(one.arrays) <= 3 else ()
        names += [name + suffix for name in state_names]
        arrays += list(one.arrays[1 : 1 + len(state_names)])
    return Outputs(tuple(names), tuple(arrays), double, valid_only)


def align(
    expected: Outputs, actual: Outputs
) -> tuple[tuple[str, ...], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Name both sides' arrays (positional ones after the other side) and pick common names:
    (the names compared, expected's arrays by name, actual's arrays by name)."""
    e_names = expected.names or actual.names
    if e_names is None:
        e_names = tuple(f"output_{i}" for i in range(len(expected.arrays)))
    a_names = actual.names or e_names
    e = _split_output(dict(zip(e_names, expected.arrays)), a_names)
    a = _split_output(dict(zip(a_names, actual.arrays)), e_names)
    return tuple(name for name in e if name in a), e, a


def _split_output(arrays: dict[str, np.ndarray], other: Sequence[str]) -> dict[str, np.ndarray]:
    """A concatenated ``output`` as two halves where the other side left them unmerged
    (``merge_mode=None``), e.g. a pair of layers against such a Bidirectional."""
    if "output" not in arrays or "output_forward" not in other or "output" in other:
        return arrays
    output = arrays.pop("output")
    units = output.shape[-1] // 2
    return {"output_forward": output[..., :units], "output_backward": output[..., units:], **arrays}
