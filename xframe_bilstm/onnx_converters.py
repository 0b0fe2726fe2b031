"""Public converters between the canonical form (so Keras and PyTorch) and ONNX.

:func:`to_onnx` builds a graph of native ONNX ``LSTM``/``GRU``/``RNN`` nodes from the
canonical weights, with the glue (Transpose, Reshape, Gather, Slice, ...) that gives its
outputs exactly the source's Keras meaning and layout. The import functions read such graphs
back, and those that ``torch.onnx.export(..., dynamo=False)`` and tf2onnx emit.

With ``verify=True`` (the default) each conversion is checked against the original's own
computation on one small seeded input (:mod:`xframe_bilstm.onnx_verify`): an export against
the source run in its own framework, an import against onnxruntime running the given graph.
They raise :class:`~xframe_bilstm.errors.ToleranceExceededError` with the numbers when the
two differ by more than float rounding explains. The check needs onnxruntime (without it,
:class:`~xframe_bilstm.errors.FrameworkUnavailableError`); where onnxruntime cannot run a
graph (it has no float64 ``LSTM``/``GRU``/``RNN`` kernels), the check cannot be made and
:class:`~xframe_bilstm.errors.UnsupportedFeatureError` says so. ``verify=False`` converts
without it.

Importing this module imports no framework; each function imports what it needs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._imports import require
from .atomic import write_atomically
from .canonical import RecurrentStack
from .errors import UnsupportedFeatureError
from .graph import ModelGraph
from .sources import read_source
from .stack_graph import as_graph


def to_onnx(
    source: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    opset: int | None = None,
    with_initial_states: bool = False,
    with_lengths: bool = False,
    verify: bool = True,
    seed: int = 0,
) -> Any:
    """Export a recurrent layer or stack, or a whole Keras model, to an ONNX model.

    For recurrent layers, the graph of native recurrent nodes takes ``x`` (B, T, D)
    float32 (B and T dynamic) and returns what the Keras form of ``source`` returns, named
    by :func:`~xframe_bilstm.canonical.output_names` (``output``, or
    ``output_forward``/``output_backward`` for ``merge_mode=None``, then the states ``h``,
    ``c``, ``h_forward``, ...). A whole Keras model (``Embedding``, ``Masking``, ``Dense``,
    merges... around its recurrent layers) becomes a graph of standard operators
    (:func:`~xframe_bilstm.adapters.onnx.graph_to_onnx`) whose inputs and outputs are the
    model's, by name; its masks work as Keras's do, padding on any side. Weights are
    float32.

    Args:
        source: a Keras layer, ``Sequential`` or model, a torch module, a
            ``RecurrentStack``, or the path of a ``.keras``/``.h5`` model or state_dict.
        path: where to write the model, atomically (a temporary file, then ``os.replace``).
        opset: default-domain opset, 7 or newer; default the newest the installed
            onnxruntime loads. ``go_backwards`` layers whose sequence is used need 10, and
            ``with_lengths`` on a forward last layer that returns sequences needs 11.
        with_initial_states: add every layer's initial states as graph inputs (B, H) in
            Keras order, named ``initial_h``, ``initial_c`` (``initial_h_forward``, ...;
            prefixed ``layer{i}_`` in stacks); without them the states start at zero.
        with_lengths: add an int32 ``lengths`` input (B,): valid steps of right-padded rows,
            with Keras's mask semantics at the padded positions.
        verify: before writing anything, ``compare(source, against=graph)`` on one
            seeded input: ``source`` by its own computation (a Keras layer's or model's
            call, a torch module's forward, the model Keras loads from a Keras file; a
            ``RecurrentStack`` is its float64 reference) and the graph on
            onnxruntime, beside the float64 reference, with random initial states and
            lengths where the graph takes them and the source does (a Keras
            ``Sequential`` takes no initial states, a native ``nn.LSTM`` no lengths); raise
            if any pair disagrees. The input has 3 rows of 7 steps, the second right- and
            the third left-padded where the model masks its inputs. Needs onnxruntime.
        seed: seed of that input.

    Returns:
        The ``onnx.ModelProto``, checked with ``onnx.checker.check_model(full_check=True)``.

    Raises:
        UnsupportedFeatureError: an activation ONNX recurrent nodes lack (selu, silu,
            exponential), a stateful stack, or an opset too old for what is asked; for a
            whole model, each layer not exported (naming it and its class), and
            ``with_initial_states``/``with_lengths``.
        ToleranceExceededError: with ``verify``, the graph computes something else than
            the source.
        FrameworkUnavailableError: with ``verify``, onnxruntime is not installed.

    Example:
        >>> import torch
        >>> model = to_onnx(torch.nn.GRU(3, 4, batch_first=True), opset=14)
        >>> [node.op_type for node in model.graph.node]
        ['Transpose', 'GRU', 'Reshape', 'Transpose']
        >>> to_onnx(torch.nn.GRU(3, 4), "gru.onnx")  # doctest: +SKIP
    """
    onnx = require("onnx")
    from .adapters import onnx as onnx_adapter

    read = read_source(source)
    chosen = onnx_adapter.newest_runtime_opset() if opset is None else int(opset)
    graph = as_graph(read.reading)
    # A layer that carries its states between calls: a graph keeps none between runs.
    if any(record.options.get("stateful") for record in graph.layers):
        raise UnsupportedFeatureError(onnx_adapter.STATEFUL_REFUSAL)
    model = onnx_adapter.export_graph(
        graph,
        opset=chosen,
        with_initial_states=with_initial_states,
        with_lengths=with_lengths,
    ).model
    onnx.checker.check_model(model, full_check=True)
    if verify:
        from .onnx_verify import check_export

        check_export(
            read,
            model,
            seed=seed,
            with_initial_states=with_initial_states,
            with_lengths=with_lengths,
        )
    if path is not None:
        # Readers see the old file or the whole new one, never a part.
        write_atomically(path, model.SerializeToString())
    return model


def onnx_to_canonical(model_or_path: Any, *, verify: bool = True, seed: int = 0) -> RecurrentStack:
    """The canonical stack an ONNX graph of LSTM/GRU/RNN nodes and glue computes.

    Reads graphs from :func:`to_onnx`, ``torch.onnx.export(..., dynamo=False)`` and tf2onnx
    (one recurrent node per layer). Weights and options come from the nodes' inputs and
    attributes; what the glue means (merge modes, ``go_backwards`` reversal, returned
    sequences and states, batch- or time-major input) is identified by running the graph
    and the candidate stacks on a random input and keeping the one that matches (see
    :func:`xframe_bilstm.adapters.onnx.graph_to_canonical`). Needs torch to run the graph.

    Args:
        model_or_path: a ModelProto, its bytes or a path.
        verify: also run onnxruntime on the given graph and the float64 reference of the
            stack on one seeded input, so the reading is checked against the graph as
            onnxruntime runs it, not only against the interpreter that identified it.
        seed: seed of that input.

    Raises:
        UnsupportedFeatureError: naming the node and attribute (``clip``, ``input_forget``,
            peepholes, activations), operator, or graph output that Keras cannot express;
            with ``verify``, a graph onnxruntime cannot run.
        ToleranceExceededError: with ``verify``, the stack computes something else than
            onnxruntime on the graph.
        FrameworkUnavailableError: ``verify`` without onnxruntime.

    Example:
        >>> import torch
        >>> stack = onnx_to_canonical(to_onnx(torch.nn.LSTM(3, 4, bidirectional=True)))
        >>> [(layer.cell, layer.direction, layer.merge_mode) for layer in stack.layers]
        [('lstm', 'bidirectional', 'concat')]
    """
    require("onnx")
    require("torch")
    from .adapters import onnx as onnx_adapter

    proto = onnx_adapter.load_model(model_or_path)
    stack = onnx_adapter.graph_to_canonical(proto)
    if verify:
        from .onnx_verify import check_canonical_import

        check_canonical_import(proto, stack, seed=seed)
    return stack


def onnx_to_torch(
    model_or_path: Any,
    *,
    verify: bool = True,
    seed: int = 0,
    inputs: Sequence[np.ndarray] | None = None,
) -> Any:
    """A torch module that runs an ONNX graph of LSTM/GRU/RNN nodes and glue exactly.

    ``forward`` takes the graph's inputs in graph order and returns its outputs in graph
    order and layouts. Recurrent nodes run on native ``nn.LSTM``/``nn.GRU``/``nn.RNN``
    (``module.recurrent[k].native``) where those compute them exactly, else on an exact
    loop of the ONNX equations (``clip``, ``input_forget``, peepholes, any ONNX activation
    with its alpha and beta, ``linear_before_reset=0``, ``layout`` 0 and 1,
    ``sequence_lens``). The standard operators exports put around them (``MatMul``,
    ``Gemm``, ``Conv``, ``Pad``, pooling, normalization, ``Softmax``, reductions,
    activations: :data:`~xframe_bilstm.adapters.onnx.standard_ops.STANDARD_OPS`) run as
    the ONNX specification defines them at the graph's opset. A graph exported for one
    batch size runs at any where onnxruntime shows its rows computed one at a time
    (:func:`~xframe_bilstm.adapters.onnx.free_batch.free_batch`), else at that size alone.

    Args:
        model_or_path: a ModelProto, its bytes or a path.
        verify: ``compare(graph, against=module)`` on one seeded input built from the
            graph's declared inputs (dynamic batch 2 and time 7, valid lengths, random
            states; each value of a boolean input): the graph on onnxruntime and the module,
            beside the float64 reference where the graph reads as recurrent layers or a
            whole model, and raise if any pair differs by more than the derived tolerance.
            A graph the reader cannot read (an int8 one, other operators before the
            recurrent nodes) is checked against onnxruntime alone, within ``NOISE_FACTOR``
            times the graph's own float32 rounding noise on that input (the graph's
            interpreter run in float64 against float32, bounded as
            :meth:`~xframe_bilstm.comparison.Noise.tolerance` bounds it). Needs onnxruntime,
            which has no float64 recurrent kernels: a float64 graph converts with
            ``verify=False`` only.
        seed: seed of that input.
        inputs: verify on these arrays instead, one per graph input (initializers aside) in
            graph order: for a graph that runs only on inputs of its own kind (a voice model
            whose padding needs hundreds of samples, say).

    Raises:
        UnsupportedFeatureError: an operator the interpreter does not run, naming it and
            its node; with ``verify``, a graph onnxruntime cannot run or whose inputs have
            no size to build an example from.
        WeightShapeError: ``inputs`` not one array per graph input.
        ToleranceExceededError: with ``verify``, the module computes something else than
            onnxruntime on the graph.

    Example:
        >>> import torch
        >>> module = onnx_to_torch(to_onnx(torch.nn.GRU(3, 4, batch_first=True)))
        >>> module(torch.zeros(2, 5, 3)).shape
        torch.Size([2, 5, 4])
    """
    require("onnx")
    require("torch")
    from .adapters import onnx as onnx_adapter
    from .adapters.onnx.free_batch import free_batch

    proto = onnx_adapter.load_model(model_or_path)
    module = onnx_adapter.onnx_module(free_batch(proto) or proto)
    if verify:
        from .onnx_verify import check_torch_import

        check_torch_import(proto, module, seed=seed, inputs=inputs)
    return module


def onnx_to_keras(
    model_or_path: Any, *, name: str | None = None, verify: bool = True, seed: int = 0
) -> Any:
    """A Keras 3 layer or ``Sequential`` computing what an ONNX recurrent graph computes.

    The graph is read by :func:`onnx_to_canonical` and built by
    :func:`~xframe_bilstm.adapters.keras.canonical_to_keras`, with the graph's float32
    weights. A split LSTM/SimpleRNN bias ``[Wb, Rb]`` becomes Keras's single bias (one
    float addition).

    Args:
        model_or_path: a ModelProto, its bytes or a path.
        name: the Keras layer's or model's name.
        verify: run onnxruntime on the given graph and the Keras layer on one seeded input
            (batch 2, 7 steps, random initial states and valid lengths where the graph takes
            them; zero states for a ``Sequential``, which takes none) and raise if the
            layer's outputs differ from the graph's leading outputs, matched as
            :func:`onnx_to_canonical` matched them, by more than
            :func:`~xframe_bilstm.comparison.derived_tolerance` allows. Needs onnxruntime.
        seed: seed of that input.

    Raises:
        UnsupportedFeatureError: naming what Keras cannot express (``clip``,
            ``input_forget``, peepholes, other activations, outputs with no Keras meaning);
            with ``verify``, a graph onnxruntime cannot run.
        ToleranceExceededError: with ``verify``, the layer computes something else than
            onnxruntime on the graph.

    Example:
        >>> import torch
        >>> layer = onnx_to_keras(to_onnx(torch.nn.GRU(3, 4, batch_first=True)))
        >>> type(layer).__name__, layer.reset_after
        ('GRU', True)
    """
    require("onnx")
    from .adapters.onnx import load_model

    proto = load_model(model_or_path)
    try:
        stack = onnx_to_canonical(proto, verify=False)  # the layer built from it is checked below
    except UnsupportedFeatureError as refusal:
        return _whole_graph_to_keras(proto, refusal, name=name, verify=verify, seed=seed)
    require("keras")
    from .adapters import keras as keras_adapter

    layer = keras_adapter.canonical_to_keras(stack, name=name)
    if verify:
        from .onnx_verify import check_keras_import

        check_keras_import(proto, stack, layer, seed=seed)
    return layer


def _whole_graph_to_keras(
    proto: Any, refusal: UnsupportedFeatureError, *, name: str | None, verify: bool, seed: int
) -> Any:
    """A graph of more than recurrent layers and glue (a convolution front end, a
    decoder): the Keras model of the whole model ``compare()`` reads it as
    (:func:`~xframe_bilstm.sources.read_source`), checked against onnxruntime on the graph
    beside that reading's float64 reference; ``refusal``, the recurrent reading's, stands
    for an int8 graph."""
    from .adapters.keras.graph import graph_to_keras

    read = read_source(proto)  # refuses, naming the nodes, what it cannot read
    graph = read.reading
    if read.quantized or not isinstance(graph, ModelGraph):  # an int8 graph's float model
        raise refusal
    model = graph_to_keras(graph if name is None else dataclasses.replace(graph, name=name))
    if verify:
        from .converters.verification import VERIFY_BATCH
        from .converters.whole_module import CAPTURED_CHECK_STEPS
        from .inputs import example_inputs
        from .onnx_verify import check_model_import

        batch = read.batch or VERIFY_BATCH  # a graph exported for one batch runs at it alone
        xs = example_inputs(graph, batch=batch, steps=CAPTURED_CHECK_STEPS, seed=seed)
        check_model_import(read, model, inputs=xs, seed=seed)
    return model


__all__ = ["onnx_to_canonical", "onnx_to_keras", "onnx_to_torch", "to_onnx"]
