"""Find out why two recurrent layers or models that should compute the same thing do not.

:func:`diagnose` runs two recurrent objects on one input and, when they disagree, tests cheap
hypotheses about the cause, from the weights where both sides have a canonical form and from
the outputs always. It returns a :class:`Diagnosis` whose ``code`` is one of these stable
strings (``causes`` lists every one that applies, the primary first):

- ``equivalent``: they agree within :func:`~xframe_bilstm.comparison.derived_tolerance` of the
  expected stack (float32 rounding for this model and input; float64 when both run in it).
- ``numerical_only``: they differ by more than that but by less than the same noise measure
  scaled to a 10-bit mantissa (eps 2**-10, as in TF32 matrix products and float16), and no
  hypothesis below applies: rounding, not a bug.
- ``weights_differ``: the canonical weights differ and no specific weight hypothesis explains
  it (e.g. Keras's ``Bidirectional`` re-created its forward layer with fresh weights); the
  message names the layer, direction and arrays.
- ``backward_not_reversed``: flipping the backward half of the output sequence in time makes
  them agree (the backward output was taken in processing order, as ``go_backwards`` returns
  it, where input time order was expected).
- ``directions_swapped``: swapping the forward and backward weights (or output halves and
  states) makes them agree.
- ``gate_order``: permuting the gate blocks of actual's weights makes them equal to
  expected's; the message names the permutation (e.g. "z,r,h read as r,z,h").
- ``bias_double_counted``: actual's effective bias is twice expected's (e.g. one Keras bias
  copied into both ``bias_ih`` and ``bias_hh``).
- ``bias_missing``: actual has no bias, or a zero one, where expected's is non-zero.
- ``kernel_not_transposed``: actual's kernel is expected's reshaped instead of transposed
  (e.g. ``weight_ih = kernel.reshape(G·H, D)`` in place of ``kernel.T``).
- ``activation_mismatch``: an activation differs by canonical name (e.g.
  ``hard_sigmoid_keras2`` against ``hard_sigmoid_keras3``).
- ``gru_reset_after_mismatch``: the GRUs differ in ``reset_after``.
- ``final_state_from_last_output``: actual's backward final state is the backward half of the
  output's last time step (PyTorch ``output[:, -1, H:]``), which is the state after reading
  only the last input; the backward final state is ``output[:, 0, H:]``.
- ``padding_semantics``: with ``lengths``, they agree at valid steps but not at padded ones,
  or one side ran over the padding (it matches an unmasked run).
- ``unknown``: none of the above.

What each side may be, and how it runs (outputs in the Keras output structure,
:func:`~xframe_bilstm.canonical.output_names`, every array converted to float64):

- any source :func:`~xframe_bilstm.sources.read_source` reads into recurrent layers: a Keras 3
  layer or ``Sequential`` (LSTM, GRU, SimpleRNN, Bidirectional; an unbuilt one is built by
  calling it once), a ``.keras``/``.h5`` file, a
  :class:`~xframe_bilstm.canonical.RecurrentStack`, a ``KerasRecurrent`` (from
  ``keras_to_torch``), a state_dict file, an ONNX graph (a ``.onnx`` path or a
  ``ModelProto``). It is read once and runs as ``compare()`` runs its original
  (:func:`~xframe_bilstm.planning.plan_subject`): the Keras layer's call, the module's
  ``forward``, a Keras 3 file as Keras loads it, the ONNX graph on onnxruntime as given, a
  stack (or a Keras 2 file) on the float64 reference; its outputs are matched by meaning
  with its reading's (:func:`~xframe_bilstm.correspondence.correspond`);
- a native ``nn.LSTM``/``nn.GRU``/``nn.RNN``: run by its own ``forward`` too, its ``output``
  and ``h_n`` read as what the other side returns (e.g. ``h_forward`` is a row of ``h_n``);
  where it runs on a packed sequence (zeros at padded steps) against a Keras side, both are
  compared at valid steps only;
- any other ``torch.nn.Module`` whose ``forward`` takes one batch-first tensor and returns a
  tensor or a (nested) tuple of tensors: flattened in order and matched by position to the
  other side's outputs (so return Keras's order, e.g. ``output, h_f, c_f, h_b, c_b``). It
  gets no ``lengths`` and has no canonical form, so only output-level hypotheses apply;
- ``actual`` may also be a pair ``(forward_layer, backward_layer)`` of single-direction
  layers: each runs alone, and their first outputs are concatenated along features as they
  come (no flip), their states forward then backward, as one checks a ``Bidirectional`` by
  hand;
- ``expected`` may be a whole model (a ``.keras``/``.h5`` file, a live Keras model with
  Embedding, Dense, masks..., or an ONNX graph that reads as one) and ``actual`` its port (a
  torch module whose ``forward`` takes the model's inputs, or an ONNX export of the model):
  both run on the model's inputs as ``compare(model, against=port)`` runs them
  (:mod:`.models`). When they disagree, the model's recurrent layers and the port's
  recurrent modules or ONNX nodes are paired in order (:mod:`.ports`) and diagnosed as
  above, one layer being the one-node case; the first that is not ``equivalent`` gives the
  verdict, its message prefixed with the layer. Then the Embedding, Dense, normalization and
  attention weights are compared with a torch port's ``nn.Embedding``, ``nn.Linear``,
  normalization modules (moving statistics included) and attention modules
  (``MultiHeadAttention`` kernels flattened over the heads) (``weights_differ``). A model
  with layers of the user's own classes takes ``custom_layers=`` as ``keras_to_torch`` does.

What cannot be read is refused naming the side (``expected cannot be diagnosed: ...``).

How the causes are found, in this order:

1. Options (activations, ``reset_after``) are compared layer by layer.
2. Each direction's weights are matched with expected's: identity first, then every gate
   permutation, kernels reshaped instead of transposed, a doubled or missing bias, and the
   two directions of a layer exchanged. What is found is verified by running actual's
   weights with the mistakes undone through the reference; directions nothing explains are
   ``weights_differ``.
3. Unless actual's weights in expected's layer already reproduce actual, its outputs are
   compared with expected's layer (holding actual's weights, mistakes undone, when the
   weights differ): flipped backward half, swapped halves, both; the backward final state
   against the last output step; with ``lengths``, valid steps alone and an unmasked run.
   An output-level fix counts when it brings the error within the numerical bound and
   removes at least 90% of it.
4. ``numerical_only`` needs matching weights (or none to compare) and no cause above.

One module per job:

- :mod:`.result`: :data:`CODES`, :class:`Diagnosis`, the findings hypotheses report,
  :func:`format_error`.
- :mod:`.sides`: what each side is, its reading, the outputs it is asked for, the input
  both run on.
- :mod:`.runners`: running one side as the comparison runs it, and naming both sides'
  outputs alike.
- :mod:`.context`: the run at hand and the bounds every hypothesis is judged by.
- :mod:`.weights`: weight-level hypotheses (options, gate order, transposition, bias,
  directions swapped, weights differ).
- :mod:`.outputs`: output-level hypotheses (flip, swap, final state from the last output,
  padding).
- :mod:`.verdict`: :func:`diagnose`, which runs them in order and picks the primary cause.
- :mod:`.models`: whole models, diagnosed layer by layer; :mod:`.ports` says where a port
  keeps its recurrent layers, :mod:`.normalization` and :mod:`.attention` where a torch
  port keeps those layers' weights.

Keras and torch are imported inside functions only, so importing this package imports no
framework.
"""

from __future__ import annotations

from .result import CODES, Diagnosis, format_error
from .verdict import diagnose

__all__ = ["CODES", "Diagnosis", "diagnose", "format_error"]
