"""Everything a user hands us, read once into what the library computes with.

Source types are tried in order, as ``torch.testing`` tries its pair types: the first that
accepts an object reads it. A reading is a :class:`~xframe_bilstm.canonical.RecurrentStack`
when the source is recurrent layers in a chain, else a :class:`~xframe_bilstm.graph.ModelGraph`
(a whole model: Embedding, Dense, masks...). A source may also hold a computation of its
own, its *original*: a live layer, model or module, a state_dict file's native module, a
Keras 3 file as Keras loads it, or an ONNX graph as onnxruntime runs it. Every run is
compared with it.

A Keras object can only exist if Keras is already imported, a torch module only if torch
is, and an ``onnx.ModelProto`` only if onnx is; so types are checked against frameworks
found in ``sys.modules``, and an adapter is imported only once its framework is known to be
in use.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .canonical import RecurrentStack
from .errors import UnsupportedFeatureError
from .graph import ModelGraph
from .models.from_torch import TORCH_FILE_SUFFIXES
from .reference import Reading
from .stack_graph import as_graph, takes_lengths

CustomModules = Mapping[Any, Callable[[Any], Any]]  # a torch class (or name) -> Keras layer


@dataclass(frozen=True)
class Read:
    """A source as read: its reading, the framework its original runs on ("" for none),
    how to get the original (loaded on first use, so a failure fails its runs only), the
    time length and batch size the original's input is fixed to (None when any runs), and the
    source it was read from (:func:`read_source` sets it; a ``Read`` given to
    :func:`read_source` again is returned as it is, so a caller that read a source passes
    the ``Read`` on instead of the source to read it once). ``quantized``: the original is
    an int8 ONNX graph, read as its dequantized float model, whose runs are judged against
    a quantization budget. ``unrun``: what of the source itself no run computes, which the
    report names among what it left out."""

    reading: Reading
    framework: str = ""
    original: Callable[[], Any] | None = None
    steps: int | None = None
    batch: int | None = None
    source: Any = None
    quantized: bool = False
    unrun: str = ""


def _is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def _is_state_dict_path(source: Any) -> bool:
    return _is_path(source) and os.fspath(source).endswith(TORCH_FILE_SUFFIXES)


def _is_onnx(source: Any) -> bool:
    if _is_path(source):
        return os.fspath(source).endswith(".onnx")
    onnx = sys.modules.get("onnx")
    return onnx is not None and isinstance(source, onnx.ModelProto)


def _is_keras(source: Any) -> bool:
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(source, keras.layers.Layer):
        return True
    from .models.live import keras_flavour  # tf_keras objects

    return keras_flavour(source) is not None


def _is_torch(source: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(source, torch.nn.Module)


def _read_stack(source: RecurrentStack) -> Read:
    return Read(source)


def _read_state_dict(source: Any) -> Read:
    from .adapters.torch import torch_to_canonical
    from .models.from_torch import load_state_dict_module

    module = load_state_dict_module(os.fspath(source))
    return Read(torch_to_canonical(module), "torch", lambda: module)


def _read_onnx(source: Any) -> Read:
    """What ``onnx_to_canonical(source, verify=False)`` reads; the original is the graph,
    loaded once for both. An int8 graph reads as its dequantized float model."""
    from .adapters.onnx import graph_to_canonical, load_model
    from .adapters.onnx.probe import fixed_sizes
    from .adapters.onnx.quantized import quantized_nodes

    proto = load_model(source)
    if quantized_nodes(proto):
        return _read_int8(proto)
    try:
        stack = graph_to_canonical(proto)  # its refusal first: the sizes need a sequence input
    except UnsupportedFeatureError as error:
        model, batch, steps = _whole_onnx_model(proto, error)
        return Read(model, "onnxruntime", lambda: proto, steps, batch)
    batch, steps = fixed_sizes(proto)
    return Read(stack, "onnxruntime", lambda: proto, steps, batch)


def _whole_onnx_model(proto: Any, refusal: UnsupportedFeatureError) -> tuple[ModelGraph, Any, Any]:
    """A graph of recurrent nodes and any other nodes the interpreter runs (an embedding, a
    convolution front end, Dense heads: :mod:`.models.from_onnx`), read as a whole model
    with the batch size its original runs at alone (None where any). Where both readings
    refuse, the capture's refusal comes first, followed by the recurrent reading's
    ``refusal``."""
    from .adapters.onnx.free_batch import fixed_batch
    from .adapters.onnx.nodes import has_recurrent_nodes
    from .models.from_onnx import graph_from_onnx

    if not has_recurrent_nodes(proto):
        raise refusal  # no recurrent layer: nothing of ours to read
    try:
        model = graph_from_onnx(proto)
    except UnsupportedFeatureError as error:
        if str(refusal) in str(error):  # the interpreter's own refusal: said once
            raise refusal from None
        # The capture reads the most: its refusal first, the recurrent reading's after.
        raise UnsupportedFeatureError(f"{error} (the recurrent reader: {refusal})") from refusal
    return model, fixed_batch(proto), None  # time: each input record's free or fixed axis


def _read_int8(proto: Any) -> Read:
    """An int8 graph: the reading of its dequantized float model; the original the int8
    graph itself, as onnxruntime runs it."""
    from .adapters.onnx import graph_to_canonical
    from .adapters.onnx.probe import fixed_sizes
    from .adapters.onnx.quantized import dequantized_model

    floats = dequantized_model(proto)
    try:
        stack = graph_to_canonical(floats)
    except UnsupportedFeatureError as refusal:
        try:
            model, batch, steps = _whole_onnx_model(floats, refusal)
        except UnsupportedFeatureError as error:
            raise _int8_refusal(error) from error
        return Read(model, "onnxruntime", lambda: proto, steps, batch, quantized=True)
    batch, steps = fixed_sizes(floats)
    return Read(stack, "onnxruntime", lambda: proto, steps, batch, quantized=True)


def _int8_refusal(error: UnsupportedFeatureError) -> UnsupportedFeatureError:
    return UnsupportedFeatureError(
        f"an int8 graph, read as its dequantized float model: {error}. compare() reads an "
        "ONNX graph as recurrent layers, or as the layers of the module its interpreter runs; "
        "quantization.quantization_error(graph) reports what the quantization of this graph "
        "cost, step by step"
    )


def _read_keras_file(source: Any) -> Read:
    from .keras_files import read_model

    path = os.fspath(source)
    graph = read_model(path)
    stack = graph.as_stack()
    reading: Reading = graph if stack is None else stack
    if graph.keras_major < 3:  # Keras 3 would run it with its own layer semantics
        return Read(reading, unrun=_KERAS2_UNRUN)
    # A stack forgets its input's shape; a functional model still refuses other lengths.
    time = graph.layer(graph.inputs[0]).options["shape"][0] if stack is not None else None
    original = functools.cache(lambda: load_keras_file(path))
    return Read(reading, "keras", original, None if time is None else int(time))


_KERAS2_UNRUN = (
    "a Keras 2 file: Keras 3 would load it with its own layers' semantics, so no run loads "
    "it; keras_to_torch(path) checks its port against the model tf_keras loads, when "
    "installed (custom_objects= for its custom classes)"
)


def _read_keras(source: Any) -> Read:
    from .models.live import graph_from_keras, is_whole_keras_model

    if is_whole_keras_model(source):
        return Read(graph_from_keras(source), "keras", lambda: source)
    from .adapters.keras import keras_to_canonical

    return Read(keras_to_canonical(source), "keras", lambda: source)


def _read_torch(
    source: Any,
    example_shapes: Sequence[Sequence[int | str]] | None = None,
    custom_modules: CustomModules | None = None,
) -> Read:
    from .adapters.torch.quantized import dequantized_rnn, is_dynamic_quantized_rnn

    if is_dynamic_quantized_rnn(source):  # read as its dequantized weights; no float original
        from .adapters.torch import torch_to_canonical

        unrun = (
            "its int8 kernels are not run (no quantization budget for torch's dynamic "
            "quantization yet): the runs compare its dequantized float weights; to compare "
            "an int8 run, export the float model to ONNX and quantize it with onnxruntime's "
            "quantize_dynamic"
        )
        return Read(torch_to_canonical(dequantized_rnn(source)), unrun=unrun)
    from .models.to_torch import KerasModel
    from .models.torch_graph import graph_from_torch, is_whole_module

    if isinstance(source, KerasModel):  # a whole-model port keeps the graph it was built from
        from .models.torch_readback import current_graph

        graph = current_graph(source, custom_modules=custom_modules)
        return Read(graph, "torch", lambda: source)
    if is_whole_module(source):  # its forward runs as written, so it stays a graph
        from .models.forward_arguments import with_arguments

        graph = graph_from_torch(
            source, example_shapes=example_shapes, custom_modules=custom_modules
        )
        return Read(graph, "torch", lambda: with_arguments(source, graph))
    from .adapters.torch import torch_to_canonical

    return Read(torch_to_canonical(source), "torch", lambda: source)


# (name, accepts, read), tried in order.
SOURCE_TYPES: tuple[tuple[str, Callable[[Any], bool], Callable[[Any], Read]], ...] = (
    ("canonical", lambda s: isinstance(s, RecurrentStack), _read_stack),
    ("torch state_dict", _is_state_dict_path, _read_state_dict),
    ("ONNX", _is_onnx, _read_onnx),
    ("Keras file", _is_path, _read_keras_file),
    ("keras", _is_keras, _read_keras),
    ("torch", _is_torch, _read_torch),
)


def source_type(source: Any) -> str:
    """The name of the first source type that accepts ``source``.

    Example:
        >>> source_type("model.keras"), source_type("weights.pt"), source_type("model.onnx")
        ('Keras file', 'torch state_dict', 'ONNX')
        >>> source_type(object())
        Traceback (most recent call last):
        ...
        xframe_bilstm.errors.UnsupportedFeatureError: object is not a model this package ...
    """
    for name, accepts, _ in SOURCE_TYPES:
        if accepts(source):
            return name
    raise UnsupportedFeatureError(
        f"{type(source).__name__} is not a model this package can read; pass a Keras 3 "
        "layer, Sequential or model, a torch nn.LSTM/nn.GRU/nn.RNN (or a module made by "
        "keras_to_torch, or a module whose forward applies such children in order), a "
        "RecurrentStack, an onnx.ModelProto, or the path of a .keras/.h5 or .onnx model or "
        "of a state_dict file (.pt, .pth, .bin, .safetensors)"
    )


def read_source(
    source: Any,
    *,
    example_shapes: Sequence[Sequence[int | str]] | None = None,
    custom_modules: CustomModules | None = None,
) -> Read:
    """Read ``source`` once: its reading and its original (see the module's rules). A
    ``Read`` is returned as it is. ``example_shapes``: the shapes of the inputs it will
    run on, without the batch axis, where the caller has them; a torch module whose first
    child leaves several axes free (a CRNN's image) is captured at it. ``custom_modules``:
    a torch module's custom children's Keras factories, by class (or class name), as
    :func:`~xframe_bilstm.torch_to_keras` takes them."""
    if isinstance(source, Read):
        return source
    name = source_type(source)
    if name == "torch":
        return replace(_read_torch(source, example_shapes, custom_modules), source=source)
    read = next(read for kind, _, read in SOURCE_TYPES if kind == name)(source)
    return replace(read, source=source)


def framework_of(source: Any) -> str:
    """``"canonical"``, ``"keras"`` or ``"torch"``: which framework ``source`` belongs to
    (a Keras file or an ONNX graph is read exactly into a stack: ``"canonical"``).

    Example:
        >>> framework_of("model.keras"), framework_of("model.onnx")
        ('canonical', 'canonical')
    """
    kind = source_type(source)
    families = {"Keras file": "canonical", "ONNX": "canonical", "torch state_dict": "torch"}
    return families.get(kind, kind)


def to_canonical(source: Any) -> RecurrentStack:
    """The canonical stack of a Keras layer or model, a torch module, a file or a stack.

    Example:
        >>> import numpy as np
        >>> from xframe_bilstm import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((1, 1)), np.zeros((1, 1)))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 1, 1, (w,),
        ...                                        recurrent_activation=None),))
        >>> to_canonical(stack) is stack
        True
    """
    reading = read_source(source).reading
    if isinstance(reading, ModelGraph):  # what no reader reads as a stack is a whole model
        where = os.fspath(source) if _is_path(source) else type(source).__name__
        raise UnsupportedFeatureError(
            f"{where}: a whole model (not only recurrent layers), which has no canonical "
            "stack; compare() runs it as a whole model and keras_to_torch() ports it"
        )
    return reading


def name_of(model: Any) -> str:
    """A file by its path, an object by its type."""
    return os.fspath(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__


def describe(source: Any, reading: Reading) -> str:
    """What a report calls the source: its kind, name and what it holds (a ``Read``: the
    source it was read from)."""
    if isinstance(source, Read) and source.source is not None:
        source = source.source
    graph = as_graph(reading)
    if not takes_lengths(graph):  # a whole model: its own name and size
        return f"{graph.source} ({len(graph.layers)} layers)"
    # Recurrent layers: the source, then each layer's cell and direction, the last's units.
    layers = [record.recurrent for record in graph.layers if record.recurrent is not None]
    kinds = "+".join(
        f"{layer.cell}{'' if layer.direction == 'forward' else '/' + layer.direction}"
        for layer in layers
    )
    # A file by its path, not its Python type.
    name = os.fspath(source) if _is_path(source) else getattr(source, "name", None)
    return (
        f"{source_type(source)} {name or type(source).__name__} ({kinds}, units {layers[-1].units})"
    )


def load_keras_file(path: str) -> Any:
    """A Keras 3 model file as Keras 3 loads it (``safe_mode``: no code from the file)."""
    from ._imports import require
    from .adapters.keras import register_keras_activations

    keras = require("keras")
    register_keras_activations()  # the package's own functions and layers a file may name
    return keras.saving.load_model(path, safe_mode=True)


__all__ = [
    "SOURCE_TYPES",
    "Read",
    "describe",
    "framework_of",
    "name_of",
    "read_source",
    "source_type",
    "to_canonical",
]
