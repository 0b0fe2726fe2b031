"""Keras 3 adapter: built Keras recurrent layers to and from the canonical form, and a runner.

Rules of this package:

- Keras is imported only inside functions (``require("keras")``), so importing this package
  imports neither Keras nor TensorFlow.
- Weights are copied unchanged: the canonical form *is* Keras's orientation and gate order
  (``kernel`` (D, G·H), ``recurrent_kernel`` (H, G·H), LSTM ``ifco``, GRU ``zrh``). The one
  step that is not bit-exact is :func:`canonical_to_keras` folding a split LSTM/SimpleRNN bias
  (2, G·H) into Keras's single bias, one float addition per element.
- The conversion is for inference. ``dropout`` and ``recurrent_dropout`` act only while
  training and are accepted; options that change inference math and have no canonical
  equivalent raise :class:`~xframe_bilstm.errors.UnsupportedFeatureError` naming the layer,
  the option, its value and what to do.
- Activations are recognised by identity with Keras's own functions (:mod:`.activations`).
- :func:`graph_to_keras` rebuilds a whole model (a model graph) as a functional model.
- :func:`run_keras` runs layers compiled (``tf.function``), the way they run in production,
  and returns arrays in the order of :func:`~xframe_bilstm.canonical.output_names`. Calls
  are traced without AutoGraph unless they branch on tensors (:mod:`.tracing`).
"""

from __future__ import annotations

from .activations import hard_sigmoid_keras2, register_keras_activations
from .build import canonical_to_keras, set_layer_weights
from .graph import graph_refusal, graph_to_keras
from .read import INFERENCE_IDENTITY, keras_to_canonical
from .run import compute_dtype, run_keras
from .states import fixed_batch_size, reset_keras_states, restore_states, snapshot_states

__all__ = [
    "INFERENCE_IDENTITY",
    "canonical_to_keras",
    "compute_dtype",
    "fixed_batch_size",
    "graph_refusal",
    "graph_to_keras",
    "hard_sigmoid_keras2",
    "keras_to_canonical",
    "register_keras_activations",
    "reset_keras_states",
    "restore_states",
    "run_keras",
    "set_layer_weights",
    "snapshot_states",
]
