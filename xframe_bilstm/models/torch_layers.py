"""The PyTorch module of each Keras layer kind that a whole-model port holds.

:func:`layer_module` builds the module of one graph record with the record's weights copied
into it, once; the simple layers' modules are defined here, the rarer kinds' in their own
modules, imported only when a model has them. The port itself, which runs the modules in
the graph's order and carries the masks between them, is
:class:`~xframe_bilstm.models.to_torch.KerasModel`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..adapters.torch.tensors import owned_tensor, torch_dtype
from ..canonical import is_float_dtype
from ..convolution import torch_kernel_view
from ..errors import UnsupportedFeatureError
from ..graph import SHAPE_KINDS, LayerRecord, ModelGraph
from ..reference.tensor_ops import KINDS as TENSOR_OP_KINDS
from ..reference.tensor_ops import held_rows
from .recurrent import Recurrent
from .torch_convolution import Convolution, ConvolutionTranspose, PadOrCrop, activate
from .torch_normpool import BatchNorm, GlobalPool, GroupNorm, LayerNorm, Pool


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor with its own copy of ``array``: exactly one copy, never shared.

    The weights read from a file are read-only on purpose (the canonical form keeps them
    uncopied); a parameter must own writable memory, and that copy is the only one made.
    """
    return owned_tensor(array)


class Embedding(nn.Embedding):
    """``nn.Embedding`` that also says whether id 0 masks its step (Keras ``mask_zero``)."""

    def __init__(self, embeddings: np.ndarray, *, mask_zero: bool) -> None:
        vocabulary, features = embeddings.shape
        super().__init__(vocabulary, features, _weight=_tensor(embeddings))
        self.mask_zero = mask_zero

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mask_zero={self.mask_zero}"


class Dense(nn.Linear):
    """``nn.Linear`` followed by the Keras layer's activation (``linear`` for none)."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray | None, *, activation: str) -> None:
        inputs, units = kernel.shape
        # On the meta device: no memory and no random initialization for what is replaced.
        dtype = torch_dtype(kernel.dtype)
        super().__init__(inputs, units, bias=bias is not None, device="meta", dtype=dtype)
        self.activation = activation
        self.weight = nn.Parameter(_tensor(kernel.T))  # Keras computes x @ kernel
        if bias is not None:
            self.bias = nn.Parameter(_tensor(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activate(self.activation, super().forward(x))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", activation={self.activation!r}"


class Activation(nn.Module):
    """A Keras ``Activation`` layer."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activate(self.activation, x)

    def extra_repr(self) -> str:
        return repr(self.activation)


class Masking(nn.Module):
    """Keras ``Masking``: steps whose features all equal ``mask_value`` become zeros."""

    def __init__(self, mask_value: float) -> None:
        super().__init__()
        self.mask_value = mask_value

    def compute_mask(self, x: torch.Tensor) -> torch.Tensor:
        return (x != self.mask_value).any(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.compute_mask(x)[..., None], x, 0.0)

    def extra_repr(self) -> str:
        return f"mask_value={self.mask_value}"


class Reshape(nn.Module):
    """Keras ``Reshape`` (row-major, batch axis kept)."""

    def __init__(self, target_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.target_shape = tuple(target_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape((x.shape[0], *self.target_shape))

    def extra_repr(self) -> str:
        return f"target_shape={self.target_shape}"


class Concatenate(nn.Module):
    """Keras ``Concatenate`` along ``axis`` (counted with the batch axis, as in Keras)."""

    def __init__(self, axis: int, mask_combine: str) -> None:
        super().__init__()
        self.axis, self.mask_combine = axis, mask_combine

    def forward(self, *tensors: torch.Tensor, masks: object = None) -> torch.Tensor:
        return torch.cat(tensors, dim=self.axis)

    def combine_masks(
        self, tensors: list[torch.Tensor], masks: list[torch.Tensor | None]
    ) -> torch.Tensor | None:
        """The output mask: a step is kept where any (Keras 3) or every (Keras 2) input is."""
        if all(mask is None for mask in masks):
            return None
        rank = tensors[0].dim()
        if rank != 3 or self.axis not in (-1, 2, 1, -2):
            raise UnsupportedFeatureError(
                f"Concatenate(axis={self.axis}) of masked rank-{rank} tensors; only "
                "masked sequences joined along their features or their steps are supported"
            )
        from .torch_shape_layers import combine_masks

        if self.axis in (1, -2):  # the steps follow one another: so do their masks
            full = [
                torch.ones(t.shape[:2], dtype=torch.bool, device=t.device) if m is None else m
                for t, m in zip(tensors, masks)
            ]
            return torch.cat([m.bool() for m in full], dim=1)
        return combine_masks(tensors, masks, self.mask_combine)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class LengthsMask(nn.Module):
    """A torch ``pack_padded_sequence`` as a mask: ``x`` passes unchanged, and the steps
    from each row's length on are masked (right padding), as Keras masks them."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, masks: object = None) -> torch.Tensor:
        return x

    def combine_masks(
        self, tensors: list[torch.Tensor], masks: list[torch.Tensor | None]
    ) -> torch.Tensor:
        """The (batch, time) mask ``t < lengths[b]``, on ``x``'s device."""
        return _valid(*tensors)


class ValidSteps(nn.Module):
    """The valid steps of rows of per-row lengths as numbers (a torch ``forward``'s
    ``arange(T) < lengths[:, None]`` made float): 1 where ``t < lengths[b]``, 0 after; ``x``,
    token ids included, gives only the number of steps. A tensor of its own: no mask.

    Without parameters of its own, the module holds an empty tensor (not saved) of the
    model's float dtype, so that ``.to()`` and ``.double()`` change the output's dtype along
    with the model's parameters.
    """

    like: torch.Tensor

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("like", torch.empty(0, dtype=dtype), persistent=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, masks: object = None) -> torch.Tensor:
        return _valid(x, lengths).to(self.like.dtype)

    def combine_masks(self, tensors: list[torch.Tensor], masks: list[torch.Tensor | None]) -> None:
        return None

    def extra_repr(self) -> str:
        return f"dtype={self.like.dtype}"


def _valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The (batch, time) booleans ``t < lengths[b]`` of ``x``'s steps, on ``x``'s device."""
    steps = torch.arange(x.shape[1], device=x.device)
    return steps < lengths.to(x.device)[:, None]


def _float_dtype(graph: ModelGraph) -> torch.dtype:
    """The dtype of the graph's float weights, which the port's parameters take; the
    default dtype for a graph without any."""
    arrays = [array for record in graph.layers for array in record.weights.values()]
    for record in graph.layers:
        if record.recurrent is not None:
            arrays += [weights.kernel for weights in record.recurrent.weights]
    dtype = next((a.dtype for a in arrays if is_float_dtype(a.dtype)), None)
    return torch.get_default_dtype() if dtype is None else torch_dtype(dtype)


class BatchBroadcast(nn.Module):
    """A tensor the module holds, repeated over the batch of its input (a learned initial
    state or class token), or its first rows, as many as the input's axis ``steps_of``
    has (a positional table); only the input's sizes are read, so token ids do too."""

    def __init__(self, value: torch.Tensor, steps_of: int | None = None) -> None:
        super().__init__()
        self.value = nn.Parameter(value)  # named as weight_op's, read back as ``value``
        self.steps_of = steps_of

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = held_rows(self.value, {"steps_of": self.steps_of}, x.shape)
        return rows.expand(x.shape[0], *rows.shape)

    def extra_repr(self) -> str:
        steps = "" if self.steps_of is None else f", steps_of={self.steps_of}"
        return f"value={tuple(self.value.shape)}{steps}"


class TimeFirst(nn.Module):
    """Its input with axes 0 and 1 swapped: a result returned time-major, as torch's
    time-major code returns it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1)


class MergedRows(nn.Module):
    """Its (batch, time, ...) input with those axes in one, step by step where
    ``time_first`` (as time-major code's ``out.view(-1, C)``), else row by row."""

    def __init__(self, time_first: bool) -> None:
        super().__init__()
        self.time_first = time_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.transpose(0, 1) if self.time_first else x
        return rows.reshape(-1, *x.shape[2:])

    def extra_repr(self) -> str:
        return f"time_first={self.time_first}"


def layer_module(
    record: LayerRecord, graph: ModelGraph, build_model: Callable[[ModelGraph], nn.Module]
) -> nn.Module | None:
    """The module of ``record`` (``None`` for an input); ``build_model`` builds the port of
    a nested model (the one layer a ``TimeDistributed`` wraps)."""
    options = record.options
    if record.kind == "embedding":
        return Embedding(record.weights["embeddings"], mask_zero=bool(options["mask_zero"]))
    if record.kind == "masking":
        return Masking(float(options["mask_value"]))
    if record.kind in ("identity", "end_mask"):  # end_mask's mask rule ends the mask
        return nn.Identity()
    if record.kind == "lengths_mask":
        return LengthsMask()
    if record.kind == "valid_steps":
        return ValidSteps(_float_dtype(graph))
    if record.kind == "broadcast":
        steps_of = record.options.get("steps_of")
        return BatchBroadcast(_tensor(record.weights["value"]), steps_of)
    if record.kind == "time_first":
        return TimeFirst()
    if record.kind == "merged_rows":
        return MergedRows(bool(record.options["time_first"]))
    if record.kind == "recurrent":
        assert record.recurrent is not None
        return Recurrent(
            record.recurrent,
            return_sequences=bool(options["return_sequences"]),
            time_major=bool(options["time_major"]),
            return_state=bool(options.get("return_state", False)),
            masked=graph.masked(record.inputs[0]),
        )
    if record.kind == "dense":
        return Dense(
            record.weights["kernel"],
            record.weights.get("bias"),
            activation=str(options["activation"]),
        )
    if record.kind == "activation":
        return Activation(str(options["activation"]))
    if record.kind == "flatten":
        return nn.Flatten()
    if record.kind == "reshape":
        return Reshape(tuple(options["target_shape"]))
    if record.kind == "global_pool":
        data_format = str(options.get("data_format", "channels_last"))
        return GlobalPool(str(options["op"]), bool(options["keepdims"]), data_format)
    if record.kind == "batch_norm":
        return BatchNorm(
            dict(record.weights), axis=int(options["axis"]), epsilon=options["epsilon"]
        )
    if record.kind == "layer_norm":
        return LayerNorm(dict(record.weights), axis=options["axis"], epsilon=options["epsilon"])
    if record.kind == "group_norm":
        return GroupNorm(
            dict(record.weights),
            axis=int(options["axis"]),
            groups=int(options["groups"]),
            epsilon=options["epsilon"],
        )
    if record.kind == "pool":
        return Pool(**options)
    if record.kind == "concatenate":
        return Concatenate(int(options["axis"]), str(options["mask_combine"]))
    if record.kind in ("conv", "conv_transpose"):
        bias = record.weights.get("bias")
        # One copy, straight into torch's layout.
        kernel = _tensor(torch_kernel_view(record.weights["kernel"]))
        convolution = Convolution if record.kind == "conv" else ConvolutionTranspose
        return convolution(options, kernel, None if bias is None else _tensor(bias))
    if record.kind in ("zero_padding", "cropping"):
        op, key = ("pad", "padding") if record.kind == "zero_padding" else ("crop", "cropping")
        return PadOrCrop(op, tuple(options[key]), str(options["data_format"]))
    if record.kind in SHAPE_KINDS:
        from .torch_shape_layers import shape_module  # imported when a model has them

        return shape_module(record, graph, build_model)
    if record.kind == "custom":
        from .torch_custom import custom_module

        return custom_module(record)
    # The rarer layers' modules are imported when a model has them.
    if record.kind in (*TENSOR_OP_KINDS, "matmul", "expand", "gather", "slice_to"):
        from .torch_tensor_ops import tensor_op_module

        return tensor_op_module(record)
    if record.kind == "where":
        from .torch_where import where_module

        return where_module(record)
    if record.kind in ("attention", "multi_head_attention"):
        from .torch_attention import attention_module

        return attention_module(record)
    return None  # inputs


__all__ = [
    "Activation",
    "BatchBroadcast",
    "Concatenate",
    "Dense",
    "Embedding",
    "LengthsMask",
    "Masking",
    "MergedRows",
    "Reshape",
    "TimeFirst",
    "ValidSteps",
    "layer_module",
]
