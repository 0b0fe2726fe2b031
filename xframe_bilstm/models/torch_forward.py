"""What a torch module's own ``forward`` does, read before its children are ported to Keras.

Rules of this module:

- The Keras port of a module with children applies those children one after another, in
  declaration order, each recurrent one passing on its output sequence
  (``rnn(x)[0]``). :func:`check_forward` reads ``forward`` with ``torch.fx`` (every direct
  child is one opaque call) and refuses, by name, whatever else it does: functions and
  methods applied between children, children skipped, called twice or out of order, extra
  inputs, states passed in, tuples passed on or returned.
- ``nn.Sequential.forward`` is not traced: it passes each child's result to the next as is,
  which for a recurrent child is its ``(output, states)`` tuple, so an ``nn.Sequential``
  holding one runs only with its recurrent children passing on their output sequence.
  :func:`run_forward` runs it that way (a forward hook per recurrent child takes
  ``output``), and runs any other module as it is, ``module(x)``.
- A ``forward`` that cannot be traced (control flow on tensor values, say) is refused with
  what the user can do instead.
"""

from __future__ import annotations

import contextlib
import operator
from collections import Counter
from collections.abc import Iterator
from typing import Any

from .._imports import require
from ..errors import UnsupportedFeatureError
from .capture_fx import kept_attributes, live_nodes

_OPERATORS = {
    operator.add: "+",
    operator.sub: "-",
    operator.mul: "*",
    operator.truediv: "/",
    operator.floordiv: "//",
    operator.matmul: "@",
    operator.pow: "**",
    operator.neg: "unary -",
}
_TIMES = {2: "twice", 3: "three times"}


def is_plain_sequential(module: Any) -> bool:
    """Whether ``module`` runs ``nn.Sequential.forward`` (its children, results passed on)."""
    torch = require("torch")
    return type(module).forward is torch.nn.Sequential.forward


def check_forward(module: Any) -> None:
    """Refuse a module whose ``forward`` does more than apply its children in order.

    Raises:
        UnsupportedFeatureError: naming what ``forward`` does that the Keras port would
            not, or saying that ``forward`` could not be read.

    Example:
        >>> import torch
        >>> class Identifier(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.gru = torch.nn.GRU(3, 4, batch_first=True)
        ...     def forward(self, x):
        ...         return self.gru(x)[0].sum(dim=1)
        >>> check_forward(Identifier())
        Traceback (most recent call last):
        ...
        xframe_bilstm.errors.UnsupportedFeatureError: Identifier.forward does more than ... \
it calls sum(dim=1) after 'gru'. ...
    """
    if "forward" in vars(module):
        raise UnsupportedFeatureError(
            f"this {type(module).__name__} has a forward of its own, set on the instance; "
            "only a forward its class defines is read. Define forward in a subclass, or "
            f"{_convert_alone(module)}"
        )
    if is_plain_sequential(module):
        return
    graph = _trace(module)
    findings = _findings(module, graph)
    if findings:
        raise UnsupportedFeatureError(
            f"{type(module).__name__}.forward does more than apply its children one after "
            f"another, which is all its Keras port would compute: it {'; '.join(findings)}. "
            f"{_what_to_do(module)}"
        )


def run_forward(module: Any, *inputs: Any) -> Any:
    """``module(*inputs)`` in inference mode without gradients; its modes are put back.

    An ``nn.Sequential`` has each recurrent child pass on its output sequence (see the
    module rules); any other module runs exactly as its own ``forward`` says.
    """
    torch = require("torch")
    from ..adapters.torch import evaluating

    with evaluating(module), torch.no_grad(), sequences_passed_on(module):
        return module(*inputs)


@contextlib.contextmanager
def sequences_passed_on(module: Any) -> Iterator[None]:
    """Within: an ``nn.Sequential``'s recurrent children pass on their output sequence."""
    torch = require("torch")
    handles = []
    if is_plain_sequential(module):
        handles = [
            child.register_forward_hook(lambda _module, _inputs, result: result[0])
            for child in module.children()
            if isinstance(child, torch.nn.RNNBase)
        ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _trace(module: Any) -> Any:
    """The ``torch.fx`` graph of ``module.forward``, every direct child one opaque call."""
    require("torch")
    from torch.fx import Tracer

    class ChildrenAreLeaves(Tracer):
        def is_leaf_module(self, child: Any, qualified_name: str) -> bool:
            return "." not in qualified_name or super().is_leaf_module(child, qualified_name)

    try:
        with kept_attributes(module):  # no proxy stays where forward stores a tensor
            return ChildrenAreLeaves().trace(module)
    except Exception as error:  # whatever the user's forward raises when traced
        text = str(error).strip().splitlines()
        raise UnsupportedFeatureError(
            f"{type(module).__name__}.forward could not be read ({type(error).__name__}: "
            f"{text[0] if text else ''}), so whether it only applies its children one after "
            "another, as its Keras port would, cannot be checked. Wrap the layers in an "
            f"nn.Sequential, or {_convert_alone(module)}."
        ) from error


def _findings(module: Any, graph: Any) -> list[str]:
    """What ``forward`` does besides the chain of children, in words, in graph order."""
    torch = require("torch")
    children = dict(module.named_children())
    recurrent = {name for name, child in children.items() if isinstance(child, torch.nn.RNNBase)}
    nodes = list(graph.nodes)
    calls = [node for node in nodes if node.op == "call_module" and node.target in children]
    live = live_nodes(graph)
    findings = []
    inputs = [node for node in nodes if node.op == "placeholder"]
    findings += [f"takes a further input {node.target!r}" for node in inputs[1:]]
    for node in nodes:
        if node.op in ("placeholder", "output") or _is_output_of(node, recurrent):
            continue
        if node.op == "call_module" and node.target in children:
            if len(node.args) != 1 or node.kwargs:
                count = len(node.args) + len(node.kwargs)
                findings.append(f"passes {count} arguments to {node.target!r}")
            if node not in live:
                findings.append(f"calls {node.target!r} but does not use its result")
            continue
        if node not in live and _is_pure_read(node):
            continue  # e.g. the unused states of `output, (h, c) = self.lstm(x)`
        unused = "" if node in live else " and does not use the result"
        findings.append(f"{_describe(node, recurrent)} {_where(node, calls)}{unused}")
    findings += _order(list(children), [str(node.target) for node in calls])
    if not findings:
        findings += _flow(inputs[0] if inputs else None, calls, recurrent, nodes[-1])
    return findings


def _is_output_of(node: Any, recurrent: set[str]) -> bool:
    """Whether ``node`` is ``rnn(x)[0]`` for a recurrent child: the chain's own step."""
    return (
        node.op == "call_function"
        and node.target is operator.getitem
        and node.args[1] == 0
        and getattr(node.args[0], "op", None) == "call_module"
        and node.args[0].target in recurrent
    )


def _is_pure_read(node: Any) -> bool:
    return node.op == "call_function" and node.target in (operator.getitem, getattr)


def _describe(node: Any, recurrent: set[str]) -> str:
    """One operation of the graph, as a verb phrase."""
    if node.op == "call_module":
        return f"calls submodule {node.target!r}"
    if node.op == "get_attr":
        return f"reads {node.target!r}"
    if node.op == "call_method":
        return f"calls {node.target}({_arguments(node)})"
    if node.target is operator.getitem:
        source = node.args[0]
        if getattr(source, "op", None) == "call_module" and source.target in recurrent:
            if node.args[1] == 1:
                return f"uses the final states of {source.target!r} ({source.target}(...)[1])"
            return f"indexes {_index(node.args[1])} the result of {source.target!r}"
        return f"indexes {_index(node.args[1])}"
    if node.target is getattr:
        return f"reads .{node.args[1]}"
    if node.target in _OPERATORS:
        return f"applies {_OPERATORS[node.target]}"
    return f"applies {_qualified_name(node.target)}"


def _qualified_name(target: Any) -> str:
    torch = require("torch")
    try:
        return str(torch.fx.node._get_qualified_name(target))
    except Exception:  # an object fx cannot name: its own name will do
        return str(getattr(target, "__name__", target))


def _arguments(node: Any) -> str:
    """The arguments of a method call besides the tensor it is called on."""
    torch = require("torch")

    def text(value: Any) -> str:
        return repr(value.name) if isinstance(value, torch.fx.Node) else repr(value)

    parts = [text(value) for value in node.args[1:]]
    parts += [f"{key}={text(value)}" for key, value in node.kwargs.items()]
    return ", ".join(parts)


def _index(index: Any) -> str:
    """``[:, -1]`` for ``(slice(None), -1)``."""

    def one(item: Any) -> str:
        if item is Ellipsis:
            return "..."
        if item is None:
            return "None"
        if isinstance(item, slice):
            start, stop = ("" if v is None else str(v) for v in (item.start, item.stop))
            return f"{start}:{stop}" + ("" if item.step is None else f":{item.step}")
        return str(getattr(item, "name", item))

    items = index if isinstance(index, tuple) else (index,)
    return "[" + ", ".join(one(item) for item in items) + "]"


def _where(node: Any, calls: list[Any]) -> str:
    """``between 'lstm' and 'fc'``: where ``node`` sits among the children's calls."""
    order = {call: position for position, call in enumerate(node.graph.nodes)}
    here = order[node]
    before = [call for call in calls if order[call] < here]
    after = [call for call in calls if order[call] > here]
    if before and after:
        return f"between {before[-1].target!r} and {after[0].target!r}"
    if before:
        return f"after {before[-1].target!r}"
    if after:
        return f"before {after[0].target!r}"
    return "without calling a child"


def _order(declared: list[str], called: list[str]) -> list[str]:
    """Children skipped, called more than once, or called in another order."""
    counts = Counter(called)
    findings = [f"skips child {name!r}" for name in declared if name not in counts]
    findings += [
        f"calls {name!r} {_TIMES.get(count, f'{count} times')}"
        for name, count in counts.items()
        if count > 1
    ]
    expected = [name for name in declared if name in counts]
    if not findings and called != expected:
        findings.append(
            f"calls its children in the order {', '.join(map(repr, called))}, not in the "
            f"order they are declared ({', '.join(map(repr, expected))})"
        )
    return findings


def _flow(first: Any, calls: list[Any], recurrent: set[str], output: Any) -> list[str]:
    """Whether each child takes what the one before it gave, and forward returns the last."""
    value, previous = first, None
    for call in calls:
        if call.args[0] is not value:
            given = "its input" if previous is None else f"the output of {previous!r}"
            return [f"gives {call.target!r} something other than {given}"]
        value, previous = call, call.target
        if call.target in recurrent:
            value = next((user for user in call.users if _is_output_of(user, recurrent)), None)
            if value is None:
                return [f"passes on the (output, states) tuple of {call.target!r}, not output"]
    result = output.args[0]
    if isinstance(result, (tuple, list, dict)):
        return [f"returns {len(result)} values; the Keras port returns one tensor"]
    if result is not value:
        return [f"returns something other than the output of {previous!r}"]
    return []


def refuse_scripted(module: Any) -> None:
    """Refuse a TorchScript module: its ``forward`` is compiled code, with no Python to read
    or capture (torch.export does not take it)."""
    torch = require("torch")
    if isinstance(module, torch.jit.ScriptModule):
        raise UnsupportedFeatureError(
            f"{module.original_name} is a TorchScript module (torch.jit.script or "
            "torch.jit.load): its forward is compiled, with no Python code to read. Build the "
            "original nn.Module class and load its state_dict, or export it with "
            "torch.onnx.export(module, example_inputs, 'model.onnx', dynamo=False) and "
            "convert or compare the ONNX file"
        )


def _recurrent_children(module: Any) -> list[str]:
    torch = require("torch")
    return [name for name, child in module.named_children() if isinstance(child, torch.nn.RNNBase)]


def _convert_alone(module: Any) -> str:
    names = _recurrent_children(module)
    if not names:
        return "convert its recurrent modules one by one"
    return (
        f"convert the recurrent submodule alone, torch_to_keras(module, "
        f"submodule={names[0]!r}), and port the rest by hand"
    )


def _what_to_do(module: Any) -> str:
    return f"Build it as an nn.Sequential of supported layers, or {_convert_alone(module)}."


__all__ = ["check_forward", "is_plain_sequential", "refuse_scripted", "run_forward"]
