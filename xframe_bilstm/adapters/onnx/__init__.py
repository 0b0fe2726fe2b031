"""ONNX adapter: canonical stacks to ONNX graphs of native ``LSTM``/``GRU``/``RNN`` nodes, back,
and runners.

One module per job:

- :mod:`.vocabulary`: what export and import agree on (operator names, activations with
  their alpha and beta, graph input names, opset floors).
- :mod:`.builder`, :mod:`.node_export`, :mod:`.layer_export` and :mod:`.export`: canonical
  stack to ``onnx.ModelProto`` (:func:`canonical_to_onnx`), built from the weights, not traced.
- :mod:`.graph_export` and :mod:`.masked`: a whole model (``ModelGraph``) to standard
  operators (:func:`graph_to_onnx`), recurrent layers under Keras masks included; a torch
  packed sequence's mask in :mod:`.packed_export`.
- :mod:`.any_export`: the one entry for any graph (:func:`export_graph`): a stack's graph as
  :func:`canonical_to_onnx` exports it, any other as :func:`graph_to_onnx`.
- :mod:`.runtime`: the newest opset onnxruntime loads, loading models, :func:`run_onnxruntime`.
- :mod:`.nodes`: reading node attributes, constants and recurrent nodes
  (:func:`read_recurrent_node`).
- :mod:`.recurrent` and :mod:`.interpreter`: a torch module that runs a graph exactly
  (:func:`onnx_module`), ``If`` branches and weights given at run time included.
- :mod:`.coverage`: what of a graph the interpreter runs; one refusal naming all it does not.
- :mod:`.standard_ops` and :mod:`.layer_ops` (over :mod:`.op_call`): the standard operators
  around recurrent nodes (``MatMul``, ``Conv``, ``Pad``, pooling, normalization, ``Softmax``,
  reductions, activations) the interpreter runs, one function per operator.
- :mod:`.example_inputs` and :mod:`.model_inputs`: seeded inputs built from a graph's
  declared inputs, by role (sequence, states, lengths) or, for a whole model, by shape.
- :mod:`.weight_inputs`: graph inputs that are recurrent weights, and seeded values for them
  (used by :mod:`.example_inputs`).
- :mod:`.importer`: the canonical stack a graph computes (:func:`graph_to_canonical`).

Rules of this package:

- onnx, onnxruntime and torch are imported inside functions (``require(...)``), so importing
  it imports no framework.
- Graphs are float32: onnxruntime's CPU recurrent kernels have no float64 version.
- An attribute that changes the math and has no exact equivalent (``clip``,
  ``input_forget``, peepholes ``P``) is computed exactly by the torch interpreter and refused
  by the canonical form, never ignored.
"""

from __future__ import annotations

from .any_export import Export, export_graph, export_refusal
from .export import STATEFUL_REFUSAL, canonical_to_onnx
from .graph_export import graph_to_onnx
from .importer import graph_to_canonical
from .interpreter import GLUE_OPS, SUPPORTED_OPS, onnx_module
from .nodes import (
    RecurrentNodeSpec,
    constant_values,
    describe_node,
    node_attributes,
    read_recurrent_node,
)
from .runtime import graph_feeds, load_model, newest_runtime_opset, run_onnxruntime
from .vocabulary import (
    CARRY_OPSET,
    LENGTHS_INPUT,
    MIN_OPSET,
    ONNX_ACTIVATIONS,
    REVERSE_OPSET,
    X_INPUT,
    activation_refusal,
    initial_state_input_names,
)

__all__ = [
    "CARRY_OPSET",
    "GLUE_OPS",
    "LENGTHS_INPUT",
    "MIN_OPSET",
    "ONNX_ACTIVATIONS",
    "REVERSE_OPSET",
    "STATEFUL_REFUSAL",
    "SUPPORTED_OPS",
    "X_INPUT",
    "Export",
    "RecurrentNodeSpec",
    "activation_refusal",
    "canonical_to_onnx",
    "constant_values",
    "describe_node",
    "export_graph",
    "export_refusal",
    "graph_feeds",
    "graph_to_canonical",
    "graph_to_onnx",
    "initial_state_input_names",
    "load_model",
    "newest_runtime_opset",
    "node_attributes",
    "onnx_module",
    "read_recurrent_node",
    "run_onnxruntime",
]
