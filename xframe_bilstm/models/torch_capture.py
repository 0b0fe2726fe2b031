"""A torch module's ``forward`` captured with ``torch.export``, read as a model graph.

Rules of this module:

- ``forward`` runs in eval mode, without gradients, on seeded example inputs shaped by the
  first module it holds (token ids for an ``nn.Embedding``, (B, T, D) for a recurrent
  module, ...; see :func:`~xframe_bilstm.models.torch_graph.first_input_options`), twice:
  at two batch sizes and two lengths of the last free axis (the time axis), so the graph
  knows which axes follow it (recurrent modules make ``torch.export`` fix the length of
  each capture). Other free axes, such as an image's height, take the example's size, 7.
- Every call of a module the package reads (an ``nn.LSTM``, ``nn.Linear``,
  ``nn.Conv2d``...; see :func:`~xframe_bilstm.models.torch_graph.is_leaf`) is read as
  that module, through the same readers as a child of a plain chain
  (:func:`~xframe_bilstm.models.torch_graph.child_records`), however deep it sits and
  however often it is called; a recurrent module's initial states must be its own zeros,
  and its final states are read one entry at a time, ``h_n[k]`` (:mod:`.capture_states`).
  A call of ``nn.MultiheadAttention`` is one
  ``multi_head_attention`` record (:mod:`.capture_attention`). Everything else
  ``forward`` computes is read operation by operation (:mod:`.capture_ops`), through
  modules of the user's own classes too.
- ``torch.export`` unrolls a ``for t in range(x.shape[1])`` loop over an
  ``nn.LSTMCell``/``nn.GRUCell``/``nn.RNNCell`` into one call per step: the calls of one
  cell over every step of the input, in both captures, are read as the ``nn.LSTM``/
  ``nn.GRU``/``nn.RNN`` holding its weights (:mod:`.capture_cells`); any other use of a
  cell is refused by name.
- What cannot be read is refused once, listing every operation with the line of
  ``forward`` it came from (``node.meta["stack_trace"]``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._imports import require
from ..errors import UnsupportedFeatureError
from ..graph import ModelGraph
from .capture_walk import LeafTest, ReadChild, read_captured

_BATCHES = (3, 2)


class CaptureError(UnsupportedFeatureError):
    """``torch.export`` could not capture ``forward`` at all."""


_LENGTHS = (7, 9)


def capture_graph(
    module: Any,
    input_options: Mapping[str, Any],
    *,
    name: str | None = None,
    is_leaf: LeafTest,
    read_child: ReadChild,
) -> ModelGraph:
    """The model graph of what ``module.forward`` computes, captured by ``torch.export``.

    Args:
        module: the module.
        input_options: the ``InputLayer`` options of its one input (``shape`` without the
            batch axis, None for a free axis, and ``dtype``).
        name: the graph's name (the class's, lowercased, by default).
        is_leaf: whether a module's calls are read as that module whole.
        read_child: the records of such a call, ``read_child(name, child, previous)``.

    Raises:
        UnsupportedFeatureError: ``torch.export`` could not capture ``forward``, or one
            message listing every operation with no layer record, with its line.
    """
    input_options = fixed_axes(input_options)
    exported = capture(module, input_options, 0)
    try:
        second = capture(module, input_options, 1)
    except CaptureError:  # the free axes are not free after all: shapes fixed
        second = None
    return read_captured(
        module,
        exported,
        second,
        input_options,
        name=name or type(module).__name__.lower(),
        is_leaf=is_leaf,
        read_child=read_child,
        batches=_BATCHES,
    )


def fixed_axes(input_options: Mapping[str, Any]) -> dict[str, Any]:
    """The input's options with only its last free axis left free (the time axis of ids,
    sequences and channels-first signals); the others take the examples' length, as a
    CRNN's image height is fixed by its convolutions.

    Example:
        >>> fixed_axes({"shape": (1, None, None), "dtype": "float32"})["shape"]
        (1, 7, None)
    """
    shape = list(input_options["shape"])
    free = [index for index, size in enumerate(shape) if size is None]
    for index in free[:-1]:
        shape[index] = _LENGTHS[0]
    return {**input_options, "shape": tuple(shape)}


def example_input(module: Any, input_options: Mapping[str, Any], which: int) -> Any:
    """The seeded example input of capture ``which`` (0 or 1)."""
    torch = require("torch")
    sizes = (_LENGTHS[which] if s is None else int(s) for s in input_options["shape"])
    shape = (_BATCHES[which], *sizes)
    rng = np.random.default_rng(which)
    if np.dtype(input_options["dtype"]).kind in "iu":
        vocabulary = next(
            (
                child.num_embeddings
                for child in module.modules()
                if isinstance(child, torch.nn.Embedding)
            ),
            2,
        )
        return torch.as_tensor(rng.integers(1, max(vocabulary, 2), size=shape))
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    return torch.as_tensor(rng.standard_normal(shape), dtype=dtype)


def capture(module: Any, input_options: Mapping[str, Any], which: int) -> Any:
    """``torch.export.export`` of ``module`` on example input ``which``, in eval mode.

    Raises:
        UnsupportedFeatureError: saying why ``torch.export`` could not capture it.
    """
    torch = require("torch")
    from ..adapters.torch import evaluating

    example = example_input(module, input_options, which)
    try:
        with evaluating(module), torch.no_grad(), warnings.catch_warnings():
            # nn.LSTM reassigns its flat weights as it runs: torch.export warns, harmlessly.
            warnings.filterwarnings("ignore", "The tensor attributes", UserWarning)
            return torch.export.export(module, (example,))
    except Exception as error:  # whatever the user's forward raises when captured
        lines = [line for line in str(error).strip().splitlines() if line.strip()]
        raise CaptureError(
            f"torch.export could not capture {type(module).__name__}.forward "
            f"({type(error).__name__}: {lines[0] if lines else ''})"
        ) from error


__all__ = [
    "CaptureError",
    "capture",
    "capture_graph",
    "example_input",
    "fixed_axes",
]
