"""``nn.LSTMCell``/``nn.GRUCell``/``nn.RNNCell`` loops over time in a captured ``forward``,
read as one recurrent layer.

``torch.export`` unrolls ``for t in range(x.shape[1]): h = cell(x[:, t], h)`` into one
cell call per step. Such calls are read as the ``nn.LSTM``/``nn.GRU``/``nn.RNN``
(``batch_first=True``) holding the cell's weights (``weight_ih`` is ``weight_ih_l0``...),
which computes the same steps, when the loop is exactly that:

- call ``t`` reads ``x[:, t]`` of one tensor ``x``, for every ``t`` from 0 to the length
  of ``x``'s axis 1, in both captures (at two lengths: a loop of a fixed number of steps
  is no layer);
- the first call starts from zeros (or no state), each next one from the states the one
  before returned;
- the steps' outputs ``h`` are used only as ``torch.stack(outputs, dim=1)`` (the output
  sequence) or the last step's ``h`` alone (the last output).

Anything else that calls a cell is refused, naming the cell and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._imports import require
from .capture_ops import Unsupported, is_tuple_getitem, op_name

_CELL_OPS = {
    "aten.lstm_cell": "LSTM",
    "aten.gru_cell": "GRU",
    "aten.rnn_tanh_cell": "RNN",
    "aten.rnn_relu_cell": "RNN",
}
_ZEROS = {"aten.new_zeros", "aten.zeros", "aten.zeros_like"}
USE_LAYER = (
    "use nn.LSTM/nn.GRU/nn.RNN(batch_first=True) instead (a cell's weight_ih, weight_hh, "
    "bias_ih and bias_hh are their weight_ih_l0, weight_hh_l0, bias_ih_l0 and bias_hh_l0)"
)


@dataclass
class CellLoop:
    """One loop of a cell over the time axis of ``source``."""

    path: str
    cell: Any
    source: Any
    calls: list[Any]
    output: Any
    sequences: bool
    members: set[Any] = field(default_factory=set)


def is_cell_call(node: Any) -> bool:
    return node.op == "call_function" and op_name(node) in _CELL_OPS


def _cell_path(module: Any, node: Any) -> str:
    torch = require("torch")
    for path, _type in reversed(list((node.meta.get("nn_module_stack") or {}).values())):
        try:
            if isinstance(module.get_submodule(path), torch.nn.RNNCellBase):
                return str(path)
        except AttributeError:
            continue
    return ""


def _states(call: Any) -> list[Any]:
    given = call.args[1]
    return list(given) if isinstance(given, (list, tuple)) else [given]


def _results(call: Any, lstm: bool) -> list[Any]:
    """A call's (h, c) getitem nodes (LSTM) or its own node (h)."""
    if not lstm:
        return [call]
    found: dict[int, Any] = {
        int(user.args[1]): user for user in call.users if is_tuple_getitem(user)
    }
    return [found.get(0), found.get(1)]


def cell_calls(module: Any, graph: Any, path: str) -> tuple[list[Any], list[Any]]:
    """The calls of the cell at ``path`` in ``graph`` with the nodes taking their results,
    and the zeros they start from."""
    calls = [n for n in graph.nodes if is_cell_call(n) and _cell_path(module, n) == path]
    results = [user for call in calls for user in call.users if is_tuple_getitem(user)]
    zeros = [
        state
        for call in calls
        for state in _states(call)
        if state is not None and op_name(state) in _ZEROS and set(state.users) <= set(calls)
    ]
    return [*calls, *results], zeros


def cell_loops(module: Any, graph: Any) -> dict[str, CellLoop | str]:
    """Each cell's loop in ``graph``, or why its calls are not one loop over time."""
    calls: dict[str, list[Any]] = {}
    for node in graph.nodes:
        if is_cell_call(node):
            calls.setdefault(_cell_path(module, node), []).append(node)
    loops: dict[str, CellLoop | str] = {}
    for path, nodes in calls.items():
        try:
            loops[path] = _loop(module, path, nodes)
        except Unsupported as error:
            loops[path] = str(error)
    return loops


def _loop(module: Any, path: str, calls: list[Any]) -> CellLoop:
    lstm = op_name(calls[0]) == "aten.lstm_cell"
    members: set[Any] = set(calls)
    source = None
    previous: list[Any] = []
    for step, call in enumerate(calls):
        picked = call.args[0]
        if not (
            hasattr(picked, "op")
            and op_name(picked) == "aten.select"
            and int(picked.args[1]) == 1
            and int(picked.args[2]) == step
        ):
            raise Unsupported(f"does not read step {step} of its input as x[:, {step}]")
        if source is None:
            source = picked.args[0]
        if picked.args[0] is not source or len(picked.users) != 1:
            raise Unsupported("reads other tensors than the steps of one input")
        members.add(picked)
        states = _states(call)
        if step == 0:
            if any(s is not None and op_name(s) not in _ZEROS for s in states):
                raise Unsupported("starts from states other than zeros")
            members.update(s for s in states if s is not None and len(s.users) == 1)
        elif states != previous:
            raise Unsupported(f"step {step} does not start from the states step {step - 1} made")
        previous = _results(call, lstm)
        members.update(r for r in previous if r is not None and r is not call)
    length = int(source.meta["val"].shape[1]) if source is not None else 0
    if len(calls) != length:
        raise Unsupported(f"runs {len(calls)} steps over an input of {length}")
    outputs = [_results(call, lstm)[0] for call in calls]
    inside = set(members)
    used = {user for h in outputs if h is not None for user in h.users if user not in inside}
    for call in calls:
        if any(c is not None and set(c.users) - inside for c in _results(call, lstm)[1:]):
            raise Unsupported("uses a cell state c outside the loop")
    stack = next(iter(used)) if len(used) == 1 else None
    if stack is not None and op_name(stack) == "aten.stack" and list(stack.args[0]) == outputs:
        dim = int(stack.args[1]) if len(stack.args) > 1 else 0
        if dim not in (1, -2):
            raise Unsupported(f"stacks its outputs on dim={dim}, not the time axis 1")
        members.add(stack)
        output, sequences = stack, True
    elif all(h is None or not (set(h.users) - inside) for h in outputs[:-1]):
        output, sequences = outputs[-1], False
    else:
        raise Unsupported("uses its steps' outputs other than as torch.stack(outputs, dim=1)")
    members.discard(output)
    return CellLoop(path, module.get_submodule(path), source, calls, output, sequences, members)


def loop_layer(loop: CellLoop) -> Any:
    """The ``nn.LSTM``/``nn.GRU``/``nn.RNN`` computing the loop's steps, the cell's weights
    copied."""
    torch = require("torch")
    cell, nn = loop.cell, torch.nn
    bias = cell.bias_ih is not None
    if isinstance(cell, nn.LSTMCell):
        layer: Any = nn.LSTM(cell.input_size, cell.hidden_size, bias=bias, batch_first=True)
    elif isinstance(cell, nn.GRUCell):
        layer = nn.GRU(cell.input_size, cell.hidden_size, bias=bias, batch_first=True)
    else:
        layer = nn.RNN(
            cell.input_size,
            cell.hidden_size,
            bias=bias,
            nonlinearity=cell.nonlinearity,
            batch_first=True,
        )
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if bias else ("weight_ih", "weight_hh")
    with torch.no_grad():
        for name in names:
            getattr(layer, f"{name}_l0").copy_(getattr(cell, name))
    return layer.to(cell.weight_ih.dtype).eval()


def same_loops(first: dict[str, Any], second: dict[str, Any]) -> dict[str, CellLoop | str]:
    """``first``, with a loop refused where the capture at the other length has none."""
    checked: dict[str, CellLoop | str] = {}
    for path, loop in first.items():
        other = second.get(path)
        if isinstance(loop, CellLoop) and not isinstance(other, CellLoop):
            why = other if isinstance(other, str) else "is not called"
            checked[path] = f"{why} at the other input length, a loop of a fixed length"
        else:
            checked[path] = loop
    return checked


def refused(module: Any, path: str, why: str) -> str:
    cell = type(module.get_submodule(path)).__name__ if path else "a cell"
    return f"calls {path!r} (nn.{cell}) in a loop not read as a layer: it {why}; {USE_LAYER}"


__all__ = [
    "USE_LAYER",
    "CellLoop",
    "cell_calls",
    "cell_loops",
    "is_cell_call",
    "loop_layer",
    "refused",
    "same_loops",
]
