"""The records a model graph is made of: one per Keras layer, its kind, options and weights.

Rules of this module:

- It holds data only: layer kinds with their options, numpy weights, and the recurrent
  layers as canonical :class:`~xframe_bilstm.canonical.RecurrentLayer` objects.
- A tensor is named by the layer that makes it: ``"layer"`` for its output 0, and
  ``"layer:1"``, ``"layer:2"``... for the others (:func:`tensor_name`). Only a recurrent
  layer with ``return_state`` has several: its output, then its final states in Keras
  order (h, c per direction, forward first).
- Every kind says how it passes a Keras mask on (:data:`MASK_RULES`); the graph
  (:mod:`xframe_bilstm.graph`) follows the rules from layer to layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .canonical import RecurrentLayer
from .errors import UnsupportedFeatureError

# How each kind passes on the mask of its (first) input, as the Keras layers do:
# "keep" passes it unchanged, "drop" ends it, "sequences" keeps it only while the layer
# returns sequences, "make" computes a new one, "merge" combines the inputs' masks.
MASK_RULES = {
    "input": "drop",
    "embedding": "make",
    "masking": "make",
    "identity": "keep",
    "recurrent": "sequences",
    "dense": "keep",
    "activation": "keep",
    "flatten": "drop",
    "reshape": "drop",
    "global_pool": "drop",
    "concatenate": "merge",
    # Keras 2 and 3 convolutions, padding and cropping do not support masks: the mask ends
    # there (Keras 3 warns) and padded steps are computed like any other.
    "conv": "drop",
    "conv_transpose": "drop",
    "zero_padding": "drop",
    "cropping": "drop",
    "merge": "merge",
    "permute": "drop",
    "repeat_vector": "drop",
    "time_distributed": "keep",
    "relu": "keep",
    "elu": "keep",
    "prelu": "keep",
    "softmax": "keep",
    "batch_norm": "keep",  # Keras 2 and 3 pass the mask on (it only matters in training)
    "layer_norm": "keep",
    "group_norm": "keep",  # padded steps count in the statistics, as in torch
    "pool": "drop",  # Keras 3 warns and drops it; Keras 2 refuses a masked input
    # A Keras 3 layer that does not support masking drops the mask (and warns).
    "custom": "drop",
    # Operations of a captured torch forward (no Keras layer of their own): a reduction or
    # a slice of the steps ends the mask; arithmetic with a constant keeps it.
    "reduce": "drop",
    "slice": "drop",
    "scalar_op": "keep",
    # Repeating positions (a captured ``repeat_interleave``) changes the steps: no mask.
    "repeat": "drop",
    "weight_op": "keep",
    "elementwise": "keep",
    # Attention layers return the query's mask (the query is their first input).
    "attention": "keep",
    "multi_head_attention": "keep",
    # A batched matrix product (a captured ``q @ k``): no Keras layer, its mask ends.
    "matmul": "drop",
    # A tensor broadcast over new steps (a conditioning vector repeated over another
    # tensor's steps), or read at given positions (each row's last valid step): no mask.
    "expand": "drop",
    "gather": "drop",
    # Steps cut to another tensor's length (a skip connection cut to the decoder's): no mask.
    "slice_to": "drop",
    # ``x`` where a comparison of another tensor with a number fails, a constant elsewhere
    # (a captured ``scores.masked_fill(mask == 0, -1e9)``): its mask ends.
    "where": "drop",
    # A torch packed sequence (read from ``forward``): ``pack_padded_sequence`` masks a
    # tensor by per-row lengths; ``pad_packed_sequence`` ends the mask, as nothing after it
    # in torch sees the padding.
    "lengths_mask": "make",
    "end_mask": "drop",
    # A tensor the module holds, given the batch axis of its input (a learned initial
    # state, query or class token): no steps of the input, no mask.
    "broadcast": "drop",
    # The valid steps of rows of per-row lengths as numbers (a mask written in a torch
    # forward, ``arange(T) < lengths[:, None]``): a tensor of its own, no mask.
    "valid_steps": "drop",
    # A result a torch forward returns time-major (a CTC model's (time, batch, classes)):
    # the batch axis is no longer first, so no mask follows.
    "time_first": "drop",
    # A result a torch forward returns with its batch and time axes in one, (batch * time,
    # ...) or (time * batch, ...) as a loss over every step reads it: no mask follows.
    "merged_rows": "drop",
}
# Attention layers: (query, value) or (query, value, key), each runner hands them to its own
# module for them.
ATTENTION_KINDS = ("attention", "multi_head_attention")
# Every kind of layer record: each says how it passes masks on.
KINDS = tuple(MASK_RULES)
# The kinds that read several tensors: the merges (mask rule "merge") and the attentions.
MULTI_INPUT_KINDS = (
    *(kind for kind, rule in MASK_RULES.items() if rule == "merge"),
    *ATTENTION_KINDS,
    "matmul",
    "where",
    "expand",
    "gather",
    "slice_to",
    "lengths_mask",
    "valid_steps",
)
# Merges, permutes, repeats, TimeDistributed and activation layers: each runner hands them
# to its own module for them.
SHAPE_KINDS = (
    "merge",
    "permute",
    "repeat_vector",
    "time_distributed",
    "relu",
    "elu",
    "prelu",
    "softmax",
)


@dataclass(frozen=True)
class LayerRecord:
    """One Keras layer: its kind, options, weights and the layers whose outputs it reads.

    ``options`` by kind (all keys always present unless said):

    - ``input``: ``shape`` (without the batch axis, None for any size), ``dtype``,
      optionally ``lengths`` (True: right-padded by the per-row lengths a run is given and
      masked by them, as a stack's input is) and ``descending`` (True on an input of
      lengths that must come longest first, as torch's ``enforce_sorted=True`` packs them).
    - ``embedding``: ``mask_zero``; weights ``embeddings`` (vocabulary, features).
    - ``masking``: ``mask_value``.
    - ``identity``: none, or ``rate`` for a dropout read from torch, kept so that a
      rebuilt model trains as the original.
    - ``recurrent``: ``return_sequences``, ``time_major``, ``unroll``, optionally
      ``return_state`` (False when absent: then the final states follow the output, or the
      forward and backward outputs of a ``Bidirectional`` with ``merge_mode=None``);
      ``recurrent`` holds the canonical layer. ``inputs`` are the sequence, then either no
      initial states (zeros) or all of them in Keras order (``initial_state=[h, c]``).
    - ``dense``: ``activation`` (a canonical activation name or ``"softmax"``),
      ``time_distributed``; weights ``kernel`` (D, units) and optionally ``bias``.
    - ``activation``: ``activation``.
    - ``reshape``: ``target_shape``.
    - ``global_pool``: ``op`` (``"max"`` or ``"average"``), ``keepdims``, and
      ``data_format`` (``"channels_last"`` when absent): every axis but the batch and the
      channels is pooled, so it is 1-D or 2-D by the input's rank.
    - ``concatenate``: ``axis`` (negative, counted from the end), ``mask_combine``
      (``"any"`` in Keras 3, ``"all"`` in Keras 2).
    - ``conv`` (``Conv1D``, ``Conv2D``): ``rank`` (spatial axes, 1 or 2), ``filters``,
      ``kernel_size``, ``strides``, ``dilation_rate`` (tuples of ``rank`` ints),
      ``padding`` (``"valid"``, ``"same"`` as TensorFlow pads, the extra step at the end,
      or ``"causal"``), ``groups``, ``data_format`` (``"channels_last"`` or
      ``"channels_first"``), ``activation``; weights ``kernel``
      (``*kernel_size``, input channels / groups, filters) and optionally ``bias``.
    - ``conv_transpose`` (``Conv1DTranspose``, ``Conv2DTranspose``, torch's
      ``ConvTranspose1d/2d``): ``rank``, ``filters``, ``kernel_size``, ``strides``,
      ``dilation_rate``, ``data_format``, ``activation`` as for ``conv``, and ``crops``:
      one ``(before, after)`` pair per spatial axis, the steps cut from each end of the
      full output (``(size - 1) * stride + dilation * (kernel - 1) + 1`` steps); a
      negative ``after`` adds that many steps no input reaches (the bias alone); weights
      ``kernel`` (``*kernel_size``, filters, input channels) and optionally ``bias``.
    - ``zero_padding`` and ``cropping``: ``padding`` / ``cropping`` (one ``(before,
      after)`` pair per spatial axis), ``data_format``.
    - ``merge``: ``op`` (``"add"``, ``"subtract"``, ``"multiply"``, ``"average"``,
      ``"maximum"``, ``"minimum"``, and ``"divide"`` of two, read from a torch ``forward``),
      inputs broadcast as Keras's merges broadcast them (a lower rank gets axes of size 1
      after the batch axis; a size 1 stretches to the other inputs'); ``mask_combine``
      (``"any"``: Keras 3, which also replaces the masked values of
      ``Multiply``/``Maximum``/``Minimum`` inputs; ``"all"``: Keras 2, which ignores masks
      in the values).
    - ``permute``: ``dims`` (Keras's, counted from 1 after the batch axis).
    - ``repeat_vector``: ``n``.
    - ``time_distributed``: ``layer``, the inner :class:`LayerRecord` (reading the
      wrapper's input), applied to every step; ``TimeDistributed(Dense)`` is a ``dense``.
    - ``relu``: ``max_value`` (None for none), ``negative_slope``, ``threshold``
      (``ReLU``, ``LeakyReLU``, ``ThresholdedReLU``).
    - ``elu``: ``alpha``.
    - ``prelu``: weights ``alpha`` (the input's shape without the batch axis, 1 on shared
      axes).
    - ``softmax``: ``axis`` (one axis, counted with the batch axis), ``log`` (False).
    - ``batch_norm`` (inference): ``axis`` (counted with the batch axis, as in Keras),
      ``epsilon``; weights ``moving_mean``, ``moving_variance`` and optionally ``gamma``
      (``scale``) and ``beta`` (``center``), each (channels,).
    - ``layer_norm``: ``axis`` (a tuple, counted with the batch axis), ``epsilon``; weights
      optionally ``gamma`` and ``beta``, shaped as the normalized axes.
    - ``group_norm``: ``axis`` (the channel axis, counted with the batch axis), ``groups``
      (consecutive channels sharing one mean and variance over every other axis but the
      batch; as many groups as channels is instance normalization), ``epsilon``; weights
      optionally ``gamma`` and ``beta``, each (channels,).
    - ``pool``: ``op`` (``"max"`` or ``"average"``), ``pool_size`` and ``strides`` (one
      int per spatial axis), ``padding`` (``"valid"`` or ``"same"``, TensorFlow's: the
      average counts only the input's values, the maximum ignores the padding),
      ``data_format``.
    - ``custom``: ``config``, ``registered_name``, ``build_torch``, ``build_keras`` (a user's
      class ported by the user's factories; see :mod:`xframe_bilstm.custom`); weights
      ``"0"``, ``"1"``... in the order the layer stores them.
    - ``reduce`` (read from a torch ``forward``): ``op`` (``"sum"``, ``"mean"``, ``"max"``,
      ``"min"``, ``"l1_norm"``, ``"l2_norm"``: the sum of absolute values, the square root
      of the sum of squares, ``"var"``, ``"std"``: the squared distances from the mean
      summed and divided by their count less ``correction``, an option of these two,
      ``"logsumexp"``), ``axes`` (a tuple, counted with the batch axis, never 0),
      ``keepdims``.
    - ``slice``: ``axis`` (counted with the batch axis, never 0), ``start``, ``stop``
      (None for the end), ``step``, ``keep_axis`` (False: the one position ``start``, the
      axis removed, as ``x[:, -1]``).
    - ``weight_op`` (read from a torch ``forward``): ``x op value`` (or ``value op x``
      where ``reverse``) with a tensor the module holds (a parameter, buffer or constant:
      ``x + self.position``, ``x * self.gamma``); ``op`` (``"add"``, ``"subtract"``,
      ``"multiply"``, ``"divide"``), ``reverse``, ``shape`` (the value's); weight
      ``value``, of at most the input's rank, broadcast from the right as torch and numpy
      do, its first axis of size 1 where it has the input's rank (never the batch).
    - ``elementwise`` (read from a torch ``forward``): ``function``, one of
      ``"abs"``, ``"log"``, ``"log1p"``, ``"expm1"``, ``"sign"``, ``"sin"``, ``"cos"``,
      applied to every element.
    - ``scalar_op``: ``op`` (``"add"``, ``"subtract"``, ``"multiply"``, ``"divide"``,
      ``"maximum"``, ``"minimum"``, ``"power"``), ``constant`` (a float), ``reverse`` (True:
      ``constant op x``).
    - ``attention`` (``Attention``, ``AdditiveAttention``; inputs ``(query, value)`` or
      ``(query, value, key)``): ``score`` (``"dot"``, ``"concat"`` or ``"additive"``),
      ``use_causal_mask``, ``dropout`` (training only); weights optionally ``scale`` (``()``,
      or ``(dim,)`` for ``"additive"``) and ``concat_score_weight`` (``()``, ``"concat"``).
      Masked value steps score -1e9; masked query steps output zeros.
    - ``multi_head_attention`` (inputs ``(query, value)`` or ``(query, value, key)``, each
      (batch, time, features), attention over time): ``num_heads``, ``key_dim``,
      ``value_dim``, ``use_causal_mask``, ``dropout`` (training only), ``output_shape``
      (the output's features, None for the query's), ``masked_rows`` (``"uniform"``: a
      fully masked query row attends to every position evenly, as Keras 2 and Keras 3's
      fused attention compute it; ``"zero"``: Keras 3 with ``dropout`` zeroes the weights
      of masked positions after the softmax, so it attends to nothing); weights
      ``query_kernel`` / ``key_kernel`` (features, heads, key_dim), ``value_kernel``
      (features, heads, value_dim), ``output_kernel`` (heads, value_dim, output features)
      and, with ``use_bias``, ``query_bias``, ``key_bias``, ``value_bias`` (heads, dim) and
      ``output_bias``.
    - ``matmul`` (read from a torch ``forward``; inputs ``(a, b)`` of one rank, at least
      3, the same sizes on every axis but the last two): ``transpose_a``, ``transpose_b``
      (swap that input's last two axes first); ``a @ b`` over the last two axes.
    - ``where`` (read from a torch ``forward``; inputs ``(x, source)``): ``compare`` (one of
      ``"eq"``, ``"ne"``, ``"lt"``, ``"le"``, ``"gt"``, ``"ge"``), ``value`` (a number),
      ``fill`` (a number, ``-inf`` and ``inf`` included) and ``axes`` (the axes of size 1
      inserted into ``source``, counted with the batch axis, never 0); the condition
      ``expand_dims(source, axes) <compare> value`` has ``x``'s rank and broadcasts to
      ``x``'s shape; the output is ``fill`` where it holds and ``x`` elsewhere.
    - ``lengths_mask`` (read from a torch ``pack_padded_sequence``; inputs ``(x, lengths)``,
      ``x`` (batch, time, ...), ``lengths`` integers (batch,)): no options; the output is
      ``x``, masked where ``t >= lengths[b]`` (right padding).
    - ``end_mask`` (read from a torch ``pad_packed_sequence``): no options; the output is
      its input, with no mask.
    - ``valid_steps`` (read from a torch ``forward(x, lengths)``: ``arange(T) <
      lengths[:, None]``, ``lengths.float()``; inputs ``(x, lengths)`` as ``lengths_mask``'s):
      no options; the output is (batch, time) in the model's float type, 1 where ``t <
      lengths[b]`` and 0 after (``x`` gives only the number of steps, its axis 1).
    - ``broadcast`` (read from a torch ``forward``: ``self.h0.expand(-1, B, -1)``,
      ``self.cls.expand(B, -1, -1)``, ``self.pe[:, :x.size(1)]``): ``shape`` (the
      value's), optionally ``steps_of`` (an axis of the input); weight ``value``; the
      output is ``value`` (with ``steps_of``, its first rows, as many as the input has on
      that axis) repeated over the batch of its one input, (batch, *shape), whose values
      are not read.
    - ``repeat`` (read from a torch ``forward``: ``x.repeat_interleave(2, dim=1)``):
      ``axis`` (counted with the batch axis, never 0) and ``repeats`` (a positive int);
      each position on ``axis`` repeated ``repeats`` times in a row.
    - ``expand`` (read from a torch ``forward``: ``z.unsqueeze(1).expand(-1, x.size(1),
      -1)``, ``z.repeat(1, T, 1)``; inputs ``(x,)`` or ``(x, like)``): ``sizes``, one per
      axis after the batch axis: -1 keeps ``x``'s size, a positive int is that size (``x``
      has 1 there), None is ``like``'s size on that axis (``x`` has 1 there). The output is
      ``x`` broadcast to those sizes, the batch axis as ``x``'s.
    - ``gather`` (read from a torch ``forward``: ``out.gather(1, index)``; inputs ``(x,
      index)`` of one shape but on ``axis``): ``axis`` (counted with the batch axis, never
      0); the output has ``index``'s shape, ``x`` at the position ``index`` holds on
      ``axis`` (whole numbers, integers or floats) and at the same place on the others.
    - ``slice_to`` (read from a torch ``forward``: ``skip[..., : x.shape[-1]]`` added to
      ``x``; inputs ``(x, like)``): ``axis`` (counted with the batch axis, never 0); the
      output is ``x``'s first positions on ``axis``, as many as ``like`` has there.
    - ``time_first`` (read from a torch ``forward`` returning a time-major tensor, or
      taking one): no options; the output is its input with axes 0 and 1 swapped. It is
      an output of the graph, (time, batch, ...), read by no other record, or the one
      reader of a time-major input, giving the others its batch-major tensor.
    - ``merged_rows`` (read from a torch ``forward`` returning ``out.view(-1, C)`` of its
      steps, as a loss over every step reads them): ``time_first`` (whether the rows go
      step by step, (time * batch, ...), as time-major code merges them, or row by row,
      (batch * time, ...)); the output is its (batch, time, ...) input with those two axes
      in one. It is an output of the graph, read by no other record.

    ``shares`` names an earlier record whose layer this one calls again, on other inputs
    (a layer shared by the branches of a siamese model): the same kind, class and options,
    and its weights (the same arrays). Each port holds that layer once and calls it for
    both records, so its weights stay one set, as in the original.

    Example:
        >>> record = LayerRecord("drop", "identity", "Dropout", inputs=("ids",))
        >>> record.mask_rule
        'keep'
    """

    name: str
    kind: str
    class_name: str
    inputs: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    weights: Mapping[str, np.ndarray] = field(default_factory=dict)
    recurrent: RecurrentLayer | None = None
    shares: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UnsupportedFeatureError(f"layer {self.name!r}: kind {self.kind!r} not in {KINDS}")
        if (self.kind == "recurrent") != (self.recurrent is not None):
            raise UnsupportedFeatureError(
                f"layer {self.name!r}: exactly the recurrent layers hold a RecurrentLayer"
            )

    @property
    def mask_rule(self) -> str:
        return MASK_RULES[self.kind]

    @property
    def outputs(self) -> tuple[str, ...]:
        """The names of the tensors this layer returns (see :func:`tensor_name`)."""
        count = 1
        if self.recurrent is not None:
            layer = self.recurrent
            count += layer.direction == "bidirectional" and layer.merge_mode is None
            count += state_count(layer) if self.options.get("return_state") else 0
        return tuple(tensor_name(self.name, index) for index in range(count))

    @property
    def makes_mask(self) -> bool:
        """Whether this layer starts a mask (``Masking``, ``Embedding(mask_zero=True)``,
        ``lengths_mask``)."""
        return self.kind in ("masking", "lengths_mask") or (
            self.kind == "embedding" and bool(self.options["mask_zero"])
        )


def tensor_name(layer: str, index: int) -> str:
    """The name of output ``index`` of ``layer``: the layer's own name for output 0.

    Example:
        >>> tensor_name("encoder", 0), tensor_name("encoder", 2)
        ('encoder', 'encoder:2')
    """
    return layer if index == 0 else f"{layer}:{index}"


def tensor_layer(name: str) -> str:
    """The layer that makes tensor ``name``: ``name`` without its ``:index``.

    Example:
        >>> tensor_layer("encoder:2"), tensor_layer("encoder")
        ('encoder', 'encoder')
    """
    layer, _, index = name.rpartition(":")
    return layer if layer and index.isdigit() else name


def state_count(layer: RecurrentLayer) -> int:
    """How many final (or initial) states ``layer`` has: h (and c) per direction."""
    return layer.num_states * len(layer.weights)


__all__ = [
    "ATTENTION_KINDS",
    "KINDS",
    "MASK_RULES",
    "MULTI_INPUT_KINDS",
    "SHAPE_KINDS",
    "LayerRecord",
    "state_count",
    "tensor_layer",
    "tensor_name",
]
