"""The ``input_shape`` a user gives :func:`~xframe_bilstm.torch_to_keras` for a module whose
input the first module does not fix whole (a CRNN's image height, a feature size).

The shape is Keras's (``keras.Input(shape=...)``): without the batch axis, ``None`` for the
one free axis (time); or, for an input whose batch axis is second, (time, batch, ...) as
torch's default layout has it, that axis marked ``"batch"``: ``(None, "batch", 80)``. It
replaces the shape guessed from the module's first child, whose
sizes it must keep where that child fixes them on the same axes (a convolution's channels,
an ``nn.LSTM``'s features); whether ``forward`` accepts it is then up to ``forward`` itself,
captured and run on inputs of that shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import UnsupportedFeatureError

# What ``input_shape`` takes: one shape, or one per data input of ``forward``.
InputShape = Sequence[int | str | None] | Sequence[Sequence[int | str | None]]
# Where a given shape has the batch axis, second alone: (None, "batch", 80) is (time,
# batch, 80), as torch's default layout takes a sequence, (2, "batch", 10) initial states.
BATCH = "batch"


def given_shapes(input_shape: Any, module: Any) -> list[Any] | None:
    """The shapes the user gives, one per data input of ``forward``: ``input_shape`` itself
    for one, a sequence of them for several (``[(None,), (None,)]`` for ``forward(src,
    tgt)``); None where none is given. Each is checked when captured at.

    Example:
        >>> given_shapes([(None,), (None, 8)], object()), given_shapes((None, 8), object())
        ([(None,), (None, 8)], [(None, 8)])
    """
    if input_shape is None:
        return None
    several = isinstance(input_shape, Sequence) and not isinstance(input_shape, (str, bytes))
    several = several and len(input_shape) > 0
    if several and all(_is_shape(s) for s in input_shape):
        return list(input_shape)
    if several and any(_is_shape(s) for s in input_shape):
        raise UnsupportedFeatureError(
            f"input_shape={input_shape!r} for {type(module).__name__}: give one shape, or "
            "one shape per input of forward, each a tuple of sizes without the batch axis"
        )
    return [input_shape]


def without_batch(shape: Any, module: Any) -> tuple[Any, dict[str, Any]]:
    """A given shape without the batch axis it marks (:data:`BATCH`), and the input
    option saying where it was.

    Raises:
        UnsupportedFeatureError: the batch axis marked elsewhere than second.

    Example:
        >>> without_batch((None, "batch", 80), object()), without_batch((None, 80), object())
        (((None, 80), {'batch_axis': 1}), ((None, 80), {}))
    """
    if not _is_shape(shape) or BATCH not in list(shape):
        return shape, {}
    items = list(shape)
    if items.count(BATCH) > 1 or items.index(BATCH) != 1:
        raise UnsupportedFeatureError(
            f"input_shape={tuple(shape)!r} for {type(module).__name__}: the batch axis is "
            "read first, or second where marked so, (None, 'batch', 80) for (time, batch, "
            "80) or (2, 'batch', 10) for (layers, batch, units) states"
        )
    return tuple(items[:1] + items[2:]), {"batch_axis": 1}


def _is_shape(item: Any) -> bool:
    return isinstance(item, Sequence) and not isinstance(item, (str, bytes))


def checked_input_shape(
    input_shape: Any, guessed: Mapping[str, Any], module: Any, *, direct: bool = True
) -> tuple[int | None, ...]:
    """``input_shape`` as a tuple, checked against the shape the first child fixes.

    Args:
        input_shape: the user's shape, without the batch axis.
        guessed: the input options read from the module (``shape``, ``dtype``).
        module: the module, for the messages.
        direct: whether the first child reads the input itself (a chain of children); a
            captured ``forward`` may transpose it first, so its sizes are not checked
            against that child's (:func:`first_module_reads` words the mismatch when the
            capture fails).

    Raises:
        UnsupportedFeatureError: not a sequence of positive ints and at most one None, or
            (``direct``) a size other than the one the first child reads on that axis.

    Example:
        >>> checked_input_shape([1, 32, None], {"shape": (1, None, None)}, object())
        (1, 32, None)
    """
    where = f"input_shape={input_shape!r} for {type(module).__name__}"
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise UnsupportedFeatureError(
            f"{where}: expected a tuple of sizes without the batch axis, None for the free "
            "(time) axis, as keras.Input(shape=...) takes"
        )
    shape = tuple(input_shape)
    bad = [s for s in shape if s is not None and (isinstance(s, bool) or not _positive(s))]
    if bad:
        raise UnsupportedFeatureError(
            f"{where}: each size must be a positive int or None (found {bad})"
        )
    if shape.count(None) > 1:
        raise UnsupportedFeatureError(
            f"{where}: {shape.count(None)} free axes; give every axis but time its size "
            "(the capture reads one free axis)"
        )
    mismatch = first_module_reads(shape, guessed)
    if direct and mismatch:
        raise UnsupportedFeatureError(f"{where}: {mismatch}")
    return tuple(None if s is None else int(s) for s in shape)


def first_module_reads(shape: tuple[Any, ...], guessed: Mapping[str, Any]) -> str:
    """How ``shape`` differs from what the first child reads, or "" where it does not.

    Example:
        >>> first_module_reads((None, 20), {"shape": (20, None)})
        'its first module reads size 20 on axis 1 (shape (batch, 20, None)), not None'
    """
    fixed = tuple(guessed["shape"])
    if len(fixed) == len(shape):
        for axis, (want, got) in enumerate(zip(fixed, shape), start=1):
            if want is not None and got != want:
                return (
                    f"its first module reads size {want} on axis {axis} (shape "
                    f"{_shown(fixed)}), not {got}"
                )
    return ""


def shape_of_example(
    guessed: Sequence[int | None], example: Sequence[int] | None
) -> tuple[int | None, ...] | None:
    """The input shape to capture at, given the shape of the inputs the caller will run
    (without the batch axis):

    - where the first module leaves more than one axis free (a CRNN's image height and
      width), every free axis but the last (time) takes the example's size, as an
      ``input_shape`` would give it;
    - where the first module fixes every axis it reads and the example has more before
      them (a Linear over frames (B, 1, T, F)), those take the example's sizes but the
      last, time;
    - where the example holds the sizes the first module fixes elsewhere (``forward``
      transposes (B, C, T) for an LSTM reading C), the example's shape, with the last
      axis that holds none of them (time) free.

    None where the guess needs nothing, or the example has none of these shapes.

    Example:
        >>> shape_of_example((1, None, None), (1, 32, 100))
        (1, 32, None)
        >>> shape_of_example((13,), (1, 20, 13))
        (1, None, 13)
        >>> shape_of_example((None, 6), (6, 20))
        (6, None)
        >>> shape_of_example((4, None), (20, 4))
        (None, 4)
        >>> shape_of_example((None, 8), (12, 8)) is None
        True
    """
    if example is None:
        return None
    if tuple(guessed) == (None,) and len(example) > 1:  # ids of words' characters: time first
        return (None, *(int(size) for size in example[1:]))
    free = [axis for axis, size in enumerate(guessed) if size is None]
    fixed = sorted(int(size) for size in guessed if size is not None)
    extra = len(example) - len(guessed)
    if not free and extra > 0 and tuple(example[extra:]) == tuple(guessed):
        return (*(int(size) for size in example[: extra - 1]), None, *guessed)
    if len(free) >= 2 and len(example) == len(guessed):
        return tuple(
            int(example[axis]) if axis in free[:-1] else size for axis, size in enumerate(guessed)
        )
    fits = _fits(guessed, example)
    unmatched = list(range(len(example)))
    for size in fixed:  # the fixed sizes, found elsewhere in the example
        axis = next((a for a in reversed(unmatched) if int(example[a]) == size), None)
        if axis is None:
            return None
        unmatched.remove(axis)
    if fits or not unmatched:
        return None
    time = unmatched[-1]
    return tuple(None if axis == time else int(size) for axis, size in enumerate(example))


def examples_to_capture_at(
    guessed: Sequence[Mapping[str, Any]], examples: Sequence[Sequence[int]] | None
) -> list[tuple[int | None, ...] | None]:
    """The shape to capture each guessed input at, given the shapes of the inputs the caller
    will run (None where the guess stands): as :func:`shape_of_example` says, or, where
    the example does not fit its guess at all (per-row features beside a sequence, token
    ids that no module reads alone), the example's own shape.

    Example:
        >>> guesses = [{"shape": (None, 5)}, {"shape": (11,)}]
        >>> examples_to_capture_at(guesses, [(6, 5), (3,)])
        [None, (3,)]
    """
    if not examples:
        return [None] * len(guessed)
    wanted = [
        shape_of_example(options["shape"], example) for options, example in zip(guessed, examples)
    ]
    return [
        shape
        if shape is not None or _fits(options["shape"], example)
        else tuple(int(size) for size in example)
        for shape, options, example in zip(wanted, guessed, examples)
    ]


def _fits(guessed: Sequence[int | None], example: Sequence[int]) -> bool:
    return len(guessed) == len(example) and all(
        size is None or size == int(other) for size, other in zip(guessed, example)
    )


def _positive(size: Any) -> bool:
    return isinstance(size, int) and size >= 1


def _shown(shape: tuple[Any, ...]) -> str:
    return "(batch, " + ", ".join("None" if s is None else str(s) for s in shape) + ")"


def does_not_fit(input_shape: Any, module: Any, why: object) -> str:
    """The message of a capture that failed on inputs of the user's shape."""
    return (
        f"input_shape={input_shape!r} does not fit {type(module).__name__}: {why}. Give the "
        "shape forward takes, without the batch axis"
    )


__all__ = [
    "InputShape",
    "checked_input_shape",
    "does_not_fit",
    "examples_to_capture_at",
    "first_module_reads",
    "given_shapes",
    "shape_of_example",
]
