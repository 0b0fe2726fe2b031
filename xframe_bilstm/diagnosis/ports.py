"""Where a whole model's port keeps its recurrent layers, in order, as canonical layers.

A torch port keeps them in its recurrent modules (registration order: the port's
``Recurrent``, a ``KerasRecurrent``, a native ``nn.LSTM``/``nn.GRU``/``nn.RNN``, one entry
per layer of a multi-layer one); an ONNX export in its LSTM/GRU/RNN nodes (graph order), read
as the ONNX importer reads a node; a Keras port (of a torch module) in its recurrent layers,
read as the Keras reader reads a model. Each is ``(name, layer, native)``: ``native`` when the
module returns what the Keras layer returns only because the diagnosis asks it to. Frameworks
are imported inside functions only.
"""

from __future__ import annotations

from typing import Any

from ..canonical import RecurrentLayer

# (name of the module or node, canonical layer, whether it is a native torch module)
PortLayer = tuple[str, RecurrentLayer, bool]


# What a message calls a port's module or node, by the framework the port runs on.
KINDS = {"torch": "torch", "onnxruntime": "ONNX node", "keras": "Keras layer"}


def port_layers(port: Any, framework: str) -> list[PortLayer]:
    """The recurrent layers of ``port``, a torch module, an ONNX graph or a Keras model
    (``framework`` says which: the framework its original runs on)."""
    if framework == "onnxruntime":
        return _onnx_layers(port)
    if framework == "keras":
        return [(r.name, r.recurrent, False) for r in keras_records(port) if r.recurrent]
    return _torch_layers(port)


def keras_records(model: Any) -> list[Any]:
    """The layer records of a Keras model, as the Keras reader reads it."""
    from ..models.live import graph_from_keras

    return list(graph_from_keras(model).layers)


def children(module: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every submodule by qualified name, in registration order."""
    found = []
    for name, child in module.named_children():
        found.append((prefix + name, child))
        found += children(child, prefix + name + ".")
    return found


def _torch_layers(module: Any) -> list[PortLayer]:
    from torch import nn

    from ..adapters.torch import KerasRecurrent, torch_to_canonical
    from ..adapters.torch.weights import read_layer
    from ..models.recurrent import Recurrent

    layers: list[PortLayer] = []
    inside: tuple[str, ...] = ()
    for name, child in children(module):
        if name.startswith(inside):
            continue  # held by a recurrent module already read
        if isinstance(child, Recurrent):
            layers.append((name, read_layer(child.rnn, 0, child.layer), False))
        elif isinstance(child, KerasRecurrent) or type(child) in (nn.LSTM, nn.GRU, nn.RNN):
            native = not isinstance(child, KerasRecurrent)
            stack = torch_to_canonical(child)
            many = len(stack.layers) > 1
            for index, layer in enumerate(stack.layers):
                layers.append((f"{name} layer {index}" if many else name, layer, native))
        else:
            continue
        inside = (*inside, name + ".")
    return layers


def _onnx_layers(graph: Any) -> list[PortLayer]:
    """Each recurrent node as the one layer the importer reads it as (its first candidate:
    a bidirectional node concatenates; a reverse node runs backward)."""
    from ..adapters.onnx import load_model
    from ..adapters.onnx.importer import layer_candidates
    from ..adapters.onnx.nodes import constant_values, read_recurrent_node

    proto = load_model(graph)
    constants = constant_values(proto)
    layers: list[PortLayer] = []
    for node in proto.graph.node:
        if node.op_type in ("LSTM", "GRU", "RNN"):
            spec = read_recurrent_node(node, constants)
            layer = layer_candidates([spec], [False], False)[0]
            layers.append((node.name or node.output[0], layer, False))
    return layers


__all__ = ["KINDS", "PortLayer", "children", "keras_records", "port_layers"]
