"""One node of a standard operator to run: :class:`OpCall`, what each function of
:data:`~.standard_ops.STANDARD_OPS` takes. Imports no framework."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import UnsupportedFeatureError
from .nodes import describe_node


@dataclass(frozen=True)
class OpCall:
    """One node to run: its attributes, its input tensors and where it runs.

    ``args`` holds one tensor per node input, None for an omitted optional input; ``opset``
    is the graph's default-domain opset (some operators changed meaning across versions);
    ``dtype`` the torch float dtype the graph runs in.
    """

    torch: Any
    node: Any
    attributes: dict[str, Any]
    args: list[Any]
    opset: int
    dtype: Any

    def arg(self, index: int) -> Any:
        """Input ``index``, or None when the node omits it."""
        return self.args[index] if index < len(self.args) else None

    def ints(self, name: str, index: int) -> list[int] | None:
        """A list of ints given as attribute ``name`` (older opsets) or as input ``index``."""
        if name in self.attributes:
            return [int(v) for v in self.attributes[name]]
        value = self.arg(index)
        return None if value is None else [int(v) for v in value.reshape(-1).tolist()]

    def refuse(self, what: str) -> UnsupportedFeatureError:
        return UnsupportedFeatureError(f"{describe_node(self.node)}: {what}")


# Runs one node: its outputs in node order.
Op = Callable[[OpCall], tuple[Any, ...]]
