"""A torch module called with a graph's inputs, where its ``forward`` takes a tuple of them.

A graph's inputs are tensors, one each; ``forward(input, hidden)`` of an LSTM language
model takes ``hidden`` as one tuple, ``(h, c)`` (pytorch/examples' word language model).
Its graph takes ``input``, ``hidden_0`` and ``hidden_1`` (as ``torch.export`` names them),
and whatever runs the module itself on them (``compare``'s ``@original``, the converters'
checks) calls :func:`with_arguments`'s module: the user's own, or one handing it the
inputs grouped as ``ModelGraph.arguments`` says. It computes nothing of its own.
"""

from __future__ import annotations

from typing import Any

from .._imports import require
from ..graph import ModelGraph
from .forward_inputs import grouped


def with_arguments(module: Any, graph: ModelGraph) -> Any:
    """``module`` itself where each ``forward`` argument takes one of ``graph``'s inputs,
    else a module taking them one by one and calling ``module`` with them grouped."""
    if not graph.arguments:
        return module
    nn = require("torch").nn

    class Grouped(nn.Module):  # type: ignore[name-defined]
        """``module`` called with its arguments grouped (a tuple of states)."""

        def __init__(self) -> None:
            super().__init__()
            self.module = module

        def forward(self, *inputs: Any) -> Any:
            return self.module(*grouped(list(inputs), graph.arguments))

    Grouped.__name__ = Grouped.__qualname__ = type(module).__name__
    return Grouped()


__all__ = ["with_arguments"]
