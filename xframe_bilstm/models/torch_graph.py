"""A torch module whose ``forward`` applies its children in order, read as a model graph.

Rules of this module:

- :func:`~xframe_bilstm.models.torch_forward.check_forward` reads ``forward`` first:
  anything it does besides applying the children one after another, each recurrent child
  passing on its output sequence, is refused by name.
- Each child becomes the layer records a Keras model of the same computation holds:
  ``nn.Embedding`` an embedding (no mask: torch's ``padding_idx`` only fixes a row),
  ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (``batch_first``) one recurrent record per layer through
  the canonical form, with a dropout between layers where ``dropout`` is set,
  ``nn.Linear`` a dense record on the last axis, ``nn.Dropout`` an identity that keeps its
  rate, activations and ``Softmax(dim=-1)`` an activation, ``nn.Conv1d``/``nn.Conv2d``
  a channels-first convolution (:mod:`.torch_graph_convolution`).
- The first child fixes the input: token ids for an Embedding, (B, T, D) sequences for a
  recurrent module, (B, D) rows for a Linear, (B, C, ...) for a convolution; a
  normalization first as :func:`~xframe_bilstm.models.torch_graph_normpool.input_options`
  says.
- A ``forward`` that does more than apply its children in order (a ``torch.relu``
  between them, a permute, a sum over time, a residual add) is captured with
  ``torch.export`` instead (:mod:`.torch_capture`): the modules above are read the same
  way wherever they sit, and the operations between them one by one. The first module
  the module holds that fixes the input (in declaration order) shapes the example.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..errors import UnsupportedFeatureError
from ..graph import LayerRecord, ModelGraph
from .forward_inputs import ForwardInputs
from .guessed_capture import captured_at_guesses
from .input_guesses import child_input_options
from .input_shape import (
    InputShape,
    checked_input_shape,
    given_shapes,
    shape_of_example,
    without_batch,
)
from .torch_custom_children import child_factory, custom_child_record
from .torch_forward import check_forward, refuse_scripted
from .torch_graph_convolution import conv_records, conv_types
from .torch_graph_normpool import SUPPORTED as NORMPOOL_SUPPORTED
from .torch_graph_normpool import input_options, is_normpool, normpool_records
from .torch_graph_shape import SHAPE_CHILDREN, shape_child_records

# torch activation module class -> canonical activation name.
ACTIVATIONS = {
    "ReLU": "relu",
    "Tanh": "tanh",
    "Sigmoid": "sigmoid",
    "Hardsigmoid": "hard_sigmoid_keras3",  # relu6(x + 3) / 6, as Keras 3's hard_sigmoid
    "ELU": "elu",
    "SELU": "selu",
    "SiLU": "silu",
    "Softplus": "softplus",
    "Softsign": "softsign",
    "Identity": "linear",
}
_SEQUENCE = {"return_sequences": True, "time_major": False, "unroll": False}


def is_whole_module(module: Any) -> bool:
    """Whether ``module`` is a torch module made of children, not one recurrent module.

    Example:
        >>> import torch
        >>> is_whole_module(torch.nn.Sequential(torch.nn.LSTM(2, 3))), is_whole_module(
        ...     torch.nn.LSTM(2, 3))
        (True, False)
    """
    torch = require("torch")
    from ..adapters.torch import KerasRecurrent

    return (
        isinstance(module, torch.nn.Module)
        and not isinstance(module, (torch.nn.RNNBase, KerasRecurrent))
        and any(True for _ in module.children())
    )


def graph_from_torch(
    module: Any,
    *,
    name: str | None = None,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None = None,
    input_shape: InputShape | None = None,
    example_shapes: Sequence[Sequence[int | str]] | None = None,
    forward_inputs: Sequence[ForwardInputs] | None = None,
) -> ModelGraph:
    """The model graph of a module whose ``forward`` applies its children in order.

    ``custom_modules`` maps children of other classes (the class or its name) to factories
    of Keras layers (:mod:`.torch_custom_children`). ``input_shape`` (without the batch
    axis, None for time) replaces the input shape read from the first child
    (:mod:`.input_shape`); a ``forward`` of several inputs takes one shape per input.
    Without it, ``example_shapes`` (those of the inputs the graph will run on, without the
    batch axis) size the axes the first child leaves free but time
    (:func:`~.input_shape.shape_of_example`). ``forward_inputs``, where the inputs are
    known (an ONNX graph declares them), replaces the guesses of a captured ``forward``,
    likeliest first.

    Raises:
        UnsupportedFeatureError: naming what ``forward`` does besides that, and every child
            with no layer record.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Embedding(10, 4),
        ...                           torch.nn.GRU(4, 3, batch_first=True),
        ...                           torch.nn.Linear(3, 2), torch.nn.Softmax(dim=-1))
        >>> [record.name for record in graph_from_torch(net).layers]
        ['input', 'embedding_0', 'gru_1', 'linear_2', 'softmax_3']
    """
    torch = require("torch")
    refuse_scripted(module)  # compiled code: nothing to read or capture
    captured = functools.partial(  # what forward computes, read operation by operation
        _captured,
        module,
        name=name,
        custom_modules=custom_modules,
        input_shape=input_shape,
        example_shapes=example_shapes,
        forward_inputs=forward_inputs,
    )
    try:
        check_forward(module)  # nothing ``forward`` does is lost
    except UnsupportedFeatureError as plain:
        if "forward" in vars(module):  # set on the instance: refused either way
            raise
        return captured(plain)
    children = _children(module)
    if not children:
        raise UnsupportedFeatureError(f"{type(module).__name__} has no children to convert")
    nn = torch.nn
    refused = [
        f"{child_name!r} ({type(child).__name__})"
        for child_name, child in children
        if not isinstance(child, (nn.Embedding, nn.RNNBase, nn.Linear, nn.Dropout, nn.Softmax))
        and not isinstance(child, conv_types(nn))
        and type(child).__name__ not in ACTIVATIONS
        and type(child).__name__ not in SHAPE_CHILDREN
        and not is_normpool(child)
        and child_factory(child, custom_modules) is None
    ]
    time_major = [
        n for n, child in children if isinstance(child, nn.RNNBase) and not child.batch_first
    ]
    if time_major and not refused and not isinstance(module, nn.Sequential):
        # its input time-major, as torch's default layout has it: read as it is captured
        return captured(
            UnsupportedFeatureError(
                f"child {time_major[0]!r} has batch_first=False, and what forward computes "
                "could not be read on time-major inputs either:"
            )
        )
    if refused:  # read what they compute operation by operation, or name them
        own = ": factory, ".join(dict.fromkeys(entry.split("(")[-1][:-1] for entry in refused))
        unread = (
            f"cannot convert child {', '.join(refused)}; supported: Embedding, LSTM, GRU, RNN, "
            "Linear, Conv1d, Conv2d, ConvTranspose1d/2d, Dropout, "
            f"Softmax, {', '.join(NORMPOOL_SUPPORTED)} and "
            f"{', '.join(sorted({*ACTIVATIONS, *SHAPE_CHILDREN}))}; for a module of your own, "
            "map its class to a factory of a Keras layer: "
            f"torch_to_keras(module, custom_modules={{{own}: factory}})"
        )
        try:
            return captured(UnsupportedFeatureError(f"{unread}."))
        except UnsupportedFeatureError as error:
            if str(error).startswith(unread):
                raise
            raise UnsupportedFeatureError(
                f"{unread}. Nor could what it computes be read operation by operation: {error}"
            ) from error
    taken = {child_name for child_name, _ in children}
    input_name = "input" if "input" not in taken else "input_0"
    first = input_options(children)  # a normalization first: its own input shape
    records = [
        LayerRecord(input_name, "input", "InputLayer", options=first)
        if first
        else _input(input_name, *children[0], nn)
    ]
    shapes = given_shapes(input_shape, module)
    if shapes is not None and len(shapes) != 1:
        raise UnsupportedFeatureError(
            f"input_shape={input_shape!r}: {type(module).__name__}.forward takes one input; "
            "give its shape alone"
        )
    input_shape = shapes[0] if shapes else None
    if input_shape is None and example_shapes:
        example, _ = without_batch(example_shapes[0], module)  # one input: never marked
        input_shape = shape_of_example(records[0].options["shape"], example)
    if input_shape is not None:
        options = dict(records[0].options)
        options["shape"] = checked_input_shape(input_shape, options, module)
        records[0] = LayerRecord(input_name, "input", "InputLayer", options=options)
    with torch.no_grad():
        for child_name, child in children:
            factory = child_factory(child, custom_modules)
            if factory is not None:
                records.append(custom_child_record(child_name, child, records[-1].name, factory))
            else:
                _check_channels(child_name, child, records[-1], nn)
                records.extend(_records(child_name, child, records[-1].name, nn))
    return ModelGraph(
        name or type(module).__name__.lower(),
        tuple(records),
        inputs=(records[0].name,),
        outputs=(records[-1].name,),
        source=f"torch {type(module).__name__}",
    )


def _captured(
    module: Any,
    plain: UnsupportedFeatureError,
    *,
    name: str | None,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None,
    input_shape: InputShape | None = None,
    example_shapes: Sequence[Sequence[int | str]] | None = None,
    forward_inputs: Sequence[ForwardInputs] | None = None,
) -> ModelGraph:
    """The graph of a ``forward`` that is not a plain chain, captured by ``torch.export``
    (or, where that refuses it, a ``torch.fx`` trace lowered by it: :mod:`.capture_fx`)
    at the guesses of its inputs (:mod:`.guessed_capture`)."""
    from .torch_capture import capture_graph

    def capture(inputs: ForwardInputs) -> ModelGraph:
        return capture_graph(
            module,
            inputs,
            name=name,
            is_leaf=lambda child: is_leaf(child, custom_modules),
            read_child=lambda call, child, previous: child_records(
                call, child, previous, custom_modules
            ),
        )

    return captured_at_guesses(
        module,
        plain,
        capture,
        input_shape=input_shape,
        example_shapes=example_shapes,
        guesses=forward_inputs,
    )


def is_leaf(child: Any, custom_modules: Mapping[Any, Callable[[Any], Any]] | None) -> bool:
    """Whether a captured ``forward``'s calls of ``child`` are read as that module whole."""
    nn = require("torch").nn
    return (
        isinstance(
            child, (nn.Embedding, nn.RNNBase, nn.Linear, nn.Dropout, nn.Softmax, *conv_types(nn))
        )
        or type(child).__name__ in ACTIVATIONS
        or type(child).__name__ in SHAPE_CHILDREN
        or is_normpool(child)
        or child_factory(child, custom_modules) is not None
    )


def child_records(
    name: str,
    child: Any,
    previous: str,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None = None,
) -> list[LayerRecord]:
    """The layer records of one module call reading layer ``previous``, named ``name``."""
    torch = require("torch")
    factory = child_factory(child, custom_modules)
    if factory is not None:
        return [custom_child_record(name, child, previous, factory)]
    with torch.no_grad():
        return _records(name, child, previous, torch.nn)


def _check_channels(name: str, child: Any, previous: LayerRecord, nn: Any) -> None:
    # Embeddings and batch-first recurrent modules put time on axis 1, where a convolution
    # looks for channels: torch would convolve the features with time as channels.
    if isinstance(child, conv_types(nn)) and previous.kind in ("embedding", "recurrent"):
        raise UnsupportedFeatureError(
            f"child {name!r} ({type(child).__name__}) reads the (batch, time, features) "
            f"output of {previous.name!r} with channels on axis 1, so torch takes time "
            "steps as channels; a forward that permutes the axes first is not a plain "
            "sequence of children, so convert the parts separately"
        )


def _children(module: Any) -> list[tuple[str, Any]]:
    # nn.Sequential names children "0", "1"...: Keras names read better with the class.
    return [
        (f"{type(child).__name__.lower()}_{name}" if name.isdigit() else name, child)
        for name, child in module.named_children()
    ]


def _input(name: str, first_name: str, first: Any, nn: Any) -> LayerRecord:
    options = child_input_options(first_name, first, nn)
    return LayerRecord(name, "input", "InputLayer", options=options)


def _records(name: str, child: Any, previous: str, nn: Any) -> list[LayerRecord]:
    """The layer records of one child, reading the output of layer ``previous``."""
    from ..adapters.torch import tensor_to_numpy, torch_to_canonical

    kind = type(child).__name__
    if is_normpool(child):
        return normpool_records(name, child, previous)
    if isinstance(child, nn.Embedding):
        if child.max_norm is not None:
            raise UnsupportedFeatureError(
                f"child {name!r} is an Embedding with max_norm, which rescales rows as they "
                "are looked up (and rewrites its weights); Keras's Embedding does not"
            )
        weights = {"embeddings": tensor_to_numpy(child.weight)}
        return [LayerRecord(name, "embedding", kind, (previous,), {"mask_zero": False}, weights)]
    if isinstance(child, nn.RNNBase):
        if not child.batch_first:
            raise UnsupportedFeatureError(
                f"child {name!r} ({kind}) has batch_first=False; in a sequence of modules it "
                "would read the batch axis as time; use batch_first=True"
            )
        records: list[LayerRecord] = []
        for index, layer in enumerate(torch_to_canonical(child).layers):
            if index and child.dropout:  # torch drops out between its layers in training
                records.append(_dropout(f"{name}_dropout_{index}", child.dropout, previous))
                previous = records[-1].name
            layer_name = f"{name}_{index}" if index else name
            records.append(
                LayerRecord(layer_name, "recurrent", kind, (previous,), _SEQUENCE, recurrent=layer)
            )
            previous = layer_name
        return records
    if isinstance(child, nn.Linear):
        weights = {"kernel": np.ascontiguousarray(tensor_to_numpy(child.weight).T)}
        if child.bias is not None:
            weights["bias"] = tensor_to_numpy(child.bias)
        options = {"activation": "linear", "time_distributed": False}
        return [LayerRecord(name, "dense", kind, (previous,), options, weights)]
    if isinstance(child, conv_types(nn)):
        return conv_records(name, child, previous, nn)
    if isinstance(child, nn.Dropout):
        return [_dropout(name, child.p, previous)]
    if kind in SHAPE_CHILDREN:
        return shape_child_records(name, child, previous)
    if isinstance(child, nn.Softmax):
        if child.dim not in (-1, None):
            raise UnsupportedFeatureError(
                f"child {name!r} is Softmax(dim={child.dim}); only the last axis (dim=-1) maps "
                "to Keras's softmax"
            )
        return [LayerRecord(name, "activation", kind, (previous,), {"activation": "softmax"})]
    if kind == "Softplus" and (child.beta != 1 or child.threshold != 20):
        raise UnsupportedFeatureError(f"child {name!r}: Softplus with beta/threshold changed")
    options = {"activation": ACTIVATIONS[kind]}
    return [LayerRecord(name, "activation", kind, (previous,), options)]


def _dropout(name: str, rate: float, previous: str) -> LayerRecord:
    return LayerRecord(name, "identity", "Dropout", (previous,), {"rate": float(rate)})


__all__ = ["ACTIVATIONS", "child_records", "graph_from_torch"]
__all__ += ["is_leaf", "is_whole_module"]
