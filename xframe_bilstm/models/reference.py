"""The numpy reference of a whole model: Keras's layers and mask rules, written plainly.

Rules of this module:

- It runs a :class:`~xframe_bilstm.graph.ModelGraph` in float64 (the oracle) or
  float32 (to measure rounding noise), one layer after another, written independently of
  the torch port: recurrent layers run on the package's reference loop with the mask as
  Keras's generic loop reads it (any pattern), not on the compaction the port uses.
- Masks follow the Keras rules stated in :mod:`~xframe_bilstm.graph`.
- :func:`model_tolerance` derives the allowed float32 error from the reference's own
  float32-versus-float64 drift on the same input (:class:`~xframe_bilstm.comparison.Noise`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..activations import numpy_activation
from ..comparison import Noise
from ..errors import UnsupportedFeatureError
from ..graph import LayerRecord, ModelGraph
from ..masks import mask_from_lengths
from ..reference import _run_layer


def _activate(name: str, x: np.ndarray) -> np.ndarray:
    if name == "softmax":
        shifted = np.exp(x - x.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    return numpy_activation(name)(x)


def _recurrent(
    record: LayerRecord, x: np.ndarray, mask: np.ndarray | None, dtype: type
) -> np.ndarray:
    layer = record.recurrent
    assert layer is not None
    time_major = bool(record.options["time_major"])
    if time_major:
        x = np.swapaxes(x, 0, 1)
    kinds = 2 if layer.cell == "lstm" else 1
    directions = 2 if layer.direction == "bidirectional" else 1
    states: list[np.ndarray] = [
        np.zeros((x.shape[0], layer.units), dtype) for _ in range(kinds * directions)
    ]
    outputs, _ = _run_layer(
        layer,
        x.astype(dtype),
        states,
        mask,
        return_sequences=bool(record.options["return_sequences"]),
        dtype=dtype,
    )
    (y,) = outputs
    return np.swapaxes(y, 0, 1) if time_major and record.options["return_sequences"] else y


def run_model_reference(
    graph: ModelGraph, inputs: Sequence[np.ndarray], *, dtype: type = np.float64
) -> tuple[np.ndarray, ...]:
    """Run ``graph`` on ``inputs`` (one array per model input) in ``dtype``.

    Example:
        >>> from xframe_bilstm.graph import LayerRecord, ModelGraph
        >>> graph = ModelGraph("m", (
        ...     LayerRecord("x", "input", "InputLayer", options={"shape": (2,), "dtype": "f"}),
        ...     LayerRecord("act", "activation", "Activation", ("x",), {"activation": "softmax"})),
        ...     inputs=("x",), outputs=("act",))
        >>> run_model_reference(graph, [np.zeros((1, 2))])[0].tolist()
        [[0.5, 0.5]]
    """
    values: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray | None] = {}
    for name, array in zip(graph.inputs, inputs, strict=True):
        values[name] = np.asarray(array)
        masks[name] = None
    for record in graph.layers:
        if record.kind == "input":
            continue
        x = values[record.inputs[0]]
        mask = masks[record.inputs[0]]
        options = record.options
        out_mask = mask if record.mask_rule == "keep" else None
        if record.kind == "embedding":
            y = record.weights["embeddings"].astype(dtype)[x]
            out_mask = (x != 0) if options["mask_zero"] else None
        elif record.kind == "masking":
            out_mask = np.asarray(np.any(x != options["mask_value"], axis=-1))
            y = np.where(out_mask[..., None], x, 0).astype(dtype)
        elif record.kind == "identity":
            y = x
        elif record.kind == "recurrent":
            y = _recurrent(record, x, mask, dtype)
            out_mask = mask if options["return_sequences"] else None
        elif record.kind == "dense":
            y = x.astype(dtype) @ record.weights["kernel"].astype(dtype)
            if "bias" in record.weights:
                y = y + record.weights["bias"].astype(dtype)
            y = _activate(str(options["activation"]), y)
        elif record.kind == "activation":
            y = _activate(str(options["activation"]), x.astype(dtype))
        elif record.kind == "flatten":
            y = x.reshape(x.shape[0], -1)
        elif record.kind == "reshape":
            y = x.reshape((x.shape[0], *options["target_shape"]))
        elif record.kind == "global_pool":
            keep = bool(options["keepdims"])
            if options["op"] == "max":
                y = x.max(axis=1, keepdims=keep)
            elif mask is None:
                y = x.mean(axis=1, keepdims=keep)
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    y = np.where(mask[..., None], x, 0).sum(axis=1, keepdims=keep) / mask[
                        ..., None
                    ].sum(axis=1, keepdims=keep)
        elif record.kind == "concatenate":
            tensors = [values[name] for name in record.inputs]
            y = np.concatenate(tensors, axis=int(options["axis"]))
            in_masks = [masks[name] for name in record.inputs]
            if any(m is not None for m in in_masks):
                full = np.stack(
                    [
                        np.ones(t.shape[:2], bool) if m is None else m
                        for t, m in zip(tensors, in_masks)
                    ]
                )
                combined = full.any(axis=0) if options["mask_combine"] == "any" else full.all(0)
                out_mask = np.asarray(combined)
        else:  # pragma: no cover - every kind is handled above
            raise UnsupportedFeatureError(f"no reference for {record.kind}")
        values[record.name] = y
        masks[record.name] = out_mask
    return tuple(values[name] for name in graph.outputs)


def model_noise(graph: ModelGraph, inputs: Sequence[np.ndarray]) -> tuple[Noise, tuple]:
    """The float32 reference's drift from the float64 one, and the float64 outputs."""
    exact = run_model_reference(graph, inputs, dtype=np.float64)
    rounded = run_model_reference(graph, inputs, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        drift = max(float(np.nanmax(np.abs(r - e), initial=0.0)) for r, e in zip(rounded, exact))
        scale = max(max(float(np.nanmax(np.abs(e), initial=0.0)) for e in exact), 1.0)
    return Noise(drift, scale), exact


def model_tolerance(
    graph: ModelGraph, inputs: Sequence[np.ndarray], *, dtype: type = np.float32
) -> float:
    """Absolute error two correct ``dtype`` ports of ``graph`` may show on ``inputs``."""
    noise, _ = model_noise(graph, inputs)
    return noise.tolerance(float(np.finfo(dtype).eps))


def _padding(batch: int, steps: int) -> np.ndarray:
    """(batch, steps) booleans: row 0 full, then right- and left-padded rows in turn."""
    padded = np.zeros((batch, steps), bool)
    for row in range(1, batch):
        keep = max(1, steps - 2 * row)
        if row % 2:
            padded[row, keep:] = True
        else:
            padded[row, : steps - keep] = True
    return padded


def _padded(batch: int, steps: int, lengths: Sequence[int] | None) -> np.ndarray:
    """(batch, steps) booleans: the steps after each row's length, or the mixed pattern."""
    if lengths is None:
        return _padding(batch, steps)
    return ~mask_from_lengths(lengths, batch, steps)


def example_inputs(
    graph: ModelGraph,
    *,
    batch: int = 3,
    steps: int = 7,
    seed: int = 0,
    lengths: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """Seeded inputs that exercise the model's masks.

    Token ids (inputs read by an ``Embedding``) are drawn from 1..vocabulary-1 and padded
    with 0: the first row is full, the next right-padded, the next left-padded; float
    inputs are standard normal, with the same rows' padded steps set to the ``Masking``
    value when a ``Masking`` layer reads them. With ``lengths`` (one per row, ``batch``
    of them), every row is right-padded after its length instead.

    Example:
        >>> from xframe_bilstm.graph import LayerRecord, ModelGraph
        >>> graph = ModelGraph("m", (LayerRecord("x", "input", "InputLayer",
        ...     options={"shape": (None, 2), "dtype": "float32"}),), ("x",), ("x",))
        >>> example_inputs(graph)[0].shape
        (3, 7, 2)
    """
    rng = np.random.default_rng(seed)
    readers: dict[str, list[LayerRecord]] = {}
    for record in graph.layers:
        for name in record.inputs:
            readers.setdefault(name, []).append(record)
    arrays = []
    for name in graph.inputs:
        record = graph.layer(name)
        shape = tuple(steps if size is None else int(size) for size in record.options["shape"])
        consumers = readers.get(name, [])
        embedding = next((r for r in consumers if r.kind == "embedding"), None)
        if embedding is not None:
            vocabulary = embedding.weights["embeddings"].shape[0]
            ids = rng.integers(1, max(vocabulary, 2), size=(batch, *shape))
            if len(shape) == 1:
                ids[_padded(batch, shape[0], lengths)] = 0
            arrays.append(ids.astype(np.int64))
            continue
        x = rng.standard_normal((batch, *shape))
        masking = next((r for r in consumers if r.kind == "masking"), None)
        if masking is not None and len(shape) == 2:
            x[_padded(batch, shape[0], lengths)] = masking.options["mask_value"]
        arrays.append(x.astype(np.float32))
    return arrays


__all__ = ["example_inputs", "model_noise", "model_tolerance", "run_model_reference"]
