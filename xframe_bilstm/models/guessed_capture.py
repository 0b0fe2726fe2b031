"""A module's ``forward`` captured at the guesses of its inputs (:mod:`.input_guesses`),
likeliest first.

Where the shapes are given (the user's ``input_shape``, or those of the inputs ``compare``
runs), a guess whose module does not read an input of that shape says nothing of its dtype:
``forward(x, speaker)`` may read ``speaker``, a per-row id, with the Embedding declared
first. Such inputs are tried as the guess has them, then as the other of integer ids and
floats; the inputs ``compare`` runs are tried with their first axis free (their steps),
then at the sizes they have, then at the guess's own shape.

A capture that reads its inputs against the guess is kept, and returned only where no
later guess is captured: an input guessed as the rows' lengths that nothing packs or masks
by (a speaker id beside the steps), or integer ids read as numbers (a float input guessed
as an Embedding's, which ``torch.cat`` would promote).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import product
from typing import Any

from ..errors import UnsupportedFeatureError
from ..graph import ModelGraph
from .forward_inputs import ForwardInputs, input_names, several_inputs_hint
from .input_guesses import input_guesses
from .input_shape import (
    InputShape,
    checked_input_shape,
    does_not_fit,
    examples_to_capture_at,
    first_module_reads,
    given_shapes,
    without_batch,
)

_DTYPES = ("int64", "float32")


def captured_at_guesses(
    module: Any,
    plain: UnsupportedFeatureError,
    capture: Callable[[ForwardInputs], ModelGraph],
    *,
    input_shape: InputShape | None = None,
    example_shapes: Sequence[Sequence[int | str]] | None = None,
    guesses: Sequence[ForwardInputs] | None = None,
) -> ModelGraph:
    """The graph ``capture`` reads at the first guess it captures against no expectation:
    of ``guesses`` where given, else of :func:`~.input_guesses.input_guesses`.

    Where it cannot be captured at all, ``plain`` (the refusal of ``forward`` read as a
    chain) says what ``forward`` does, and the capture's error why it was not read either;
    with ``input_shape``, that the shape does not fit.
    """
    from .torch_capture import CaptureError, TooShortError

    try:
        guesses = list(guesses) if guesses is not None else input_guesses(module)
    except CaptureError as error:
        raise UnsupportedFeatureError(f"{plain} {error}") from error
    shapes = given_shapes(input_shape, module)
    if shapes is not None:  # given: the guesses of as many inputs
        guesses = [g for g in guesses if len(g.options) == len(shapes)] or guesses[:1]
    refusals: list[UnsupportedFeatureError] = []
    kept: ModelGraph | None = None
    for inputs, guessed in _shaped(module, guesses, shapes, example_shapes):
        try:
            graph = capture(inputs)
        except CaptureError as error:
            if guessed:
                given = [o["shape"] for o in inputs.options]
                hint = "; ".join(filter(None, (first_module_reads(*pair) for pair in guessed)))
                why = f"{error} ({hint})" if hint else error
                shown = given[0] if len(given) == 1 else given
                refusals.append(UnsupportedFeatureError(does_not_fit(shown, module, why)))
            else:
                refusals.append(UnsupportedFeatureError(f"{plain} {error}"))
            refusals[-1].__cause__ = error
            continue
        except UnsupportedFeatureError as error:  # not read at this guess: try the next
            refusals.append(error)
            continue
        if not _read_against(graph, inputs):
            return graph
        kept = kept or graph
    if kept is not None:
        return kept
    read = [r for r in refusals if not isinstance(r.__cause__, CaptureError)]
    read += [r for r in refusals if isinstance(r.__cause__, TooShortError)]  # shaped right
    if read or shapes is not None or len(input_names(module)) < 2:
        raise (read or refusals)[0]  # captured but not read, else at the likeliest guess
    raise UnsupportedFeatureError(f"{refusals[0]}. {several_inputs_hint(module)}") from refusals[0]


def _shaped(
    module: Any,
    guesses: list[ForwardInputs],
    shapes: list[Any] | None,
    example_shapes: Sequence[Sequence[int | str]] | None,
) -> Iterator[tuple[ForwardInputs, list[tuple[Any, dict[str, Any]]]]]:
    """Each guess at the shapes given, once, then with its other choices where a given
    shape is not its module's; with the (shape, guess) pairs of the shapes given.

    Raises:
        UnsupportedFeatureError: a given shape that is no shape.
    """
    tried: list[ForwardInputs] = []
    for inputs in guesses:
        examples = inputs.split(list(example_shapes))[0] if example_shapes else None
        # (None, "batch", 80): time first; a shape given without the mark: batch first
        marks = [without_batch(shape, module) for shape in shapes or examples or []]
        batches = [batch or ({"batch_axis": 0} if shapes else {}) for _, batch in marks]
        if examples:
            examples = [shape for shape, _ in marks]
        if shapes:
            wanted = [shape for shape, _ in marks]
        else:
            wanted = examples_to_capture_at(inputs.options, examples)
        shaped, guessed, choices = inputs, [], []
        for index, (shape, options) in enumerate(zip(wanted, inputs.options)):
            batch = batches[index] if batches else {}
            if shape is None:
                shaped = shaped.replace(index, **batch)
                if examples and _one_step(options["shape"], examples[index]):
                    choices.append((index, [{}, {"shape": tuple(examples[index])}]))
                continue
            # forward may transpose it before its first module
            shape = checked_input_shape(shape, options, module, direct=False)
            shaped = shaped.replace(index, shape=shape, **batch)
            guessed.append((shape, options))
            if len(shape) != len(options["shape"]) or first_module_reads(shape, options):
                choices.append((index, _choices(shape, options["dtype"], shapes is None)))
            elif examples and None in shape:  # time may be another of the example's axes
                choices.append((index, _example_layouts(shape, examples[index])))
        for chosen in product(*(options for _, options in choices)):
            choice = shaped
            for (index, _), changes in zip(choices, chosen):
                choice = choice.replace(index, **changes)
            if choice not in tried:
                tried.append(choice)
                yield choice, guessed
        if shapes is None and choices and inputs not in tried:  # the guess as it stands
            tried.append(inputs)
            yield inputs, []


def _choices(shape: tuple[Any, ...], dtype: str, example: bool) -> list[dict[str, Any]]:
    """An input's options where its guess's module does not read it: the guess's dtype,
    then the other; an example's first axis free (its steps), then as the example has it.

    Example:
        >>> [tuple(c.values()) for c in _choices((5,), "float32", True)]
        [((None,), 'float32'), ((None,), 'int64'), ((5,), 'float32'), ((5,), 'int64')]
    """
    layouts = [(None, *shape[1:]), shape] if example and shape and None not in shape else [shape]
    dtypes = sorted(_DTYPES, key=lambda other: other != dtype)
    return [{"shape": layout, "dtype": other} for layout in layouts for other in dtypes]


def _example_layouts(shape: tuple[Any, ...], example: Sequence[int]) -> list[dict[str, Any]]:
    """An example's shape to capture at: as guessed, then with each other axis free (a
    spectrogram's time before its frequencies), then at the example's sizes.

    Example:
        >>> [c["shape"] for c in _example_layouts((1, 9, None), (1, 9, 16))]
        [(1, 9, None), (1, None, 16), (None, 9, 16), (1, 9, 16)]
    """
    sizes = tuple(int(size) for size in example)
    others = [
        (*sizes[:axis], None, *sizes[axis + 1 :])
        for axis in reversed(range(len(sizes)))
        if shape[axis] is not None
    ]
    layouts = [tuple(shape), *others, sizes] if len(sizes) == len(shape) else [tuple(shape)]
    return [{"shape": layout} for layout in _distinct(layouts)]


def _one_step(guessed: Sequence[int | None], example: Sequence[Any]) -> bool:
    """Whether ``example`` has one step where the guess leaves time free (a decoder's
    step, (1, batch)): tried at that one step too, as ``forward`` may squeeze it away."""
    return any(size is None and other == 1 for size, other in zip(guessed, example))


def _distinct(items: list[Any]) -> list[Any]:
    return [item for index, item in enumerate(items) if item not in items[:index]]


def _read_against(graph: ModelGraph, inputs: ForwardInputs) -> bool:
    """Whether ``graph`` reads its inputs against the guess ``inputs``: lengths guessed
    that nothing masks by, or integer ids read as numbers."""
    if inputs.lengths_at and not any(map(graph.holds_lengths, graph.inputs)):
        return True
    return bool(graph.ids_read_as_numbers())


__all__ = ["captured_at_guesses"]
