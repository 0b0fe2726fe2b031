"""The probe of :mod:`.importer`: the graph run on one seeded input, batch- and time-major.

A batch or time length the graph fixes (tf2onnx's ``Reshape`` of a one-step model, a
fixed-shape torch export) is kept; dynamic ones get 3 and 5, so that a time-major reading
cannot pass for a batch-major one. torch is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._imports import require
from ...canonical import RecurrentStack
from ...errors import UnsupportedFeatureError
from .nodes import declared_dims

_PROBE_BATCH, _PROBE_STEPS = 3, 5


@dataclass(frozen=True)
class Probe:
    x: np.ndarray  # (B, T, D)
    states: list[np.ndarray]
    lengths: np.ndarray | None


def probe_graph(
    proto: Any, module: Any, input_size: int
) -> dict[str, tuple[Probe, list[np.ndarray]]]:
    """Run the graph on a random input, batch- and time-major: the input and outputs per
    reading (outputs batch-major). A batch or time length the graph fixes is kept."""
    torch = require("torch")
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    kinds = _extra_input_kinds(inputs[1:])
    declared = declared_dims(inputs[0])[:2]
    results: dict[str, tuple[Probe, list[np.ndarray]]] = {}
    for layout in ("batch-major", "time-major"):
        fixed = dict(
            zip(("batch", "time") if layout == "batch-major" else ("time", "batch"), declared)
        )
        probe, tensors = _probe_inputs(kinds, fixed.get("batch"), fixed.get("time"), input_size)
        if layout == "time-major":
            tensors[0] = tensors[0].transpose(1, 0, 2)
        try:
            with torch.no_grad():
                outputs = module(*(torch.from_numpy(np.ascontiguousarray(t)) for t in tensors))
        except Exception:  # this reading's shapes do not fit the graph; try the other
            continue
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        arrays = [o.detach().numpy() for o in outputs]
        if layout == "time-major":
            arrays = [a.transpose(1, 0, 2) if a.ndim == 3 else a for a in arrays]
        results[layout] = (probe, arrays)
    if not results:
        raise UnsupportedFeatureError(
            "the graph runs on neither a batch-major nor a time-major (batch, time, "
            f"{input_size}) input"
        )
    return results


def _extra_input_kinds(inputs: list[Any]) -> list[tuple[str, Any]]:
    """Each input after the sequence: ("lengths", numpy int dtype) or ("state", units)."""
    onnx = require("onnx")
    kinds: list[tuple[str, Any]] = []
    for graph_input in inputs:
        tensor_type = graph_input.type.tensor_type
        dims = [d.dim_value or d.dim_param for d in tensor_type.shape.dim]
        if tensor_type.elem_type in (onnx.TensorProto.INT32, onnx.TensorProto.INT64):
            if len(dims) != 1 or any(kind == "lengths" for kind, _ in kinds):
                raise UnsupportedFeatureError(
                    f"graph input {graph_input.name!r}: integer inputs other than one (batch,) "
                    "lengths vector have no Keras meaning"
                )
            int32 = tensor_type.elem_type == onnx.TensorProto.INT32
            kinds.append(("lengths", np.int32 if int32 else np.int64))
        elif len(dims) == 2 and isinstance(dims[1], int) and dims[1] > 0:
            kinds.append(("state", dims[1]))
        else:
            raise UnsupportedFeatureError(
                f"graph input {graph_input.name!r} of shape {dims}: only (batch, units) initial "
                "states in Keras order and a (batch,) lengths vector have a Keras meaning"
            )
    return kinds


def _probe_inputs(
    kinds: list[tuple[str, Any]], batch: int | None, steps: int | None, input_size: int
) -> tuple[Probe, list[np.ndarray]]:
    """A seeded (B, T, D) input, states and lengths, and the graph's feeds in input order."""
    batch, steps = batch or _PROBE_BATCH, steps or _PROBE_STEPS
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, steps, input_size))
    states, lengths, tensors = [], None, [x]
    for kind, detail in kinds:
        if kind == "lengths":
            # Full, half and single-step rows (5, 2, 1 for 5 steps), repeated to the batch.
            lengths = np.resize(np.unique([steps, max(1, steps // 2), 1])[::-1], batch)
            tensors.append(lengths.astype(detail))
        else:
            states.append(rng.standard_normal((batch, detail)))
            tensors.append(states[-1])
    return Probe(x, states, lengths), tensors


def run_probe(stack: RecurrentStack, probe: Probe) -> tuple[np.ndarray, ...]:
    from ...reference import run_reference

    return run_reference(stack, probe.x, initial_states=probe.states or None, lengths=probe.lengths)


def fixed_sizes(proto: Any) -> tuple[int | None, int | None]:
    """The batch and time sizes the graph's sequence input fixes, each None when dynamic.

    Which axis is time is told as :func:`.example_inputs.seeded_graph_inputs` tells it (the
    name a dimension shares with the states and lengths, else whether the input goes straight
    into a time-major recurrent node), so ``compare()`` can draw inputs the graph takes.
    """
    from .example_inputs import seeded_graph_inputs

    example = seeded_graph_inputs(proto, seed=0, batch=2, steps=7)
    (declared,) = [i for i in proto.graph.input if i.name == example.x_name]
    dims = list(declared.type.tensor_type.shape.dim)
    batch, time = (dims[1], dims[0]) if example.time_major else (dims[0], dims[1])
    return _fixed(batch), _fixed(time)


def _fixed(dim: Any) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
