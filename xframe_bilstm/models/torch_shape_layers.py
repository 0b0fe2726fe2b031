"""Merges, permutes, repeats, ``TimeDistributed`` and activation layers as torch modules.

Each module takes and returns tensors in the Keras layout (channels last), and computes the
Keras layer's definition; masks follow the rules of :mod:`xframe_bilstm.reference.shape_layers`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import UnsupportedFeatureError
from ..graph import LayerRecord, ModelGraph
from ..time_distributed import check_time_distributed, inner_graph

Mask = torch.Tensor | None


def combine_masks(tensors: list[torch.Tensor], masks: list[Mask], how: str) -> Mask:
    """The mask of a layer joining ``tensors``: a step kept where any/all inputs keep it;
    an input without a mask keeps every step."""
    if all(mask is None for mask in masks):
        return None
    full = [
        torch.ones(t.shape[:2], dtype=torch.bool, device=t.device) if m is None else m.bool()
        for t, m in zip(tensors, masks)
    ]
    stacked = torch.stack(full)
    return stacked.any(dim=0) if how == "any" else stacked.all(dim=0)


def _steps(mask: Mask, x: torch.Tensor) -> torch.Tensor | None:
    return None if mask is None else mask.bool()[..., None].expand(x.shape)


class Merge(nn.Module):
    """Keras ``Add``/``Subtract``/``Multiply``/``Average``/``Maximum``/``Minimum``, and the
    division of two tensors (:mod:`~xframe_bilstm.models.capture_arithmetic`)."""

    def __init__(self, op: str, mask_combine: str) -> None:
        super().__init__()
        self.op, self.mask_combine = op, mask_combine

    def forward(self, *tensors: torch.Tensor, masks: list[Mask] | None = None) -> torch.Tensor:
        rank = max(t.dim() for t in tensors)
        xs = [t.reshape(t.shape[:1] + (1,) * (rank - t.dim()) + t.shape[1:]) for t in tensors]
        masks = list(masks) if masks is not None else [None] * len(xs)
        keras3 = self.mask_combine == "any" and any(m is not None for m in masks)
        if self.op in ("maximum", "minimum"):
            return self._extreme(xs, masks if keras3 else [None] * len(xs))
        if self.op == "multiply" and keras3:
            return self._multiply(xs, masks)
        if self.op == "subtract":
            return xs[0] - xs[1]
        if self.op == "divide":
            return xs[0] / xs[1]
        total = xs[0]
        for x in xs[1:]:
            total = total * x if self.op == "multiply" else total + x
        return total / len(xs) if self.op == "average" else total

    def _extreme(self, xs: list[torch.Tensor], masks: list[Mask]) -> torch.Tensor:
        function = torch.maximum if self.op == "maximum" else torch.minimum
        output, output_mask = xs[0], _steps(masks[0], xs[0])
        for x, mask in zip(xs[1:], masks[1:]):
            steps = _steps(mask, x)
            if steps is not None:
                x = torch.where(steps, x, output)
            if output_mask is not None:
                output = torch.where(output_mask, output, x)
            output_mask = None if steps is None or output_mask is None else output_mask | steps
            output = function(output, x)
        return output

    def _multiply(self, xs: list[torch.Tensor], masks: list[Mask]) -> torch.Tensor:
        output: torch.Tensor | None = None
        kept: torch.Tensor | None = None
        for x, mask in zip(xs, masks):
            steps = _steps(mask, x)
            if steps is not None:
                x = torch.where(steps, x, torch.ones_like(x))
                kept = steps if kept is None else kept | steps
            output = x if output is None else output * x
        assert output is not None
        if all(mask is not None for mask in masks) and kept is not None:
            output = torch.where(kept, output, torch.zeros_like(output))
        return output

    def combine_masks(self, tensors: list[torch.Tensor], masks: list[Mask]) -> Mask:
        return combine_masks(tensors, masks, self.mask_combine)

    def extra_repr(self) -> str:
        return f"op={self.op!r}"


class Permute(nn.Module):
    """Keras ``Permute(dims)``: dims count from 1, after the batch axis."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, *self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class RepeatVector(nn.Module):
    """Keras ``RepeatVector(n)``: (B, F) to (B, n, F)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, None, :].expand(x.shape[0], self.n, x.shape[1])

    def extra_repr(self) -> str:
        return f"n={self.n}"


class ReLU(nn.Module):
    """Keras ``ReLU(max_value, negative_slope, threshold)`` (and ``LeakyReLU``)."""

    def __init__(self, max_value: float | None, negative_slope: float, threshold: float) -> None:
        super().__init__()
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.threshold:
            y = torch.where(x > self.threshold, x, torch.zeros_like(x))
        else:
            y = torch.relu(x)
        if self.max_value is not None:
            y = torch.clamp(y, 0.0, self.max_value)
        if self.negative_slope:
            y = y - self.negative_slope * torch.relu(self.threshold - x)
        return y

    def extra_repr(self) -> str:
        return (
            f"max_value={self.max_value}, negative_slope={self.negative_slope}, "
            f"threshold={self.threshold}"
        )


class PReLU(nn.Module):
    """Keras ``PReLU``: ``alpha`` has the input's shape without the batch axis (channels
    last), unlike ``nn.PReLU``'s per-channel axis 1."""

    def __init__(self, alpha: torch.Tensor) -> None:
        super().__init__()
        self.alpha = nn.Parameter(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) - self.alpha * torch.relu(-x)


class Softmax(nn.Module):
    """Keras ``Softmax(axis)`` (the axis counted with the batch axis, as torch's ``dim``)."""

    def __init__(self, axis: int, log: bool) -> None:
        super().__init__()
        self.axis, self.log = axis, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(x, self.axis) if self.log else torch.softmax(x, self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}" + (", log=True" if self.log else "")


class TimeDistributed(nn.Module):
    """Keras ``TimeDistributed``: ``layer`` runs on (B·T, ...) and its output is split back."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer(x.reshape((x.shape[0] * x.shape[1], *x.shape[2:])))
        return y.reshape((x.shape[0], x.shape[1], *y.shape[1:]))


def shape_module(
    record: LayerRecord, graph: ModelGraph | None, build_model: Callable[[ModelGraph], nn.Module]
) -> nn.Module:
    """The module of a record whose kind is in :data:`~xframe_bilstm.graph.SHAPE_KINDS`.

    ``build_model`` builds the one-layer model a ``TimeDistributed`` wraps
    (:class:`~xframe_bilstm.models.to_torch.KerasModel`).

    Example:
        >>> from xframe_bilstm.graph import ModelGraph
        >>> record = LayerRecord("r", "relu", "ReLU", ("x",),
        ...                      {"max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0})
        >>> shape_module(record, None, None)(torch.tensor([-1.0, 3.0, 9.0])).tolist()
        [0.0, 3.0, 6.0]
    """
    options = record.options
    if record.kind == "merge":
        return Merge(str(options["op"]), str(options["mask_combine"]))
    if record.kind == "permute":
        return Permute(tuple(options["dims"]))
    if record.kind == "repeat_vector":
        return RepeatVector(int(options["n"]))
    if record.kind == "relu":
        max_value = options["max_value"]
        return ReLU(
            None if max_value is None else float(max_value),
            float(options["negative_slope"]),
            float(options["threshold"]),
        )
    if record.kind == "elu":
        return nn.ELU(float(options["alpha"]))
    if record.kind == "prelu":
        return PReLU(torch.tensor(record.weights["alpha"]))
    if record.kind == "softmax":
        if graph is not None and any(graph.masked(name) for name in record.inputs):
            raise UnsupportedFeatureError(
                f"layer {record.name!r} ({record.class_name}) reads a mask of the steps, "
                "which Keras's Softmax applies along its last axes; remove the mask before it"
            )
        return Softmax(int(options["axis"]), bool(options["log"]))
    if record.kind == "time_distributed":
        masked = graph is not None and any(graph.masked(name) for name in record.inputs)
        check_time_distributed(record, masked)
        return TimeDistributed(build_model(inner_graph(record, 3)))
    raise UnsupportedFeatureError(f"layer {record.name!r}: no torch module for {record.kind!r}")


__all__ = ["Merge", "PReLU", "Permute", "ReLU", "RepeatVector", "Softmax", "TimeDistributed"]
__all__ += ["combine_masks", "shape_module"]
