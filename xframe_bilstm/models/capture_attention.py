"""A call of ``nn.MultiheadAttention`` in a captured ``forward``, read as one
``multi_head_attention`` record (Keras's ``MultiHeadAttention``).

Rules of this module:

- Keras attends over axis 1 of (batch, time, features): the module reads what it is given
  so where it is ``batch_first``, and where it is not, its inputs must be time-major
  tensors (``h.transpose(0, 1)``; see :mod:`.capture_time_major`), read batch-major. It
  has no ``add_bias_kv`` and no ``add_zero_attn`` (Keras has neither).
- It is called as ``attn(x, x, x)`` or ``attn(q, k, v)``, without ``key_padding_mask`` or
  ``attn_mask`` (a Keras layer takes its masks from the layers upstream), and only its
  output is used (``need_weights=False``, or the weights ignored).
- Which tensor is the query, the key and the value follows from the order in which the
  module moves their batch axes (``x.transpose(1, 0)``, query first), or, where it is not
  ``batch_first``, projects them (query first): torch's own code.
- Weights: ``in_proj_weight``'s rows (or ``q_proj_weight``... where the key and value
  sizes differ) transposed and split over the heads are Keras's (features, heads, dim)
  kernels, ``out_proj`` its (heads, dim, features) output kernel; torch scales the
  query by 1/sqrt(head_dim) as Keras does by 1/sqrt(key_dim).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._imports import require
from ..graph import LayerRecord
from .capture_ops import Tensors, Unsupported, op_name


def is_attention_module(child: Any) -> bool:
    """Whether ``child`` is an ``nn.MultiheadAttention``, read whole by this module."""
    return isinstance(child, require("torch").nn.MultiheadAttention)


def _check_module(path: str, child: Any, given: list[Any], tensors: Tensors) -> None:
    where = f"{path!r} (nn.MultiheadAttention)"
    if any(tensors.is_swapped(node) == child.batch_first for node in given):
        layout = "batch-major" if child.batch_first else "time-major"
        raise Unsupported(
            f"calls {where} with batch_first={child.batch_first} on tensors that are not "
            f"{layout}, so it attends over the batch; pass it (time, batch, features) "
            "where batch_first=False, (batch, time, features) where batch_first=True"
        )
    if child.bias_k is not None or child.add_zero_attn:
        raise Unsupported(
            f"calls {where} with add_bias_kv or add_zero_attn, which Keras's "
            "MultiHeadAttention does not have"
        )


def _roles(path: str, child: Any, members: list[Any], given: list[Any]) -> list[Any]:
    """The (query, key, value) nodes of the call, from the module's own transposes (its
    projections where it is not ``batch_first``)."""
    moving = "aten.transpose" if child.batch_first else "aten.linear"
    moved = [
        node
        for node in members
        if op_name(node) == moving
        and node.args[0] in given
        and (len(node.args) > 2 or moving == "aten.linear")
    ]
    readers = {arg for node in moved for arg in node.args[:1]}
    if set(given) - readers or not 1 <= len(moved) <= 3:
        raise Unsupported(
            f"passes a key_padding_mask or attn_mask to {path!r} (nn.MultiheadAttention); "
            "the Keras port takes masks from the layers upstream (Embedding(mask_zero=True), "
            "Masking): call it without masks"
        )
    inputs = [node.args[0] for node in moved]
    if len(inputs) == 1:
        return inputs * 3
    if len(inputs) == 2:  # attn(q, kv, kv): the key is the value
        return [inputs[0], inputs[1], inputs[1]]
    return inputs


def attention_output(path: str, members: list[Any], used: list[Any]) -> Any:
    """The node of the call's output; refused where its attention weights are used.

    The output comes out of the last ``linear`` of the call (``out_proj``); the averaged
    weights come straight from the softmax.
    """
    linears = [node for node in members if op_name(node) == "aten.linear"]
    outputs = [node for node in used if linears and _reaches(node, linears[-1], set(members))]
    if len(outputs) != 1 or len(used) != 1:
        raise Unsupported(
            f"uses the attention weights of {path!r} (nn.MultiheadAttention); the Keras port "
            "returns its output only: call it with need_weights=False"
        )
    return outputs[0]


def _reaches(node: Any, target: Any, inside: set[Any]) -> bool:
    pending, seen = [node], set()
    while pending:
        current = pending.pop()
        if current is target:
            return True
        if current in seen or current not in inside:
            continue
        seen.add(current)
        pending.extend(current.all_input_nodes)
    return False


def _weights(child: Any) -> dict[str, np.ndarray]:
    from ..adapters.torch import tensor_to_numpy

    embed, heads = int(child.embed_dim), int(child.num_heads)
    dim = embed // heads
    if child._qkv_same_embed_dim:
        rows = np.split(tensor_to_numpy(child.in_proj_weight), 3)
    else:
        rows = [tensor_to_numpy(getattr(child, f"{name}_proj_weight")) for name in ("q", "k", "v")]
    weights = {
        f"{name}_kernel": np.ascontiguousarray(matrix.T.reshape(-1, heads, dim))
        for name, matrix in zip(("query", "key", "value"), rows, strict=True)
    }
    if child.in_proj_bias is not None:
        biases = np.split(tensor_to_numpy(child.in_proj_bias), 3)
        for name, bias in zip(("query", "key", "value"), biases, strict=True):
            weights[f"{name}_bias"] = bias.reshape(heads, dim)
    out = tensor_to_numpy(child.out_proj.weight)
    weights["output_kernel"] = np.ascontiguousarray(out.T.reshape(heads, dim, embed))
    if child.out_proj.bias is not None:
        weights["output_bias"] = tensor_to_numpy(child.out_proj.bias)
    return weights


def attention_record(
    name: str, path: str, child: Any, members: list[Any], given: list[Any], tensors: Tensors
) -> LayerRecord:
    """The ``multi_head_attention`` record of one call of ``child`` (at ``path``).

    Args:
        name: the record's name.
        path: the module's path in the captured module, for messages.
        child: the ``nn.MultiheadAttention``.
        members: the captured nodes the call made, in graph order.
        given: the tensors the call reads from outside it.
        tensors: the records computing the captured tensors so far.

    Raises:
        Unsupported: naming the option or argument no Keras ``MultiHeadAttention`` has.
    """
    _check_module(path, child, given, tensors)
    query, key, value = _roles(path, child, members, given)
    for node in (query, key, value):
        if tensors.rank(node) != 3:
            raise Unsupported(
                f"passes a tensor of rank {tensors.rank(node)} to {path!r}; "
                "nn.MultiheadAttention reads (batch, time, features) or (time, batch, features)"
            )
    inputs = [tensors.name(query), tensors.name(value)]
    if key is not value:
        inputs.append(tensors.name(key))
    dim = int(child.embed_dim) // int(child.num_heads)
    options = {
        "num_heads": int(child.num_heads),
        "key_dim": dim,
        "value_dim": dim,
        "use_causal_mask": False,
        "dropout": float(child.dropout),
        "output_shape": None,
        "masked_rows": "uniform",
    }
    with require("torch").no_grad():
        weights = _weights(child)
    return LayerRecord(
        name, "multi_head_attention", "MultiheadAttention", tuple(inputs), options, weights
    )


__all__ = ["attention_output", "attention_record", "is_attention_module"]
