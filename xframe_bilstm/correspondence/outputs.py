"""What each output of a model means, and every meaning a model's outputs give.

Each output has a *meaning*: a sequence or a last step, merged as a bidirectional layer merges
its halves (or one direction alone), or a final state ``h`` or ``c`` of one direction. From
what a model returns follow other meanings: the halves of a concatenated output, the last step
of a sequence (its last valid step for the forward direction, step 0 for a backward direction
aligned with input time), the final ``h`` of a last step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..canonical import RecurrentStack, output_names
from ..graph import ModelGraph
from ..stack_graph import as_graph

# (what, how): what ∈ {"sequence", "last", "h", "c"}; how is a merge mode ("concat", "sum",
# "mul", "ave") for both directions, "forward" or "backward" for one direction in input time,
# or "go_backwards" for a Keras layer that only runs backwards (outputs in processing order).
# An output whose meaning its reading cannot tell is (UNREAD, its name), and is left out.
Meaning = tuple[str, str]
# Arrays of one run, the rows' valid lengths (or None) -> the array of one meaning.
Extract = Callable[[Sequence[np.ndarray], "np.ndarray | None"], np.ndarray]

MERGES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "concat": lambda f, b: np.concatenate([f, b], axis=-1),
    "sum": lambda f, b: f + b,
    "mul": lambda f, b: f * b,
    "ave": lambda f, b: (f + b) / 2,
}
UNREAD = "unread"


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
    if what == UNREAD:
        return f"{how}, whose meaning the reading cannot tell"
    if how == "every layer":
        return f"the final states {what} of every layer and direction"
    head = {
        "sequence": "the whole sequence",
        "last": "the last step",
        "h": "the final state h",
        "c": "the final state c",
    }[what]
    if how in MERGES:
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
        meaning: (name, take(index))
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
        ("sequence", "concat" if both else "forward"): ("output", take(0))
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


def onnx_source(
    stack: RecurrentStack,
    names: Sequence[str],
    time_major: bool,
    batch: int,
    steps: int,
    description: str,
) -> Source:
    """The outputs ``names`` of an ONNX graph read as ``stack``, as the importer matched
    them: the leading ones are what ``stack`` returns, a sequence (T, B, F) when the graph
    takes its input time-major; those after them (such as torch's stacked ``h_n``) mean
    nothing the reading can tell, and are left out of every pair."""
    read = stack_source(stack, batch, steps, description)
    provides: dict[Meaning, tuple[str, Extract]] = {}
    shapes = []
    for index, (name, meaning, shape) in enumerate(zip(names, read.returned, read.shapes)):
        if time_major and len(shape) == 3:
            provides[meaning] = (f"{name} read time-major", _swapped(index))
            shape = (shape[1], shape[0], shape[2])
        else:
            provides[meaning] = (name, take(index))
        shapes.append(shape)
    unread = tuple((UNREAD, name) for name in names[len(read.names) :])
    return Source(
        description,
        tuple(names),
        tuple(shapes),
        read.directions,
        _derive(provides, stack.last.units),
        read.returned + unread,
    )


def graph_source(graph: ModelGraph, description: str) -> Source:
    """The outputs of a whole model: one per model output, each meaning itself. Every run of
    a graph (its reading, the model as loaded, a port of it) returns them in that order."""
    names = output_names_of(graph)
    meanings = tuple(("output", name) for name in graph.outputs)
    provides = {meaning: (name, take(i)) for i, (name, meaning) in enumerate(zip(names, meanings))}
    return Source(description, names, (), "graph", provides, meanings)


def output_names_of(reading: RecurrentStack | ModelGraph) -> tuple[str, ...]:
    """The names of what a stack or graph returns, in order.

    Example:
        >>> from xframe_bilstm.graph import LayerRecord
        >>> x = LayerRecord("x", "input", "InputLayer", options={"shape": (2,), "dtype": "f"})
        >>> output_names_of(ModelGraph("m", (x,), ("x",), ("x",)))
        ("output 'x'",)
    """
    return as_graph(reading).output_labels


def _directions(stack: RecurrentStack) -> str:
    direction = stack.last.direction
    return "go_backwards" if direction == "backward" else direction


def _how(stack: RecurrentStack) -> str:
    last = stack.last
    if last.direction == "bidirectional":
        return last.merge_mode or "concat"
    return "go_backwards" if last.direction == "backward" else "forward"


def take(index: int) -> Extract:
    return lambda arrays, lengths: np.asarray(arrays[index])


def _swapped(index: int) -> Extract:
    return lambda arrays, lengths: np.swapaxes(arrays[index], 0, 1)


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
        for merge, function in MERGES.items():
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


__all__ = [
    "MERGES",
    "UNREAD",
    "Extract",
    "Meaning",
    "Source",
    "describe",
    "graph_source",
    "native_source",
    "onnx_source",
    "output_names_of",
    "stack_source",
    "take",
]
