"""The inputs a torch module's ``forward`` is captured at, guessed from the modules that fix
one: an Embedding reads token ids, a recurrent module or cell (B, T, features), a Linear
(B, features), a convolution or a normalization its channels.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import combinations, islice
from typing import Any

from .._imports import require
from ..errors import UnsupportedFeatureError
from .forward_inputs import ForwardInputs, input_names, lengths_places
from .torch_graph_convolution import conv_input_options, conv_types
from .torch_graph_normpool import input_options, is_normpool


def child_input_options(first_name: str, first: Any, nn: Any) -> dict[str, Any]:
    """The ``InputLayer`` options (``shape`` without the batch axis, ``dtype``) of the input
    ``first`` reads.

    Raises:
        UnsupportedFeatureError: ``first`` does not fix its input.
    """
    if isinstance(first, nn.Embedding):
        return {"shape": (None,), "dtype": "int64"}
    if isinstance(first, nn.RNNBase):
        return {"shape": (None, first.input_size), "dtype": "float32"}
    if isinstance(first, nn.Linear):
        return {"shape": (first.in_features,), "dtype": "float32"}
    if isinstance(first, conv_types(nn)):
        return conv_input_options(first, nn)
    raise UnsupportedFeatureError(
        f"the first child {first_name!r} ({type(first).__name__}) does not fix the "
        "input size; start with an Embedding, a recurrent module, a Linear, a Conv1d/2d "
        "or a normalization"
    )


_GUESSES = 3  # each costs a capture where it is not read


def input_guesses(module: Any) -> list[ForwardInputs]:
    """The inputs to capture ``forward`` on, likeliest first (:mod:`.forward_inputs`).

    One data input takes what the modules that fix one would read (an Embedding, a
    recurrent module or cell, a Linear, a convolution or a normalization), each once:
    first that of the first one ``forward`` calls (it runs on the first declared one's
    until it calls one of them), then the others in declaration order, to try where
    ``forward`` reshapes its input before its first module, or where the guess is captured
    by a coincidence of sizes but not read; each sequence followed by its other layout
    (:func:`_other_layout`); three at most, then, in a module holding a recurrent module
    of torch's default layout (``batch_first=False``) or a cell, each sequence among them
    time-major, (time, batch, ...) (option ``batch_axis`` 1). Several data inputs take
    those of distinct modules in declaration order, the first of each child first (an
    encoder's first module, then its decoder's Embedding), three choices at most; inputs
    named as states are tried as a decoder's step takes them first (:func:`_with_states`).
    A ``forward`` of several inputs is tried with the rows' lengths among them first, at
    each place :func:`~.forward_inputs.lengths_places` gives, then as data inputs only.

    Raises:
        CaptureError: no module fixes an input.
    """
    from .torch_capture import CaptureError

    candidates = [(child, options) for child, options in _fixing(module)]
    if not candidates:
        raise CaptureError(
            f"{type(module).__name__} holds no Embedding, recurrent module, Linear, "
            "convolution or normalization to fix the shape of its input"
        )
    names = input_names(module)
    if len(names) <= 1:
        return [ForwardInputs((options,)) for options in _one(module, candidates, ())]
    guesses = _with_states(module, candidates, names)
    for at in lengths_places(names):  # forward(x, lengths), forward(src, src_lengths, tgt)
        if len(names) - len(at) == 1:
            guesses += [ForwardInputs((options,), at) for options in _one(module, candidates, at)]
        else:
            chosen = _chosen(module, candidates, len(names) - len(at))
            guesses += [ForwardInputs(options, at) for options in chosen]
    chosen = _chosen(module, candidates, len(names))
    return guesses + [ForwardInputs(options) for options in chosen]


# forward's inputs that may hold a recurrent module's initial states, as a decoder's step
# takes them: forward(input, hidden, cell)
_STATE_NAMES = ("hidden", "cell", "state", "h0", "c0", "hx", "cx", "h_0", "c_0")


def _with_states(
    module: Any, candidates: list[tuple[Any, dict[str, Any]]], names: list[str]
) -> list[ForwardInputs]:
    """Where ``forward``'s inputs are named as states (:data:`_STATE_NAMES`), the guesses
    of them as the first recurrent module's, (layers * directions, batch, units), and of
    the others as for that many data inputs, token ids also one per row (a decoder's
    step, ``input.unsqueeze(0)``); none otherwise."""
    nn = require("torch").nn
    recurrent = next((c for c in module.modules() if isinstance(c, nn.RNNBase)), None)
    at = [i for i, name in enumerate(names) if any(s in name.lower() for s in _STATE_NAMES)]
    if recurrent is None or not at or len(at) == len(names):
        return []
    layers = recurrent.num_layers * (2 if recurrent.bidirectional else 1)
    states = {"shape": (layers, recurrent.hidden_size), "dtype": "float32", "batch_axis": 1}
    count = len(names) - len(at)
    if count == 1:
        others = [(options,) for options in _one(module, candidates, ())]
        ids = [o for (o,) in others if o["shape"] == (None,) and not o.get("batch_axis")]
        others += [({**o, "shape": ()},) for o in ids]
    else:
        others = _chosen(module, candidates, count)
    guesses = []
    for chosen in others:
        given = iter(chosen)
        guesses.append(tuple(states if i in at else next(given) for i in range(len(names))))
    distinct = list(_distinct(guesses))
    tensors = [ForwardInputs(options) for options in distinct]
    if not isinstance(recurrent, nn.LSTM) or len(at) != 1:
        return tensors
    # then an LSTM's (h, c) as one argument, forward(input, hidden): two inputs of it
    groups = tuple(2 if i in at else 1 for i in range(len(names)))
    return tensors + [
        ForwardInputs(tuple(o for i, o in enumerate(g) for _ in range(groups[i])), groups=groups)
        for g in distinct
    ]


def _chosen(
    module: Any, candidates: list[tuple[Any, dict[str, Any]]], count: int
) -> list[tuple[Any, ...]]:
    """The options of ``count`` distinct modules, in declaration order, the first module of
    each child of ``module`` before the others (an encoder's convolution and a decoder's
    Embedding, not the encoder's convolution and its LSTM); three choices at most. Then
    those of one module for every input (a siamese model runs each through the same
    modules), the first module's first."""
    parents = {id(child): name.split(".")[0] for name, child in module.named_modules()}
    heads = {parents[id(child)]: child for child, _ in reversed(candidates)}.values()
    ordered = sorted(candidates, key=lambda candidate: candidate[0] not in heads)
    chosen = (tuple(options for _, options in c) for c in combinations(ordered, count))
    distinct = list(islice(_distinct(chosen), _GUESSES))
    alike = _distinct((options,) * count for _, options in candidates)
    return distinct + [c for c in islice(alike, 1) if c not in distinct]


def _one(
    module: Any, candidates: list[tuple[Any, dict[str, Any]]], lengths_at: tuple[int, ...]
) -> list[dict[str, Any]]:
    """The guesses of one data input (see :func:`input_guesses`)."""
    from .torch_capture import first_called

    guesses = [options for _, options in candidates]
    if any(options != guesses[0] for options in guesses):
        first = ForwardInputs((guesses[0],), lengths_at)
        called = first_called(module, first, [child for child, _ in candidates])
        guesses = [options for child, options in candidates if child is called] + guesses
    nn = require("torch").nn
    recurrent = [child for child in module.modules() if isinstance(child, nn.RNNBase)]
    cells = any(isinstance(child, nn.RNNCellBase) for child in module.modules())
    sequences = bool(recurrent) or cells
    guesses = [
        layout for options in guesses for layout in (options, *_other_layout(options, sequences))
    ]
    guesses = list(_distinct(guesses))[:_GUESSES]
    if cells or any(not child.batch_first for child in recurrent):  # torch's default layout
        guesses += [{**o, "batch_axis": 1} for o in guesses if o["shape"][:1] == (None,)]
    return guesses


def _distinct(items: Iterable[Any]) -> Iterator[Any]:
    """``items`` without repeats, in order (they are unhashable dicts)."""
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
            yield item


def _other_layout(options: dict[str, Any], sequences: bool) -> list[dict[str, Any]]:
    """A sequence's other layout: (features, time) for a recurrent module's (time,
    features), as audio models take it and transpose for their recurrent module (demucs's
    ``x.permute(2, 0, 1)``), and (time, channels) for a 1-D convolution's (channels, time),
    as speech models take frames and transpose for their convolution; for a convolution of
    one channel, also the bare signal (time,), as ``wav.unsqueeze(1)`` in raw audio models.
    In a module of ``sequences`` (recurrent modules or cells), a Linear's (features,) is
    also (time, features): a projection of each step before the recurrent module.

    Example:
        >>> _other_layout({"shape": (None, 6)}, True), _other_layout({"shape": (6, None)}, True)
        ([{'shape': (6, None)}], [{'shape': (None, 6)}])
        >>> _other_layout({"shape": (1, None)}, True)
        [{'shape': (None, 1)}, {'shape': (None,)}]
        >>> _other_layout({"shape": (5,)}, True), _other_layout({"shape": (5,)}, False)
        ([{'shape': (None, 5)}], [])
    """
    shape = tuple(options["shape"])
    if len(shape) == 1 and shape[0] is not None and sequences:
        return [{**options, "shape": (None, *shape)}]
    if len(shape) != 2 or (shape[0] is None) == (shape[1] is None):
        return []
    signal = [{**options, "shape": (None,)}] if shape == (1, None) else []
    return [{**options, "shape": shape[::-1]}, *signal]


def _fixing(module: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Each module in ``module`` fixing the input's options, with them, in declaration order."""
    nn = require("torch").nn
    for child_name, child in module.named_modules():
        if child is module:
            continue
        first = _normalization_input(child_name, child)
        if first:
            yield child, first
        elif isinstance(child, (nn.Embedding, nn.RNNBase, nn.Linear, *conv_types(nn))):
            yield child, child_input_options(child_name, child, nn)
        elif isinstance(child, nn.RNNCellBase):  # a loop over x[:, t]: (B, T, input_size)
            yield child, {"shape": (None, int(child.input_size)), "dtype": "float32"}


def _normalization_input(name: str, child: Any) -> dict[str, Any] | None:
    """The input a normalization fixes; None for a pool (which fixes none) and other modules."""
    try:
        return input_options([(name, child)]) if is_normpool(child) else None
    except UnsupportedFeatureError:
        return None


__all__ = ["child_input_options", "input_guesses"]
