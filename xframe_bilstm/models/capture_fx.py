"""``torch.fx`` symbolic tracing: the capture of a ``forward`` that ``torch.export`` refuses.

Rules of this module:

- ``torch.export`` runs ``forward`` on fake tensors and refuses what needs their values:
  a check such as ``torch._assert((ids < vocab).all(), ...)``, a copy kept for plotting
  (``self.attention = weights.detach().cpu().numpy()``), an operation with no fake kernel.
  ``torch.fx.symbolic_trace`` records calls instead of running them, so it reads those.
- The trace records the calls of the modules the package reads whole (``nn.LSTM``,
  ``nn.Linear``..., :func:`~xframe_bilstm.models.torch_graph.is_leaf`) as calls, under
  the same paths; everything else ``forward`` does is recorded as torch-level operations.
- Checks (``torch._assert``) and whatever the results do not depend on are left out of the
  trace: the port computes what ``forward`` returns, and is checked against ``module(x)``.
- The trace is then lowered to ATen operations by ``torch.export`` and read by the same
  walker and the same record builders as a direct capture (:mod:`.capture_walk`), so both
  captures read one vocabulary.
- Attributes ``forward`` sets on the module while traced, and lists, dicts, sets and
  deques it adds to (which would hold ``fx`` proxies), are put back as they were.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import os
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from .._imports import require

# The capture that read a module's forward, as ``captured_by`` reports it.
EXPORT = "torch.export"
FX = "torch.fx"


def forward_line(error: BaseException) -> str:
    """``file.py:12 (if out.sum() > 0:)``: the line of the user's code an error came from,
    the innermost frame outside torch and this package ("" when there is none).

    Example:
        >>> def forward():
        ...     raise ValueError("no")
        >>> try:
        ...     forward()
        ... except ValueError as error:
        ...     forward_line(error).startswith("<doctest")
        True
    """
    torch = require("torch")
    skipped = (
        os.path.dirname(str(torch.__file__)),
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not os.path.abspath(frame.filename).startswith(skipped)
        and not frame.filename.startswith("<eval_with_key>")  # a trace's generated code
    ]
    if not frames:
        return ""
    frame = frames[-1]
    where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
    return f"{where} ({frame.line.strip()})" if frame.line else where


def reason(error: BaseException, *, located: bool = True) -> str:
    """``TraceError: <first line> at file.py:12 (code)``: why a capture failed, and where
    (not where ``located`` is False: an error in code generated from ``forward``)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    line = forward_line(error) if located else ""
    return f"{type(error).__name__}: {lines[0] if lines else ''}" + (f" at {line}" if line else "")


def fx_module(module: Any, is_leaf: Callable[[Any], bool]) -> Any:
    """``module``'s ``forward`` traced by ``torch.fx``, in eval mode, as a ``GraphModule``
    holding the same submodules under the same paths.

    Args:
        module: the module.
        is_leaf: whether a submodule's calls are recorded as calls of it (and read whole).

    Raises:
        Exception: whatever ``torch.fx`` raises where it cannot trace ``forward``.
    """
    torch = require("torch")
    from ..adapters.torch import evaluating

    class Tracer(torch.fx.Tracer):  # type: ignore[name-defined]
        def is_leaf_module(self, child: Any, qualified_name: str) -> bool:
            return bool(is_leaf(child)) or super().is_leaf_module(child, qualified_name)

        def _filter_traceback_frames(self, summary: Any) -> Any:
            # torch.fx keeps too few frames to show the user's line: keep the whole stack
            # but this frame, as torch.export records it (read by ``source_line``).
            frames = [f for f in traceback.extract_stack() if f.filename != __file__]
            return traceback.StackSummary.from_list(frames)

    tracer = Tracer()
    tracer.record_stack_traces = True  # the lines of forward, for refusals
    with kept_attributes(module), evaluating(module), torch.no_grad():
        graph = tracer.trace(module)
    traced = torch.fx.GraphModule(module, graph, class_name=type(module).__name__)
    for node in list(traced.graph.nodes):
        if node.op == "call_function" and node.target is torch._assert:
            traced.graph.erase_node(node)  # a check: it computes nothing the port returns
    traced.graph.eliminate_dead_code()
    traced.recompile()
    return traced


_CONTAINERS = (list, dict, set, collections.deque)


@contextlib.contextmanager
def kept_attributes(module: Any) -> Iterator[None]:
    """Trace ``module`` inside: what its ``forward`` set or appended while traced is put
    back, so no ``torch.fx`` proxy stays on the user's module."""
    proxy = require("torch").fx.Proxy
    attributes = [(part, _snapshot(part)) for part in module.modules()]
    try:
        yield
    finally:
        _put_back(attributes, proxy)


def _snapshot(part: Any) -> dict[str, tuple[Any, Any]]:
    """A module's attributes, each with a copy of its items where it holds some."""
    return {
        key: (value, copy.copy(value) if isinstance(value, _CONTAINERS) else None)
        for key, value in vars(part).items()
    }


def _put_back(attributes: list[tuple[Any, dict[str, tuple[Any, Any]]]], proxy: type) -> None:
    """Undo what tracing set on the modules: attributes and containers holding proxies."""
    for part, before in attributes:
        for key, value in list(vars(part).items()):
            if isinstance(value, proxy):
                if key in before:
                    vars(part)[key] = before[key][0]
                else:
                    del vars(part)[key]
            elif key in before and before[key][1] is not None and _holds(value, proxy):
                value.clear()
                if isinstance(value, (dict, set)):
                    value.update(before[key][1])
                else:
                    value.extend(before[key][1])


def _holds(value: Any, proxy: type) -> bool:
    items = list(value.items()) if isinstance(value, dict) else list(value)
    flat = [part for item in items for part in (item if isinstance(item, tuple) else (item,))]
    return any(isinstance(item, proxy) for item in flat)


def live_nodes(graph: Any) -> set[Any]:
    """The nodes of a ``torch.fx`` graph that its output depends on."""
    live: set[Any] = set()
    pending = [node for node in graph.nodes if node.op == "output"]
    while pending:
        node = pending.pop()
        if node not in live:
            live.add(node)
            pending.extend(node.all_input_nodes)
    return live


__all__ = ["EXPORT", "FX", "forward_line", "fx_module", "kept_attributes", "live_nodes", "reason"]
