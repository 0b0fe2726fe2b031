"""The two sides of a diagnosis: what each object is, how it reads, the output structure it
is asked for, and the input both run on.

A side is any source :func:`~xframe_bilstm.sources.read_source` reads into recurrent layers
(a Keras layer or file, a canonical stack, a torch module or state_dict file, an ONNX graph),
a custom torch module, or a pair of single-direction layers (:class:`Side`, from
:func:`classify`). Each source is read once, by ``read_source``, and keeps its ``Read``: its
reading and the original the runner runs. Nothing here runs a side (see :mod:`.runners`);
Keras and torch are imported only inside functions, once an object of theirs is known to be
in use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import RecurrentStack
from ..errors import UnsupportedFeatureError, WeightShapeError, XFrameError
from ..sources import Read, name_of, read_source, source_type
from ..stack_graph import as_graph, stack_of

DIAGNOSIS_BATCH = 2
DIAGNOSIS_STEPS = 7


@dataclass(frozen=True)
class Flags:
    """What a stack returns; native torch modules, which can return anything, are asked
    for the other side's. The default is everything: the concatenated sequence and states."""

    return_sequences: bool = True
    return_state: bool = True
    merge_mode: str | None = "concat"

    @classmethod
    def of(cls, stack: RecurrentStack) -> Flags:
        last = stack.last
        merge = last.merge_mode if last.direction == "bidirectional" else "concat"
        return cls(stack.return_sequences, stack.return_state, merge)

    def apply(self, stack: RecurrentStack) -> RecurrentStack:
        """``stack`` returning this (raises XFrameError where the stack cannot)."""
        last = stack.last
        if last.direction == "bidirectional" and self.merge_mode != last.merge_mode:
            last = replace(last, merge_mode=self.merge_mode)
        return replace(
            stack,
            layers=(*stack.layers[:-1], last),
            return_sequences=self.return_sequences,
            return_state=self.return_state,
        )


@dataclass
class Side:
    """One of the two objects: what it is, its canonical form once known, how to run it."""

    obj: Any
    # source (read by read_source) | keras (a live layer, maybe unbuilt) | keras_opaque |
    # native (nn.LSTM/GRU/RNN, which returns what the other side returns) | custom | pair
    kind: str
    label: str
    halves: tuple[Side, Side] | None = None
    stack: RecurrentStack | None = None  # the reading, with the flags asked of a native
    read: Read | None = None

    @property
    def members(self) -> tuple[Side, ...]:
        """The objects that run: the two halves of a pair, or the side itself."""
        return self.halves if self.halves is not None else (self,)

    @property
    def flexible(self) -> bool:
        """Whether its output structure is ours to choose (native torch modules)."""
        return all(member.kind == "native" for member in self.members)


def classify(obj: Any, role: str, read: Read | None = None) -> Side:
    """Classify ``obj`` (``role`` names it in errors: "expected", "actual[0]", ...);
    ``read``: ``obj`` as read already, if it was."""
    if isinstance(obj, (tuple, list)):
        if len(obj) != 2:
            raise UnsupportedFeatureError(
                f"{role}: a sequence must be a pair (forward_layer, backward_layer); got "
                f"{len(obj)} items"
            )
        halves = (classify(obj[0], role + "[0]"), classify(obj[1], role + "[1]"))
        if any(half.halves is not None for half in halves):
            raise UnsupportedFeatureError(f"{role}: the halves of a pair cannot be pairs")
        label = f"({halves[0].label}, {halves[1].label})"
        return Side(obj, "pair", label, halves=halves)
    kind = source_type(obj)  # refuses what no source type reads, naming what it takes
    name = getattr(obj, "name", "")
    label = f"{type(obj).__name__} {name!r}" if isinstance(name, str) and name else ""
    label = name_of(obj) if kind in ("ONNX", "Keras file", "torch state_dict") else label
    label = label or type(obj).__name__
    if kind in ("keras", "canonical", "ONNX", "Keras file", "torch state_dict"):
        return Side(obj, "keras" if kind == "keras" else "source", label, read=read)
    torch = require("torch")
    from ..adapters.torch import KerasRecurrent

    if isinstance(obj, KerasRecurrent):
        return Side(obj, "source", label)
    if type(obj) in (torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN):
        return Side(obj, "native", label)
    return Side(obj, "custom", label)


def build_keras(side: Side, x: np.ndarray) -> None:
    """Call an unbuilt Keras layer once on ``x`` so that it has weights to compare."""
    for member in side.members:
        if member.kind == "keras" and not member.obj.built:
            member.obj(x)


def read_canonical(side: Side, role: str) -> None:
    """Read each member once (:func:`~xframe_bilstm.sources.read_source`), where it reads
    into recurrent layers; unbuilt Keras layers wait for the input."""
    for member in side.members:
        if member.kind in ("custom", "keras_opaque") or member.stack is not None:
            continue
        if member.kind == "keras" and not member.obj.built:
            continue  # built once the input is known
        try:
            read = member.read or read_source(member.obj)
        except UnsupportedFeatureError as error:
            if member.kind != "keras":
                raise refusal(role, error) from error
            # E.g. the backward layer handed to a Bidirectional, which set its
            # zero_output_for_mask: still runnable, only without a canonical form.
            member.kind = "keras_opaque"
            continue
        graph = as_graph(read.reading)
        stack = stack_of(graph)  # recurrent layers in a chain, however they were read
        if stack is None:
            raise UnsupportedFeatureError(
                f"{role}: {member.label} is a whole model ({graph.source}), which "
                "cannot be diagnosed against recurrent layers; pass the whole model as "
                "expected and its port (a torch module or an ONNX export of the model) as "
                "actual, or diagnose a layer against a layer"
            )
        member.read, member.stack = read, stack
    _join_pair(side)


def refusal(role: str, error: UnsupportedFeatureError) -> UnsupportedFeatureError:
    """The refusal of a side that cannot be read: which side, then why."""
    text = str(error)
    if "custom_layers=" in text:
        text += "; diagnose() takes the same custom_layers= for a whole Keras model"
    return UnsupportedFeatureError(f"{role} cannot be diagnosed: {text}")


def _join_pair(side: Side) -> None:
    """A pair's canonical form: its halves' weights as one bidirectional layer, if they fit
    (the running differs: each half runs alone)."""
    if side.halves is None:
        return
    side.stack = None
    forward, backward = (half.stack for half in side.halves)
    if forward is None or backward is None:
        return
    if len(forward.layers) != 1 or len(backward.layers) != 1:
        return
    f_layer, b_layer = forward.last, backward.last
    if "bidirectional" in (f_layer.direction, b_layer.direction):
        raise UnsupportedFeatureError(
            "the halves of a pair must be single-direction layers; got a bidirectional one"
        )
    options = ("cell", "input_size", "units", "activation", "recurrent_activation", "reset_after")
    if any(getattr(f_layer, name) != getattr(b_layer, name) for name in options):
        return  # one canonical layer holds one set of options
    try:
        layer = replace(
            f_layer,
            weights=(f_layer.weights[0], b_layer.weights[0]),
            direction="bidirectional",
            merge_mode="concat",
        )
    except XFrameError:  # e.g. one half has a bias and the other none
        return
    side.stack = RecurrentStack((layer,), forward.return_sequences, forward.return_state)


def target_flags(expected: Side, actual: Side) -> Flags:
    """What both sides return: what the first side with a fixed structure returns."""
    for one in (expected, actual):
        if not one.flexible and one.stack is not None:
            return Flags.of(one.stack)
    return Flags()


def apply_flags(side: Side, flags: Flags) -> None:
    """Let native torch modules return what the other side returns."""
    for member in side.members:
        if member.kind == "native" and member.stack is not None:
            member.stack = flags.apply(member.stack)
    _join_pair(side)


def choose_input(inputs: Any, expected: Side, actual: Side, seed: int) -> np.ndarray:
    """``inputs`` checked, or a seeded float32 normal input of the sides' input size."""
    if inputs is not None:
        x = np.asarray(inputs)
        if x.ndim != 3:
            raise WeightShapeError(f"inputs: expected shape (batch, time, features), got {x.shape}")
        return x
    stacks = [m.stack for one in (expected, actual) for m in one.members if m.stack is not None]
    if not stacks:
        raise WeightShapeError(
            "inputs: neither side tells its input size (custom modules and unbuilt Keras "
            "layers); pass inputs=... of shape (batch, time, features)"
        )
    rng = np.random.default_rng(seed)
    shape = (DIAGNOSIS_BATCH, DIAGNOSIS_STEPS, stacks[0].input_size)
    return rng.standard_normal(shape).astype(np.float32)
