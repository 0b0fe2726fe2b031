"""The checks behind ``verify=True`` of the ONNX converters: each result against the original.

- :func:`check_export`: ``compare(source, against=graph)``, the planner and runner of
  :func:`~xframe_bilstm.compare`: the source by its own computation and the exported graph
  on onnxruntime, beside the float64 reference.
- :func:`check_torch_import`: ``compare(graph, against=module)`` where the graph reads as
  recurrent layers or a whole model, else (:func:`check_graph_as_given`) onnxruntime on
  the graph against the module, bounded by the graph's own rounding noise.
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
from dataclasses import replace
from typing import Any

import numpy as np

from ._imports import require
from .canonical import RecurrentStack, layer_state_names
from .comparison import compare_outputs, dtype_epsilon
from .converters import VERIFY_BATCH, VERIFY_STEPS
from .correspondence import output_names_of
from .errors import ToleranceExceededError, WeightShapeError, XFrameError
from .frameworks import FRAMEWORKS
from .graph import ModelGraph
from .sources import Read, framework_of, read_source
from .stack_graph import as_graph, stack_of

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
    from .stack_graph import state_layers

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

    Where the graph reads as recurrent layers or a whole model
    (:func:`~xframe_bilstm.sources.read_source`), this is ``compare(model,
    against=module)``: the graph as given on onnxruntime (``@original``), the module by its
    own forward (``@against``), both beside the float64 reference of the reading, every
    pair within the model's derived tolerance (a stack's graph fed and read by meaning, as
    :func:`check_canonical_import` does, a whole model's in order). A graph the reader
    cannot read (an int8 one, a front end of other operators, weights fed as inputs...) is
    checked as :func:`check_graph_as_given` checks it. Each check takes ``inputs`` (one
    array per graph input that is not an initializer, in graph order), else, for a graph
    read through its interpreter's capture, the reading's example inputs (as long as its
    windows need), else seeded inputs built from the graph's declared inputs
    (:func:`~xframe_bilstm.adapters.onnx.example_inputs.seeded_graph_inputs`), once per
    value of each boolean input.
    """
    from .adapters.onnx.verify import RuntimeSession

    session = RuntimeSession(model)
    proto = session.proto
    read = _readable(proto)
    captured = _captured(read)
    if inputs is None and captured is not None:
        from .inputs import example_inputs

        batch = (read.batch if read is not None else None) or VERIFY_BATCH
        inputs = example_inputs(captured, batch=batch, steps=VERIFY_STEPS, seed=seed)
    variants = _import_inputs(proto, seed, inputs)
    names, arrays = variants[0]
    session.run(dict(zip(names, arrays)))  # refuses, naming why, a graph it cannot run
    if read is None:
        check_graph_as_given(session, module, variants)
        return
    stack = stack_of(as_graph(read.reading))
    if stack is None:  # a whole model: its inputs and outputs in order
        for _, arrays in variants:
            check_model_import(read, module, inputs=arrays, seed=seed)
        return
    ported = _by_meaning(module, proto, stack)  # fed and read by what they mean
    against = Read(stack, "torch", lambda: ported, source=module)
    for given in variants:
        check_canonical_import(proto, stack, seed=seed, against=against, given=given)


def check_model_import(read: Read, model: Any, *, inputs: Sequence[Any], seed: int) -> None:
    """Raise unless ``model`` (a torch module or Keras model of a whole graph, taking the
    graph's inputs in order) computes what onnxruntime computes on the graph ``read`` was
    read from, beside the reading's float64 reference, on ``inputs``."""
    _raise_unless_equivalent(_compare(read, model, inputs=list(inputs), seed=seed))


def _captured(read: Read | None) -> ModelGraph | None:
    """The reading of a graph read through its interpreter's capture, else None."""
    if read is not None and isinstance(read.reading, ModelGraph) and read.reading.captured_by:
        return read.reading
    return None


def _readable(proto: Any) -> Read | None:
    """The graph as ``compare()`` reads it, or None where the reader cannot read it (or
    reads it as the dequantized float model of an int8 graph, which a module that runs the
    int8 graph as given does not compute)."""
    try:
        read = read_source(proto)
    except XFrameError:  # the reader's refusal: checked against onnxruntime alone
        return None
    return None if read.quantized else read


def _by_meaning(module: Any, proto: Any, stack: RecurrentStack) -> Any:
    """``module`` (a graph's inputs and outputs, in graph order) called as a stack's module
    is: ``(x, initial_states, lengths)`` batch-first, returning what the stack returns (the
    graph's leading outputs, batch-first), so that its outputs pair with the reading's."""
    torch = require("torch")
    from .frameworks.onnx_feeds import RecurrentFeeds

    feeder = RecurrentFeeds(proto, stack)
    count = len(output_names_of(stack))

    base: Any = torch.nn.Module

    class GraphModule(base):
        def __init__(self) -> None:
            super().__init__()
            self.graph = module

        def forward(self, x: Any, states: Any = None, lengths: Any = None) -> tuple[Any, ...]:
            def numpy(tensor: Any) -> np.ndarray:
                return tensor.detach().to("cpu").numpy()

            arrays = feeder.feeds(
                numpy(x),
                None if states is None else [numpy(s) for s in states],
                None if lengths is None else numpy(lengths),
            )
            tensors = [
                torch.as_tensor(a, device=x.device, dtype=x.dtype if a.dtype.kind == "f" else None)
                for a in arrays
            ]
            outputs = self.graph(*tensors)
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            return tuple(
                o.transpose(0, 1) if feeder.time_major and o.ndim == 3 else o
                for o in outputs[:count]
            )

    return GraphModule()


def check_graph_as_given(
    session: Any,
    module: Any,
    variants: Sequence[tuple[tuple[str, ...], tuple[np.ndarray, ...]]],
) -> None:
    """Raise unless ``module`` computes what onnxruntime computes on a graph the reader
    cannot read, there being no reading to hold a float64 reference of.

    Both take each of ``variants``, (names, arrays) of the graph's inputs in graph order.
    The bound is ``NOISE_FACTOR`` times this graph's float32
    rounding noise on them, between the floor and the cap of
    :meth:`~xframe_bilstm.comparison.Noise.tolerance`
    (:func:`~xframe_bilstm.adapters.onnx.verify.graph_noise`), in the graph's dtype when that
    is coarser than float32.
    """
    from .adapters.onnx.verify import graph_noise, run_torch_graph_module
    from .adapters.torch import evaluating

    for names, arrays in variants:
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
    model: Any,
    stack: RecurrentStack,
    *,
    seed: int,
    against: Any = None,
    states: bool = True,
    given: tuple[tuple[str, ...], tuple[np.ndarray, ...]] | None = None,
) -> None:
    """Raise unless the float64 reference of ``stack`` computes what onnxruntime computes on
    ``model``: ``compare(model)`` with ``stack`` as its reading, so the reading is checked
    against the graph as onnxruntime runs it, not only against the interpreter it was
    identified with. The input is seeded from the graph's declared inputs (batch 2, 7 steps
    where they are dynamic), with the graph's state inputs as initial states and valid
    lengths where it takes them. With ``against`` (a converted layer), that layer runs too
    (``@against``) and must agree; without ``states`` the graph's states are zeros.
    ``given``: (names, arrays) of the graph's inputs to use instead of seeded ones."""
    from .adapters.onnx.example_inputs import seeded_graph_inputs
    from .adapters.onnx.probe import fixed_sizes

    fixed_batch, fixed_steps = fixed_sizes(model)
    batch, steps = fixed_batch or VERIFY_BATCH, fixed_steps or VERIFY_STEPS
    example = seeded_graph_inputs(model, seed=seed, batch=batch, steps=steps)
    if given is not None:  # the roles the seeded inputs tell, the values given
        names, arrays = given
        example = replace(example, arrays=tuple(arrays[names.index(n)] for n in example.names))
    x = example.value(example.x_name)
    initial = [example.value(name) for name in example.state_names] if states else []
    lengths = None if example.lengths_name is None else example.value(example.lengths_name)
    read = Read(stack, "onnxruntime", lambda: model, fixed_steps, fixed_batch, source=model)
    _raise_unless_equivalent(
        _compare(
            read,
            against,
            inputs=x.transpose(1, 0, 2) if example.time_major else x,
            initial_states=initial or None,
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
    "check_graph_as_given",
    "check_keras_import",
    "check_torch_import",
]
