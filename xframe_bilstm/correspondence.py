"""Which output of one model means which output of another, for ``compare(source, against=)``.

Two models that compute the same thing may return it differently: a Keras LSTM with
``return_sequences=False`` returns its last step, a torch ``nn.LSTM`` returns the whole
sequence and ``(h_n, c_n)``. Each output has a *meaning*: a sequence or a last step, merged
as a bidirectional layer merges its halves (or one direction alone), or a final state ``h``
or ``c`` of one direction. One side's outputs are matched with what the other side's outputs
give by meaning (the last step of a sequence is its last valid step for the forward direction
and step 0 for a backward direction aligned with input time; a final ``h`` is the last step
of its direction). What cannot be matched is refused by name before anything runs, never
compared element by element with something of another meaning.

Padded steps (``lengths``) hold no meaning of their own, and the two kinds of model fill them
differently: a plain Keras layer repeats its last valid output there (a ``Bidirectional``
writes zeros), a native module run on a packed sequence writes zeros. Between the two kinds,
sequences are therefore compared on their valid steps only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .canonical import RecurrentStack, layer_state_names, output_names
from .errors import UnsupportedFeatureError
from .graph import ModelGraph

# (what, how): what ∈ {"sequence", "last", "h", "c"}; how is a merge mode ("concat", "sum",
# "mul", "ave") for both directions, "forward" or "backward" for one direction in input time,
# or "go_backwards" for a Keras layer that only runs backwards (outputs in processing order).
Meaning = tuple[str, str]
# Arrays of one run, the rows' valid lengths (or None) -> the array of one meaning.
Extract = Callable[[Sequence[np.ndarray], "np.ndarray | None"], np.ndarray]

_MERGES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "concat": lambda f, b: np.concatenate([f, b], axis=-1),
    "sum": lambda f, b: f + b,
    "mul": lambda f, b: f * b,
    "ave": lambda f, b: (f + b) / 2,
}


@dataclass(frozen=True)
class Source:
    """One model's outputs: their names, shapes and meanings, and every meaning they give
    with its wording (e.g. ``"output[..., 4:] at step 0"``) and how to get it from them."""

    description: str
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    directions: str  # of the last layer: "forward", "bidirectional" or "go_backwards"
    provides: dict[Meaning, tuple[str, Extract]]
    returned: tuple[Meaning, ...]  # the meaning of each returned array, in order
    # What its sequences hold at padded steps: "keras" (Keras mask semantics) or "zeros"
    # (a native module on a packed sequence).
    padding: str = "keras"

    def shown(self) -> str:
        """``output (4, 20, 8), h_n (2, 4, 4)``: what it returns, with shapes."""
        return ", ".join(f"{name} {shape}" for name, shape in zip(self.names, self.shapes))


def describe(meaning: Meaning) -> str:
    """In words, e.g. ``the last step, both directions concatenated``.

    Example:
        >>> describe(("sequence", "forward"))
        'the whole sequence of the forward direction'
    """
    what, how = meaning
    if how == "every layer":
        return f"the final states {what} of every layer and direction"
    head = {
        "sequence": "the whole sequence",
        "last": "the last step",
        "h": "the final state h",
        "c": "the final state c",
    }[what]
    if how in _MERGES:
        joined = "concatenated" if how == "concat" else f"merged by {how}"
        return f"{head}, both directions {joined}"
    if how == "go_backwards":
        return f"{head} of a go_backwards layer"
    return f"{head} of the {how} direction"


def stack_source(stack: RecurrentStack, batch: int, steps: int, description: str) -> Source:
    """The outputs of ``stack`` as Keras returns them (:func:`output_names`)."""
    last = stack.last
    what = "sequence" if stack.return_sequences else "last"
    lead = (batch, steps) if stack.return_sequences else (batch,)
    returned: list[Meaning] = []
    shapes: list[tuple[int, ...]] = []
    for name in output_names(stack):
        if name.startswith("output"):
            if name == "output":
                returned.append((what, _how(stack)))
                shapes.append((*lead, last.output_size))
            else:
                returned.append((what, name.removeprefix("output_")))
                shapes.append((*lead, last.units))
        else:
            kind, _, side = name.partition("_")
            returned.append((kind, side or _how(stack)))
            shapes.append((batch, last.units))
    provides = {
        meaning: (name, _take(index))
        for index, (name, meaning) in enumerate(zip(output_names(stack), returned))
    }
    return Source(
        description,
        output_names(stack),
        tuple(shapes),
        _directions(stack),
        _derive(provides, last.units),
        tuple(returned),
    )


def native_source(stack: RecurrentStack, batch: int, steps: int, description: str) -> Source:
    """The outputs of a native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` read as ``stack``:
    ``output`` (B, T, directions·H) in input time, then ``h_n`` (and ``c_n``), each
    (layers·directions, B, H)."""
    last = stack.last
    both = last.direction == "bidirectional"
    count = len(stack.layers) * (2 if both else 1)
    names = ("output", "h_n", "c_n")[: 1 + last.num_states]
    shapes = ((batch, steps, last.output_size),) + ((count, batch, last.units),) * last.num_states
    provides: dict[Meaning, tuple[str, Extract]] = {
        ("sequence", "concat" if both else "forward"): ("output", _take(0))
    }
    sides = ("forward", "backward") if both else ("forward",)
    for index, kind in enumerate(("h", "c")[: last.num_states]):
        for offset, side in enumerate(sides):
            row = count - len(sides) + offset
            provides[(kind, side)] = (f"{names[1 + index]}[{row}]", _row(1 + index, row))
    # h_n and c_n hold every layer's states: no output of another model means all of them.
    returned = (next(iter(provides)), *((name, "every layer") for name in names[1:]))
    return Source(
        description,
        names,
        shapes,
        _directions(stack),
        _derive(provides, last.units),
        returned,
        padding="zeros",
    )


def graph_source(graph: ModelGraph, description: str) -> Source:
    """The outputs of a whole model: one per model output, each meaning itself. Every run of
    a graph (its reading, the model as loaded, a port of it) returns them in that order."""
    names = output_names_of(graph)
    meanings = tuple(("output", name) for name in graph.outputs)
    provides = {meaning: (name, _take(i)) for i, (name, meaning) in enumerate(zip(names, meanings))}
    return Source(description, names, (), "graph", provides, meanings)


def output_names_of(reading: RecurrentStack | ModelGraph) -> tuple[str, ...]:
    """The names of what a stack or graph returns, in order.

    Example:
        >>> from xframe_bilstm.graph import LayerRecord
        >>> x = LayerRecord("x", "input", "InputLayer", options={"shape": (2,), "dtype": "f"})
        >>> output_names_of(ModelGraph("m", (x,), ("x",), ("x",)))
        ("output 'x'",)
    """
    if isinstance(reading, RecurrentStack):
        return output_names(reading)
    return tuple(f"output {name!r}" for name in reading.outputs)


def _directions(stack: RecurrentStack) -> str:
    direction = stack.last.direction
    return "go_backwards" if direction == "backward" else direction


def _how(stack: RecurrentStack) -> str:
    last = stack.last
    if last.direction == "bidirectional":
        return last.merge_mode or "concat"
    return "go_backwards" if last.direction == "backward" else "forward"


def _take(index: int) -> Extract:
    return lambda arrays, lengths: np.asarray(arrays[index])


def _row(index: int, row: int) -> Extract:
    return lambda arrays, lengths: np.asarray(arrays[index])[row]


def _derive(
    provides: dict[Meaning, tuple[str, Extract]], units: int
) -> dict[Meaning, tuple[str, Extract]]:
    """Everything the given outputs mean besides themselves: halves of a concatenated output,
    last steps of sequences, final ``h`` of last steps, other merges of two halves."""
    found = dict(provides)
    for what in ("sequence", "last"):
        if (what, "concat") in found and (what, "forward") not in found:
            word, whole = found[(what, "concat")]
            found[(what, "forward")] = (f"{word}[..., :{units}]", _half(whole, 0, units))
            found[(what, "backward")] = (f"{word}[..., {units}:]", _half(whole, units, units))
    for side in ("forward", "backward"):
        if ("last", side) not in found and ("sequence", side) in found:
            word, sequence = found[("sequence", side)]
            if side == "forward":
                found[("last", side)] = (f"{word} at each row's last valid step", _last(sequence))
            else:  # aligned with input time, a backward direction ends at step 0
                found[("last", side)] = (f"{word} at step 0", _first(sequence))
        if ("last", side) not in found and ("h", side) in found:
            found[("last", side)] = found[("h", side)]
        if ("h", side) not in found and ("last", side) in found:
            found[("h", side)] = found[("last", side)]  # h is the output of the last step
    for what in ("sequence", "last"):
        halves = (what, "forward") in found and (what, "backward") in found
        for merge, function in _MERGES.items():
            if halves and (what, merge) not in found:
                word_f, forward = found[(what, "forward")]
                word_b, backward = found[(what, "backward")]
                found[(what, merge)] = (
                    f"{merge}({word_f}, {word_b})",
                    _merged(function, forward, backward),
                )
    return found


def _half(whole: Extract, start: int, units: int) -> Extract:
    return lambda arrays, lengths: whole(arrays, lengths)[..., start : start + units]


def _last(sequence: Extract) -> Extract:
    def extract(arrays: Sequence[np.ndarray], lengths: np.ndarray | None) -> np.ndarray:
        values = sequence(arrays, lengths)
        steps = np.full(values.shape[0], values.shape[1]) if lengths is None else lengths
        return values[np.arange(values.shape[0]), np.asarray(steps) - 1]

    return extract


def _first(sequence: Extract) -> Extract:
    return lambda arrays, lengths: sequence(arrays, lengths)[:, 0]


def _merged(
    function: Callable[[np.ndarray, np.ndarray], np.ndarray], forward: Extract, backward: Extract
) -> Extract:
    return lambda arrays, lengths: function(forward(arrays, lengths), backward(arrays, lengths))


@dataclass(frozen=True)
class Correspondence:
    """What a pair with the ``against`` model compares: ``names``, and how each side's arrays
    give them. ``note`` says which correspondence was used, "" when the outputs are the same.
    """

    names: tuple[str, ...]
    source: tuple[Extract, ...]
    against: tuple[Extract, ...]
    note: str
    by_source: bool  # whether ``names`` are the source's outputs (else the against's)
    # Whether sequences are compared on valid steps only (the sides pad differently).
    valid_steps_only: bool = False

    def source_view(
        self, arrays: Sequence[np.ndarray], lengths: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        return tuple(extract(arrays, lengths) for extract in self.source)

    def against_view(
        self, arrays: Sequence[np.ndarray], lengths: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        return tuple(extract(arrays, lengths) for extract in self.against)


def correspond(source: Source, against: Source) -> Correspondence:
    """Match every output of ``source`` with the ``against`` outputs that mean the same, or
    else every output of ``against`` with the source's; refuse when neither matches all.

    Example:
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((3, 8)), np.zeros((2, 8)))
        >>> layer = RecurrentLayer("lstm", 3, 2, (w,))
        >>> keras = stack_source(RecurrentStack((layer,), return_sequences=False), 4, 5, "keras")
        >>> torch = native_source(RecurrentStack((layer,)), 4, 5, "torch")
        >>> print(correspond(keras, torch).note)
        output ↔ output at each row's last valid step (the last step of the forward direction)
    """
    if source.returned == against.returned and source.names == against.names:
        same = tuple(_take(index) for index in range(len(source.names)))
        return Correspondence(source.names, same, same, "", True)
    if source.directions != against.directions:
        # One direction of a bidirectional model alone would be a part of it, not the model.
        raise UnsupportedFeatureError(
            f"against: the last recurrent layer of the source ({source.description}) is "
            f"{source.directions}, and against's ({against.description}) is "
            f"{against.directions}; the source returns {source.shown()}, against returns "
            f"{against.shown()}. Compare models whose last layers run the same directions."
        )
    for by_source, (first, second) in ((True, (source, against)), (False, (against, source))):
        missing = [m for m in first.returned if m not in second.provides]
        if missing:
            continue
        matched = [second.provides[meaning] for meaning in first.returned]
        own = tuple(_take(index) for index in range(len(first.names)))
        other = tuple(extract for _, extract in matched)
        valid_only = first.padding != second.padding
        if valid_only:
            own = _valid_steps(own, first.returned)
            other = _valid_steps(other, first.returned)
        note = "; ".join(
            f"{name} ↔ {word} ({describe(meaning)})"
            for name, meaning, (word, _) in zip(first.names, first.returned, matched)
            if name != word
        )
        return Correspondence(
            first.names,
            own if by_source else other,
            other if by_source else own,
            note,
            by_source,
            valid_only,
        )
    raise UnsupportedFeatureError(_refusal(source, against))


def _valid_steps(extracts: tuple[Extract, ...], meanings: Sequence[Meaning]) -> tuple[Extract, ...]:
    """``extracts`` with every sequence's padded steps set to zero (given lengths)."""
    return tuple(
        _zero_padding(extract) if what == "sequence" else extract
        for extract, (what, _) in zip(extracts, meanings)
    )


def _zero_padding(sequence: Extract) -> Extract:
    def extract(arrays: Sequence[np.ndarray], lengths: np.ndarray | None) -> np.ndarray:
        values = sequence(arrays, lengths)
        if lengths is None or values.ndim != 3 or values.shape[0] != len(lengths):
            return values  # a shape the comparison reports as it is
        valid = np.arange(values.shape[1])[None, :] < np.asarray(lengths)[:, None]
        return np.where(valid[..., None], values, 0.0)

    return extract


def _refusal(source: Source, against: Source) -> str:
    missing = [m for m in source.returned if m not in against.provides]
    unmatched = ", ".join(
        f"{name} {shape} ({describe(meaning)})"
        for name, shape, meaning in zip(source.names, source.shapes, source.returned)
        if meaning in missing
    )
    return (
        f"against: the outputs do not correspond. The source ({source.description}) returns "
        f"{source.shown()}; against ({against.description}) returns {against.shown()}; "
        f"nothing that against returns gives {unmatched}, and the source does not give all of "
        f"against's either. To compare them, make both return the same: "
        f"{_advice(missing)}"
    )


def _advice(missing: list[Meaning]) -> str:
    hints = []
    if any(what == "sequence" for what, _ in missing):
        hints.append("return_sequences=True on both, or a source that returns its last step only")
    if any(what == "c" for what, _ in missing):
        hints.append("return_state=False on the Keras model (a cell state c is not an output)")
    if any(how == "go_backwards" for _, how in missing):
        hints.append(
            "a go_backwards layer outputs in reversed time: compare it with a Keras layer of "
            "the same direction, or wrap both directions in Bidirectional"
        )
    if any(how in _MERGES for _, how in missing) or not hints:
        hints.append("the same directions and merge_mode on both")
    return "; ".join(hints) + "."


def state_names(stack: RecurrentStack) -> tuple[str, ...]:
    """Every layer's state names, layer after layer (the order of ``initial_states``)."""
    return tuple(name for layer in stack.layers for name in layer_state_names(layer))


__all__ = [
    "Correspondence",
    "Source",
    "correspond",
    "describe",
    "graph_source",
    "native_source",
    "output_names_of",
    "stack_source",
]
