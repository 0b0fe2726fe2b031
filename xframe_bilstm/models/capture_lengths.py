"""The lengths of ``forward(x, lengths)`` read other than by packing: as numbers and as masks.

Both are read on one record, ``valid_steps`` (1 on each row's valid steps of the input, 0
after), so the input's axis 1 must be its steps:

- ``lengths.float()`` (or ``lengths[:, None].float()``), as a mean over the valid steps
  divides by it, is that record summed over the steps;
- ``torch.arange(T)[None, :] < lengths[:, None]`` (or ``lengths[:, None] > arange``, and
  ``>=`` for the padded steps) is a condition on it, followed as any padding mask is
  (:mod:`.capture_where`): negated, unsqueezed, read by ``masked_fill``/``torch.where``
  with a number, or made numbers;
- ``out[torch.arange(B), lengths - 1]``, each row's last valid step, is the sum over the
  steps of ``out`` weighed by the record less itself one step later (1 on the last valid
  step only);
- ``lengths - 1`` read otherwise (viewed and expanded for ``out.gather(1, ...)``) is that
  sum less one, as numbers.

The ``arange`` of the steps and its views are no tensor of a layer: they are read only
where they meet the lengths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..graph import LayerRecord
from .capture_tensors import Names, Tensors, Unsupported, op_name
from .capture_where import Condition, Mask

_VIEWS = ("unsqueeze", "view", "reshape", "_to_copy", "to", "slice", "expand")
# (comparison, whether the steps come first) -> whether it holds on the valid steps
_VALID = {("lt", True): True, ("gt", False): True, ("ge", True): False, ("le", False): False}


@dataclass(frozen=True)
class _Steps:
    """The ``valid_steps`` record a condition on the lengths compares (named as it)."""

    name: str


@dataclass
class LengthsUse:
    """What reads the lengths in a capture: ``lengths`` (the input, its moves and
    columns), ``steps_of`` (the model's input, whose axis 1 is its steps), the walker's
    ``conditions``, ``steps`` (counts from 0, ``torch.arange``, and their views: of the
    steps, or of the rows for an indexing) and ``lasts`` (``lengths - 1``)."""

    lengths: set[Any]
    steps_of: Any
    conditions: dict[Any, Mask]
    steps: set[Any] = field(default_factory=set)
    lasts: set[Any] = field(default_factory=set)

    def reads(self, node: Any) -> bool:
        """Whether ``node`` reads the lengths, or the index of the last valid steps."""
        return any(arg in self.lengths or arg in self.lasts for arg in node.all_input_nodes)

    def last(self, node: Any) -> bool:
        """Whether ``node`` is ``lengths - 1`` read by indexing only, kept for it."""
        if (
            op_name(node) == "aten.sub"
            and node.args[0] in self.lengths
            and node.args[1] == 1
            and all(op_name(user) == "aten.index" for user in node.users)
        ):
            self.lasts.add(node)
            return True
        return False

    def with_number(self, node: Any, tensors: Tensors, names: Names) -> list[LayerRecord] | None:
        """The records of ``lengths - 1`` (or another number added or subtracted) read as
        numbers, as a ``gather`` of the last valid steps reads them; None for another node."""
        op, args = op_name(node), list(node.args)
        number = args[1] if len(args) == 2 else None
        indexing = any(op_name(user) == "aten.index" for user in node.users)
        if op not in ("aten.sub", "aten.add") or args[0] not in self.lengths or indexing:
            return None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            return None
        counts = self.as_numbers(node, tensors, names)
        options = {
            "op": "subtract" if op == "aten.sub" else "add",
            "constant": float(number),
            "reverse": False,
        }
        name = names(f"{node.name}_shifted")
        return [*counts, LayerRecord(name, "scalar_op", op, (counts[-1].name,), options)]

    def last_steps(self, node: Any, tensors: Tensors, names: Names) -> list[LayerRecord] | None:
        """The records of ``out[torch.arange(B), lengths - 1]``; None for another node.

        Raises:
            Unsupported: ``out`` is not (batch, steps, features) over the input's steps.
        """
        args = list(node.args)
        if op_name(node) != "aten.index" or len(args) != 2 or not isinstance(args[1], list):
            return None
        if len(args[1]) != 2 or args[1][1] not in self.lasts or args[1][0] not in self.steps:
            return None
        out, (rows, last) = args[0], args[1]
        if (
            tensors.is_swapped(out)
            or tensors.rank(out) != 3
            or _sizes(tensors, rows, 0) != _sizes(tensors, out, 0)  # arange(B): each row
            or _sizes(tensors, out, 1) is None
            or _sizes(tensors, out, 1) != _sizes(tensors, self.steps_of, 1)
        ):
            raise Unsupported(
                "indexes the last valid steps of a tensor that is not (batch, steps, "
                "features) over the input's steps"
            )
        return self._last_records(node, out, last.args[0], tensors, names)

    def _last_records(
        self, node: Any, out: Any, lengths: Any, tensors: Tensors, names: Names
    ) -> list[LayerRecord]:
        valid = self._valid_steps(node, lengths, tensors, names)
        base = node.name

        def record(
            kind: str, class_name: str, reads: tuple[str, ...], **options: Any
        ) -> LayerRecord:
            return LayerRecord(
                names(f"{base}_{class_name.lower()}"), kind, class_name, reads, options
            )

        column = record("reshape", "Reshape", (valid.name,), target_shape=(-1, 1))
        later = record(
            "slice", "Slice", (column.name,), axis=1, start=1, stop=None, step=1, keep_axis=True
        )
        shifted = record(
            "zero_padding",
            "ZeroPadding1D",
            (later.name,),
            padding=((0, 1),),
            data_format="channels_last",
        )
        weights = record(
            "merge", "Subtract", (column.name, shifted.name), op="subtract", mask_combine="any"
        )
        weighed = record(
            "merge",
            "Multiply",
            (tensors.name(out), weights.name),
            op="multiply",
            mask_combine="any",
        )
        options = {"op": "sum", "axes": (1,), "keepdims": False}
        summed = LayerRecord(names(base), "reduce", "sum", (weighed.name,), options)
        return [valid, column, later, shifted, weights, weighed, summed]

    def is_steps(self, node: Any) -> bool:
        """Whether ``node`` is (a view of) ``torch.arange`` from 0 by 1, in a ``forward``
        that takes lengths; it is then kept, for a comparison with them to read."""
        op, given = op_name(node), node.all_input_nodes
        arange = op == "aten.arange" and not given and _from_zero(node)
        view = op.split(".")[-1] in _VIEWS and len(given) == 1 and given[0] in self.steps
        if self.lengths and (arange or view):
            self.steps.add(node)
            return True
        return False

    def column(self, node: Any, tensors: Tensors) -> bool:
        """Whether ``node`` is the lengths given an axis of size 1 after, (batch, 1)."""
        shape = tuple(getattr(node.meta.get("val"), "shape", ()))
        return shape == (tensors.batches[0], 1)

    def as_numbers(self, node: Any, tensors: Tensors, names: Names) -> list[LayerRecord]:
        """The lengths (or their column) as numbers: each row's count of valid steps."""
        source = node.all_input_nodes[0]
        steps = self._valid_steps(node, source, tensors, names)
        column = len(getattr(source.meta.get("val"), "shape", ())) == 2
        options = {"op": "sum", "axes": (1,), "keepdims": column}
        return [steps, LayerRecord(names(node.name), "reduce", "sum", (steps.name,), options)]

    def compared(self, node: Any, tensors: Tensors, names: Names) -> list[LayerRecord] | None:
        """The record of ``arange < lengths[:, None]`` (and the like), the comparison
        followed as a condition on it; None where ``node`` is no such comparison.

        Raises:
            Unsupported: a comparison of the steps and lengths that is not a padding mask.
        """
        args = list(node.args)
        if len(args) != 2 or not all(hasattr(arg, "op") for arg in args):
            return None
        steps_first = args[0] in self.steps
        steps, lengths = args if steps_first else args[::-1]
        if steps not in self.steps or lengths not in self.lengths:
            return None
        valid = _VALID.get((op_name(node).split(".")[-1], steps_first))
        if valid is None or not self.column(lengths, tensors) or not self._spans(steps, tensors):
            raise Unsupported(
                f"compares the steps with the lengths ({op_name(node)}); a padding mask is "
                "arange(T)[None, :] < lengths[:, None] (or >= for the padded steps)"
            )
        record = self._valid_steps(node, lengths, tensors, names)
        source = _Steps(record.name)
        tensors.names[source] = record.name
        compare = "gt" if valid else "lt"  # the record's 1 and 0 against 0.5
        self.conditions[node] = Condition(source, compare, 0.5, (0, 1))
        return [record]

    def _spans(self, steps: Any, tensors: Tensors) -> bool:
        """Whether ``steps`` counts the input's steps, (T,) or (1, T), in both captures."""
        counted, given = tensors.shapes[steps.name], tensors.shapes[self.steps_of.name]
        return all(
            shape is not None
            and other is not None
            and len(other) >= 2
            and shape[-1] == other[1]
            and all(size == 1 for size in shape[:-1])
            for shape, other in zip(counted, given)
        )

    def _valid_steps(self, node: Any, lengths: Any, tensors: Tensors, names: Names) -> LayerRecord:
        first, second = tensors.shapes[self.steps_of.name]
        if len(first) < 2 or second is None or first[1] == second[1]:
            raise Unsupported(
                "reads the lengths other than by pack_padded_sequence where the input's "
                "axis 1 is not its steps"
            )
        name = names(f"{node.name}_steps")
        reads = (tensors.name(self.steps_of), tensors.name(lengths))
        return LayerRecord(name, "valid_steps", "ValidSteps", reads)


def _sizes(tensors: Tensors, node: Any, axis: int) -> tuple[int, int] | None:
    """The size of ``node``'s ``axis`` in both captures; None where one does not say."""
    first, second = tensors.shapes[node.name]
    if second is None or len(first) <= axis or len(second) <= axis:
        return None
    return first[axis], second[axis]


def _from_zero(node: Any) -> bool:
    """Whether an ``arange`` node counts from 0 by 1."""
    overload = str(getattr(node.target, "_overloadname", ""))
    args = list(node.args)
    if overload == "default":
        return True
    if overload == "start":
        return args[0] == 0
    return overload == "start_step" and args[0] == 0 and args[2] == 1


__all__ = ["LengthsUse"]
