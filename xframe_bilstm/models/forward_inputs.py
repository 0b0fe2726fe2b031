"""What a torch module's ``forward`` is captured on: its data inputs, and the rows' lengths.

``forward(x)`` takes one input. ``forward(x, lengths)`` takes the rows' lengths beside it,
as a packing model does (:mod:`.capture_packed`), and so may an encoder–decoder,
``forward(src, src_lengths, tgt)``. ``forward(src, tgt)`` takes several data inputs.
Which input, if any, holds the lengths cannot be seen from the signature, so each place is
tried, the lengths first (an input named for them first of all); each data input's shape
and dtype are guessed from the modules that fix one (:mod:`.input_guesses`), or given by
the user.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any


@dataclasses.dataclass(frozen=True)
class ForwardInputs:
    """The inputs ``forward`` is captured on.

    Attributes:
        options: each data input's ``InputLayer`` options (``shape`` without the batch
            axis, None for a free axis, and ``dtype``), in ``forward``'s order; with
            ``batch_axis`` 1, the input is captured with its batch second, (time, batch,
            ...) or a recurrent module's initial states (layers, batch, units).
        lengths_at: where the rows' lengths are among ``forward``'s inputs (none, one, or
            one per sequence of a pair, ``forward(premise, premise_lengths, hypothesis,
            hypothesis_lengths)``, each given the same lengths).
        lengths: the length of each input's free (time) axis in the two captures.
        names: the names of ``forward``'s inputs where they are known otherwise than from
            its signature (an ONNX graph's inputs), in its order, lengths included.
        groups: how many of the data inputs each of ``forward``'s arguments takes, in
            order, where one takes a tuple of them (an LSTM's ``hidden``, ``(h, c)``);
            empty where each takes one (never with lengths).
    """

    options: tuple[dict[str, Any], ...]
    lengths_at: tuple[int, ...] = ()
    lengths: tuple[int, int] = (7, 9)
    names: tuple[str, ...] = ()
    groups: tuple[int, ...] = ()

    def replace(self, index: int, **changes: Any) -> ForwardInputs:
        """These inputs with data input ``index``'s options changed."""
        options = list(self.options)
        options[index] = {**options[index], **changes}
        return dataclasses.replace(self, options=tuple(options))

    def arrange(self, data: list[Any], lengths: list[Any]) -> list[Any]:
        """``forward``'s arguments: ``data`` in order (in tuples as ``groups`` says), and
        ``lengths``, one per place of them (distinct objects: a capture reads one object
        given twice as one input)."""
        if self.groups:
            return grouped(data, self.groups)
        arguments = list(data)
        for at, given in sorted(zip(self.lengths_at, lengths), key=lambda pair: pair[0]):
            arguments.insert(at, given)
        return arguments

    def split(self, given: list[Any]) -> tuple[list[Any], list[Any]]:
        """``forward``'s arguments (``given``) as its data inputs and its lengths."""
        at = self.lengths_at
        return [g for i, g in enumerate(given) if i not in at], [given[i] for i in sorted(at)]


def grouped(items: list[Any], groups: tuple[int, ...]) -> list[Any]:
    """``items`` as arguments: one where a group takes one, a tuple where it takes more.

    Example:
        >>> grouped(["ids", "h", "c"], (1, 2))
        ['ids', ('h', 'c')]
    """
    given = iter(items)
    return [
        next(given) if size == 1 else tuple(next(given) for _ in range(size)) for size in groups
    ]


def lengths_places(names: list[str]) -> list[tuple[int, ...]]:
    """Where the rows' lengths may be among ``forward``'s inputs ``names``, likeliest first:
    every input named for them where several are (a pair's, one per sequence), an input
    named for them, then from the last; never the first.

    Example:
        >>> lengths_places(["src", "src_lengths", "tgt"]), lengths_places(["x", "y"])
        ([(1,), (2,)], [(1,)])
        >>> lengths_places(["a", "a_len", "b", "b_len"])[0]
        (1, 3)
    """
    places = sorted(range(len(names) - 1, 0, -1), key=lambda at: "len" not in names[at].lower())
    named = tuple(at for at in range(1, len(names)) if "len" in names[at].lower())
    return ([named] if len(named) > 1 else []) + [(at,) for at in places]


def input_names(module: Any) -> list[str]:
    """The names of the inputs ``module.forward`` requires (positional, without a default).

    Example:
        >>> import torch
        >>> class Tagger(torch.nn.Module):
        ...     def forward(self, x, lengths, hidden=None): return x
        >>> input_names(Tagger()), input_names(torch.nn.Linear(2, 2))
        (['x', 'lengths'], ['input'])
    """
    return [
        parameter.name
        for parameter in inspect.signature(module.forward).parameters.values()
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        and parameter.default is parameter.empty
    ]


def several_inputs_hint(module: Any) -> str:
    """What to do where no guess of a ``forward`` of several inputs was captured."""
    names = input_names(module)
    return (
        f"{type(module).__name__}.forward takes {len(names)} inputs ({', '.join(names)}), "
        "tried with the rows' lengths among them, and as data inputs shaped as the modules "
        "that read them guess; give the data inputs' shapes, in forward's order, without "
        "the batch axis and None for time: input_shape=[(None,), (None, 8), ...] (an "
        "input whose batch axis is second marks it: (None, 'batch', 8))"
    )


__all__ = ["ForwardInputs", "grouped", "input_names", "lengths_places", "several_inputs_hint"]
