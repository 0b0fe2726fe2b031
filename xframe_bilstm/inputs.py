"""The inputs every run of a comparison sees: drawn once (seeded) or checked once.

A stack takes one float array (B, T, D), right-padded by ``lengths`` when given, and
optionally every layer's initial states. A graph takes one array per model input (token
ids as integers) and masks padding by its values (``Embedding(mask_zero=True)``,
``Masking``), not by ``lengths``: generated inputs are padded the way its masks read them,
and given ``lengths`` must describe exactly the mask the model computes from its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import WeightShapeError
from .graph import MOVING_KINDS, LayerRecord, ModelGraph
from .masks import check_lengths, longest_first, mask_from_lengths
from .reference import Reading
from .stack_graph import as_graph, graph_initial_states

# One array for a stack or a one-input graph, a tuple of them for a graph with several.
Inputs = np.ndarray | tuple[np.ndarray, ...]


def run_inputs(
    reading: Reading,
    inputs: Any,
    lengths: Sequence[int] | None,
    *,
    seed: int,
    batch: int,
    steps: int,
) -> tuple[Inputs, np.ndarray | None]:
    """The inputs of every run, and the checked lengths (or None).

    A graph whose one input is masked by ``lengths`` (a stack's, option ``lengths``) takes
    a float array of ``batch`` rows and ``steps`` steps, which the lengths must fit; any
    other graph takes its inputs as :func:`example_inputs` draws them (see the module)."""
    graph = as_graph(reading)
    records = [graph.layer(name) for name in graph.inputs]
    if len(records) == 1 and records[0].options.get("lengths"):
        x = _sequence(records[0], inputs, seed, batch, steps)
        return x, None if lengths is None else check_lengths(lengths, *x.shape[:2])
    arrays, checked = _graph_inputs(graph, inputs, lengths, seed, batch, steps)
    return (arrays[0] if len(arrays) == 1 else tuple(arrays)), checked


def as_list(x: Inputs) -> list[np.ndarray]:
    """The arrays of ``x``, one per model input."""
    return list(x) if isinstance(x, tuple) else [x]


def positive_int(value: Any, name: str) -> int:
    # bool is an int to Python, but batch=True is a mistake, not one row.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise WeightShapeError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def real_array(value: Any, name: str) -> np.ndarray:
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


def _sequence(record: LayerRecord, inputs: Any, seed: int, batch: int, steps: int) -> np.ndarray:
    """The float64 (B, T, D) input of a record masked by lengths: every run casts it to the
    dtype it runs in."""
    features = int(record.options["shape"][-1])
    if inputs is None:
        shape = (positive_int(batch, "batch"), positive_int(steps, "steps"), features)
        return np.random.default_rng(seed).standard_normal(shape)
    x = real_array(inputs, "inputs")
    if x.ndim != 3 or x.shape[2] != features or 0 in x.shape:
        raise WeightShapeError(
            f"inputs: expected a non-empty array of shape (batch, time, {features}), got {x.shape}"
        )
    return x


def initial_states(
    reading: Reading, states: Sequence[np.ndarray] | None, x: Inputs
) -> list[np.ndarray] | None:
    """The initial states as float64, checked against the (batch, units) of every recurrent
    layer that takes them; refused by name where a model has no place for them."""
    if states is None:
        return None
    arrays = [real_array(state, "initial_states") for state in states]
    graph_initial_states(as_graph(reading), arrays, int(as_list(x)[0].shape[0]), np.float64)
    return arrays


def non_finite(reading: Reading, x: Inputs, states: list[np.ndarray] | None) -> str | None:
    """Where the arguments hold NaN or Inf, or None: such a run proves nothing."""
    given = as_list(x)
    arrays = {"inputs" if len(given) == 1 else f"inputs[{i}]": a for i, a in enumerate(given)}
    for index, state in enumerate(states or []):
        arrays[f"initial_states[{index}]"] = state
    for name, weight in _weights(reading):
        arrays[name] = weight
    found = []
    for name, array in arrays.items():
        bad = ~np.isfinite(np.asarray(array, dtype=np.float64))
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            found.append(f"{name} ({int(bad.sum())}, first at {first})")
    if not found:
        return None
    return "non-finite values in the arguments: " + ", ".join(found)


def _weights(reading: Reading) -> list[tuple[str, np.ndarray]]:
    """Every weight array of a stack or graph, named as a user finds it."""
    graph = as_graph(reading)  # a stack's records are named layers[0], layers[1]...
    recurrent = [(r.name, r.recurrent) for r in graph.layers if r.recurrent is not None]
    named = [(f"{r.name}.{k}", w) for r in graph.layers for k, w in r.weights.items()]
    for where, layer in recurrent:
        for side, weights in zip(("forward", "backward"), layer.weights):
            for name in ("kernel", "recurrent_kernel", "bias"):
                value = getattr(weights, name)
                if value is not None:
                    named.append((f"{where}.{side}.{name}", value))
    return named


def _graph_inputs(
    graph: ModelGraph,
    inputs: Any,
    lengths: Sequence[int] | None,
    seed: int,
    batch: int,
    steps: int,
) -> tuple[list[np.ndarray], np.ndarray | None]:
    if inputs is None:
        if lengths is None:
            return example_inputs(graph, batch=batch, steps=steps, seed=seed), None
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
        if graph.holds_lengths(name):
            arrays.append(_lengths_input(name, array))
            continue
        rank = 1 + len(graph.layer(name).options["shape"])  # (B,): one value per row
        if array.dtype.kind not in "iuf" or array.ndim < min(rank, 2) or 0 in array.shape:
            raise WeightShapeError(
                f"inputs ({name}): expected a non-empty array of numbers with a batch axis, "
                f"got {array.dtype} array of shape {array.shape}"
            )
        arrays.append(array.astype(np.int64) if array.dtype.kind in "iu" else array)
    batch_axes = [int(graph.time_major(name)) for name in graph.inputs]  # (time, batch, ...)
    if len({array.shape[axis] for array, axis in zip(arrays, batch_axes)}) != 1:
        raise WeightShapeError(
            f"inputs: every array needs the same batch size, got {[a.shape for a in arrays]}"
        )
    if lengths is None:
        return arrays, None
    first = arrays[0].shape
    batch, steps = (first[1], first[0]) if batch_axes[0] else (first[0], first[1])
    checked = check_lengths(lengths, batch, steps)
    _check_padding(graph, arrays, checked)
    return arrays, checked


def _lengths_input(name: str, array: np.ndarray) -> np.ndarray:
    """A given input of lengths as int64, or an error naming what is wrong with it."""
    if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu":
        raise WeightShapeError(
            f"inputs ({name}): expected the rows' lengths, one integer per row, got "
            f"{array.dtype} array of shape {array.shape}"
        )
    return array.astype(np.int64)


def _check_padding(graph: ModelGraph, arrays: list[np.ndarray], lengths: np.ndarray) -> None:
    """Refuse lengths that differ from the mask the model computes from its inputs."""
    for name, array in zip(graph.inputs, arrays):
        if graph.holds_lengths(name) and not np.array_equal(array, lengths):
            raise WeightShapeError(
                f"lengths: {lengths.tolist()} differ from the model's input {name!r}, "
                f"{array.tolist()}; give them once, as that input"
            )
        readers = [
            r
            for r in graph.layers
            if name in r.inputs and r.makes_mask and r.kind != "lengths_mask"
        ]
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


def _padded(batch: int, steps: int, lengths: Sequence[int] | np.ndarray | None) -> np.ndarray:
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
    stagger: int = 0,
) -> list[np.ndarray]:
    """Seeded inputs that exercise the model's masks.

    Token ids (inputs read by an ``Embedding``) are drawn from 1..vocabulary-1 and padded
    with 0: the first row is full, the next right-padded, the next left-padded; float
    inputs are standard normal, with the same rows' padded steps set to the ``Masking``
    value when a ``Masking`` layer reads them. With ``lengths`` (one per row, ``batch``
    of them), every row is right-padded after its length instead. An input of lengths (a
    packed sequence's, :meth:`~xframe_bilstm.graph.ModelGraph.holds_lengths`) takes
    ``lengths``, or else the first row full and the others two steps apart, shortest next:
    longest first where the model packs them as given with ``enforce_sorted=True`` (input
    option ``descending``). ``stagger`` gives each further input that many more steps than
    the one before (a source and a target of different lengths). ``steps`` is at least an
    input's ``min_steps`` option (the shortest input a captured ``forward`` takes).

    Example:
        >>> from xframe_bilstm.graph import LayerRecord, ModelGraph
        >>> graph = ModelGraph("m", (LayerRecord("x", "input", "InputLayer",
        ...     options={"shape": (None, 2), "dtype": "float32"}),), ("x",), ("x",))
        >>> example_inputs(graph)[0].shape
        (3, 7, 2)
    """
    rng = np.random.default_rng(seed)
    steps = max([steps, *(graph.layer(name).options.get("min_steps", 0) for name in graph.inputs)])
    readers: dict[str, list[LayerRecord]] = {}
    for record in graph.layers:
        for name in record.inputs:
            readers.setdefault(name, []).append(record)
    rows = None if lengths is None else np.asarray(lengths)
    held = [graph.layer(name) for name in graph.inputs if graph.holds_lengths(name)]
    if rows is None and held:
        rows = longest_first(batch, steps)
        if not any(record.options.get("descending") for record in held):
            rows = np.concatenate([rows[:1], rows[1:][::-1]])  # the full row, then shortest
    arrays = []
    for index, name in enumerate(graph.inputs):
        record = graph.layer(name)
        if graph.holds_lengths(name):
            arrays.append(np.array(rows, np.int64))  # its own: a pair's lengths are two inputs
            continue
        free = steps + index * stagger
        shape = tuple(free if size is None else int(size) for size in record.options["shape"])
        consumers = _past_moves(name, readers)
        embedding = next((r for r in consumers if r.kind == "embedding"), None)
        if embedding is not None:
            vocabulary = embedding.weights["embeddings"].shape[0]
            ids = rng.integers(1, max(vocabulary, 2), size=(batch, *shape))
            if len(shape) == 1:
                ids[_padded(batch, shape[0], rows)] = 0
            arrays.append(ids.astype(np.int64))
        else:
            x = rng.standard_normal((batch, *shape))
            masking = next((r for r in consumers if r.kind == "masking"), None)
            if masking is not None and len(shape) == 2:
                x[_padded(batch, shape[0], rows)] = masking.options["mask_value"]
            arrays.append(x.astype(np.float32))
        if graph.time_major(name):
            arrays[-1] = np.ascontiguousarray(np.swapaxes(arrays[-1], 0, 1))
    return arrays


def _past_moves(name: str, readers: dict[str, list[LayerRecord]]) -> list[LayerRecord]:
    """The records reading tensor ``name``, or a move of it."""
    found, carried = [], [name]
    while carried:
        for record in readers.get(carried.pop(), []):
            if record.kind in MOVING_KINDS:
                carried.append(record.name)
            else:
                found.append(record)
    return found


def named_shapes(graph: ModelGraph, x: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Each input's name and shape, where ``graph`` takes several (none for one).

    Example:
        >>> from xframe_bilstm.graph import LayerRecord, ModelGraph
        >>> ids = {"shape": (None,), "dtype": "int64"}
        >>> graph = ModelGraph("m", (LayerRecord("src", "input", "InputLayer", options=ids),
        ...     LayerRecord("tgt", "input", "InputLayer", options=ids)), ("src", "tgt"), ("tgt",))
        >>> named_shapes(graph, (np.zeros((3, 7)), np.zeros((3, 5))))
        (('src', (3, 7)), ('tgt', (3, 5)))
    """
    arrays = as_list(x)
    if len(arrays) < 2 or len(arrays) != len(graph.inputs):
        return ()
    return tuple(
        (name, tuple(int(n) for n in np.shape(a))) for name, a in zip(graph.inputs, arrays)
    )


__all__ = [
    "Inputs",
    "as_list",
    "example_inputs",
    "initial_states",
    "named_shapes",
    "non_finite",
    "run_inputs",
]
