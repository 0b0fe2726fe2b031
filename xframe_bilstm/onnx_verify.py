"""The checks behind ``verify=True`` of the ONNX converters: each result against the original.

- :func:`check_export`: ``compare(source, against=graph)``, the planner and runner of
  :func:`~xframe_bilstm.compare`: the source by its own computation and the exported graph
  on onnxruntime, beside the float64 reference.
- :func:`check_torch_import`: onnxruntime on the given graph against the torch module.
- :func:`check_keras_import`: the same with the Keras layer run ``@against``.
- :func:`check_canonical_import`: ``compare(graph)`` with the stack read as its reading.

Each runs both sides once on a small seeded input (7 steps; 3 rows for an export, the
model's masks exercised; 2 for an import; with initial states and lengths where the graph
takes them) and raises
:class:`~xframe_bilstm.errors.ToleranceExceededError` with the numbers when they differ by
more than float rounding explains. Frameworks are imported inside the functions.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._imports import require
from .canonical import RecurrentStack, layer_state_names
from .comparison import compare_outputs, dtype_epsilon
from .converters import VERIFY_BATCH, VERIFY_STEPS
from .errors import ToleranceExceededError, WeightShapeError
from .frameworks import FRAMEWORKS
from .sources import Read, framework_of

_FLOAT32_EPSILON = float(np.finfo(np.float32).eps)


def check_export(
    read: Read,
    model: Any,
    *,
    seed: int,
    with_initial_states: bool = False,
    with_lengths: bool = False,
) -> None:
    """Raise unless ``model`` on onnxruntime computes what ``read``'s source computes itself.

    This is ``compare(source, against=model)`` on the seeded inputs of its graph
    (:func:`~xframe_bilstm.inputs.example_inputs`: 3 rows of 7 steps, the second right- and
    the third left-padded where the model masks its inputs): the source runs by its own
    computation (``@original``: a Keras layer's or model's call, a torch module's forward, a
    Keras 3 file as Keras loads it; a Keras 2 file, or one Keras cannot load here, is its
    float64 reference alone), the graph on onnxruntime (``@against``), both beside the
    float64 reference, and every pair must agree within the model's derived tolerance.
    Random initial states are given when the graph takes them and the source does (a Keras
    ``Sequential`` takes none: both start at zero), random valid lengths when the graph
    takes them and the source has Keras's mask semantics (a native
    ``nn.LSTM``/``nn.GRU``/``nn.RNN`` has not: its rows are full).
    """
    from .inputs import example_inputs
    from .stack_graph import as_graph, state_layers

    source = read.source
    graph = as_graph(read.reading)
    arrays = example_inputs(graph, seed=seed)
    batch = arrays[0].shape[0]
    rng = np.random.default_rng([seed, 1])
    states = None
    if with_initial_states and _takes_states(source):
        units = [
            record.recurrent.units
            for record in state_layers(graph)
            if record.recurrent is not None
            for _ in layer_state_names(record.recurrent)
        ]
        states = [rng.standard_normal((batch, u)).astype(np.float32) for u in units]
    lengths = None
    if with_lengths and not _native_torch(source):
        lengths = _seeded_lengths(rng, batch)
    # The graph means the reading it was written from: not read back (a reading of
    # zero_masked_outputs cannot be told from the graph's outputs alone).
    against = Read(read.reading, "onnxruntime", lambda: model, source=model)
    inputs = arrays[0] if len(arrays) == 1 else tuple(arrays)
    _raise_unless_equivalent(
        _compare(read, against, inputs=inputs, initial_states=states, lengths=lengths, seed=seed)
    )


def _compare(source: Read, model: Any, **given: Any) -> Any:
    """``compare(source, against=model)`` with no framework run but the source's own: a
    Keras file's own is the model Keras loads, which runs when Keras is asked for."""
    from .runner import compare

    frameworks = ["keras"] if _loads_in_keras(source) else []
    return compare(source, against=model, frameworks=frameworks, dtypes=("float32",), **given)


def _loads_in_keras(read: Read) -> bool:
    """Whether ``read`` is of a Keras 3 file that Keras loads here. A Keras 2 file (whose
    layers Keras 3 runs with other semantics) or one Keras cannot load is checked against
    its float64 reference alone."""
    if read.framework != "keras" or not isinstance(read.source, (str, os.PathLike)):
        return False
    if read.original is None or not FRAMEWORKS["keras"].available():
        return False
    try:
        read.original()
    except Exception:  # Keras's own failure to load the file (an op layer it cannot read)
        return False
    return True


def _raise_unless_equivalent(report: Any) -> None:
    if not report:
        lines = "\n".join(report.failures or ["nothing was compared"])
        raise ToleranceExceededError(
            f"{report.source}: its ONNX graph on onnxruntime computes something else\n{lines}"
        )


def _takes_states(source: Any) -> bool:
    """Whether ``source`` takes initial states: a Keras ``Sequential`` does not."""
    keras = sys.modules.get("keras")
    return keras is None or not isinstance(source, keras.Sequential)


def _native_torch(source: Any) -> bool:
    """A native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (or a state_dict file of one): rows full."""
    if isinstance(source, (str, os.PathLike)):
        return framework_of(source) == "torch"
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(source, torch.nn.RNNBase)


def _seeded_lengths(rng: np.random.Generator, batch: int) -> np.ndarray:
    lengths = rng.integers(1, VERIFY_STEPS + 1, batch)
    lengths[0] = VERIFY_STEPS  # one full row: every step is used somewhere
    return lengths.astype(np.int32)


def check_torch_import(
    model: Any, module: Any, *, seed: int, inputs: Sequence[Any] | None = None
) -> None:
    """Raise unless ``module`` computes what onnxruntime computes on the graph ``model``.

    Both take ``inputs`` (one array per graph input that is not an initializer, in graph
    order), else seeded inputs built from the graph's declared inputs
    (:func:`~xframe_bilstm.adapters.onnx.example_inputs.seeded_graph_inputs`), once per
    value of each boolean input. The bound is ``NOISE_FACTOR`` times this graph's float32
    rounding noise on them, between the floor and the cap of
    :meth:`~xframe_bilstm.comparison.Noise.tolerance`
    (:func:`~xframe_bilstm.adapters.onnx.verify.graph_noise`), in the graph's dtype when that
    is coarser than float32.
    """
    from .adapters.onnx.verify import RuntimeSession, graph_noise, run_torch_graph_module
    from .adapters.torch import evaluating

    session = RuntimeSession(model)
    for names, arrays in _import_inputs(session.proto, seed, inputs):
        expected = session.run(dict(zip(names, arrays)))
        with evaluating(module):
            actual = run_torch_graph_module(module, arrays)
        floats = [a.dtype.name for a in arrays if a.dtype.kind == "f"]  # not token ids
        epsilon = max([_FLOAT32_EPSILON, *(dtype_epsilon(name) for name in floats)])
        tolerance = graph_noise(session.proto, arrays).tolerance(epsilon)
        outputs = [f"output {o.name!r}" for o in session.proto.graph.output]
        _raise_unless_close(
            outputs,
            expected,
            actual,
            tolerance,
            "onnxruntime on the ONNX graph vs its torch module",
        )


def _import_inputs(
    proto: Any, seed: int, given: Sequence[Any] | None
) -> list[tuple[tuple[str, ...], tuple[np.ndarray, ...]]]:
    """(names, arrays) of each input the import is checked on: ``given``, else seeded ones."""
    from .adapters.onnx.example_inputs import seeded_graph_inputs

    if given is None:
        seeded = seeded_graph_inputs(proto, seed=seed, batch=VERIFY_BATCH, steps=VERIFY_STEPS)
        # each branch that a boolean graph input picks
        return [(inputs.names, inputs.arrays) for inputs in seeded.flag_variants()]
    initializers = {i.name for i in proto.graph.initializer}
    names = tuple(i.name for i in proto.graph.input if i.name not in initializers)
    if len(given) != len(names):
        raise WeightShapeError(
            f"inputs: {len(given)} arrays, where the graph takes {len(names)} "
            f"({', '.join(names)}); give one per graph input, in graph order"
        )
    return [(names, tuple(np.asarray(a) for a in given))]


def check_keras_import(model: Any, stack: RecurrentStack, layer: Any, *, seed: int) -> None:
    """Raise unless the Keras ``layer`` computes what onnxruntime computes on ``model``:
    :func:`check_canonical_import` with the layer run ``@against``, its outputs matched
    with the graph's by meaning. A Keras ``Sequential`` takes no initial states: the graph's
    state inputs are then fed zeros."""
    keras = require("keras")

    takes_states = not isinstance(layer, keras.Sequential)
    check_canonical_import(model, stack, seed=seed, against=layer, states=takes_states)


def check_canonical_import(
    model: Any, stack: RecurrentStack, *, seed: int, against: Any = None, states: bool = True
) -> None:
    """Raise unless the float64 reference of ``stack`` computes what onnxruntime computes on
    ``model``: ``compare(model)`` with ``stack`` as its reading, so the reading is checked
    against the graph as onnxruntime runs it, not only against the interpreter it was
    identified with. The input is seeded from the graph's declared inputs (batch 2, 7 steps
    where they are dynamic), with the graph's state inputs as initial states and valid
    lengths where it takes them. With ``against`` (a converted layer), that layer runs too
    (``@against``) and must agree; without ``states`` the graph's states are zeros."""
    from .adapters.onnx.example_inputs import seeded_graph_inputs
    from .adapters.onnx.probe import fixed_sizes

    fixed_batch, fixed_steps = fixed_sizes(model)
    batch, steps = fixed_batch or VERIFY_BATCH, fixed_steps or VERIFY_STEPS
    example = seeded_graph_inputs(model, seed=seed, batch=batch, steps=steps)
    x = example.value(example.x_name)
    given = [example.value(name) for name in example.state_names] if states else []
    lengths = None if example.lengths_name is None else example.value(example.lengths_name)
    read = Read(stack, "onnxruntime", lambda: model, fixed_steps, fixed_batch, source=model)
    _raise_unless_equivalent(
        _compare(
            read,
            against,
            inputs=x.transpose(1, 0, 2) if example.time_major else x,
            initial_states=given or None,
            lengths=lengths,
            seed=seed,
        )
    )


def _raise_unless_close(
    names: Sequence[str],
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    tolerance: float,
    label: str,
) -> None:
    result = compare_outputs(names, expected, actual, atol=tolerance, label=label)
    if not result:
        raise ToleranceExceededError(result.message())


__all__ = [
    "check_canonical_import",
    "check_export",
    "check_keras_import",
    "check_torch_import",
]
