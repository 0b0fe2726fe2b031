"""Run one side on the input and line both sides' outputs up by name, as float64.

Every kind of side runs here: canonical stacks by the float64 reference, Keras layers
compiled (or called eagerly when they have no canonical form), ``KerasRecurrent`` and native
torch modules through ``run_torch``, custom modules by calling them, pairs half by half. A
stateful layer or module does not remember the run. Keras and torch are imported inside the
functions that use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import layer_state_names, output_names
from ..errors import WeightShapeError
from ..reference import run_reference
from .sides import Side


@dataclass(frozen=True)
class Outputs:
    """What one side returned, with the names of its arrays when it has a canonical form."""

    names: tuple[str, ...] | None  # None: positional (a custom module)
    arrays: tuple[np.ndarray, ...]


def run(side: Side, x: np.ndarray, lengths: Any) -> Outputs:
    """Run ``side`` on ``x`` (with ``lengths``, except custom modules, which get none)."""
    if side.halves is not None:
        return _run_pair(side.halves, x, lengths)
    if side.kind == "custom":
        return Outputs(None, _run_custom(side.obj, x))
    if side.kind == "keras_opaque":
        return Outputs(None, _run_keras_eager(side.obj, x, lengths))
    assert side.stack is not None
    names = output_names(side.stack)
    if side.kind == "canonical":
        arrays = run_reference(side.stack, x, lengths=lengths)
    elif side.kind == "keras":
        arrays = _run_keras(side.obj, x, lengths)
    elif side.kind == "keras_recurrent":
        arrays = _run_keras_recurrent(side.obj, x, lengths)
    else:
        require("torch")
        from ..adapters.torch import canonical_to_torch, run_torch

        arrays = run_torch(canonical_to_torch(side.stack), x, lengths=lengths)
    return Outputs(names, tuple(np.asarray(a, dtype=np.float64) for a in arrays))


def _run_keras(obj: Any, x: np.ndarray, lengths: Any) -> tuple[np.ndarray, ...]:
    require("keras")
    from ..adapters.keras import restore_states, run_keras, snapshot_states

    states = snapshot_states(obj)  # a stateful layer must not remember this run
    try:
        return run_keras(obj, x, lengths=lengths)
    finally:
        restore_states(obj, states)


def _run_keras_eager(obj: Any, x: np.ndarray, lengths: Any) -> tuple[np.ndarray, ...]:
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
    return tuple(np.asarray(v, dtype=np.float64) for v in keras.tree.flatten(result))


def _run_keras_recurrent(module: Any, x: np.ndarray, lengths: Any) -> tuple[np.ndarray, ...]:
    from ..adapters.torch import run_torch

    carried = module._carried  # a stateful module must not remember this run
    try:
        return run_torch(module, x, lengths=lengths)
    finally:
        module._carried = carried


def _run_custom(module: Any, x: np.ndarray) -> tuple[np.ndarray, ...]:
    from ..adapters.torch import run_module

    return tuple(np.asarray(a, np.float64) for a in run_module(module, [np.asarray(x)]))


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
    for suffix, half, one in zip(("_forward", "_backward"), halves, runs):
        if half.stack is not None:
            state_names = layer_state_names(half.stack.last) if half.stack.return_state else ()
        else:  # no canonical form: one extra array is h, two are h and c
            state_names = ("h", "c")[: len(one.arrays) - 1] if len(one.arrays) <= 3 else ()
        names += [name + suffix for name in state_names]
        arrays += list(one.arrays[1 : 1 + len(state_names)])
    return Outputs(tuple(names), tuple(arrays))


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
