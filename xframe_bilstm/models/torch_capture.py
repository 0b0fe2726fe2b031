"""A torch module's ``forward`` captured with ``torch.export``, read as a model graph.

Rules of this module:

- ``forward`` runs in eval mode, without gradients, on seeded example inputs shaped by the
  first module it calls (token ids for an ``nn.Embedding``, (B, T, D) for a recurrent
  module, ...; see :func:`~xframe_bilstm.models.input_guesses.input_guesses`), one per
  data input of ``forward`` (and the rows' lengths among them, :mod:`.forward_inputs`),
  twice: at two batch sizes and two lengths of each input's last free axis (the time
  axis), so the graph knows which axes follow it (recurrent modules make ``torch.export``
  fix the length of each capture). Other free axes, such as an image's height, take the
  example's size, 7. The lengths are 7 and 9, or, where ``forward``'s convolutions or pools
  need a longer input (raw audio into strided convolutions), 8 or 64 times that, then four
  times more (:func:`long_enough`); the inputs' ``min_steps`` option says so.
- Every call of a module the package reads (an ``nn.LSTM``, ``nn.Linear``,
  ``nn.Conv2d``...; see :func:`~xframe_bilstm.models.torch_graph.is_leaf`) is read as
  that module, through the same readers as a child of a plain chain
  (:func:`~xframe_bilstm.models.torch_graph.child_records`), however deep it sits and
  however often it is called; a recurrent module's initial states must be its own zeros,
  and its final states are read one entry at a time, ``h_n[k]``, or stacked where used
  whole (:mod:`.capture_states`).
  A call of ``nn.MultiheadAttention`` is one
  ``multi_head_attention`` record (:mod:`.capture_attention`). Everything else
  ``forward`` computes is read operation by operation (:mod:`.capture_ops`), through
  modules of the user's own classes too.
- Time-major tensors, (time, batch, ...), as ``x.transpose(0, 1)`` into an
  ``nn.LSTM(batch_first=False)`` makes them, are read as the batch-major tensors of the
  records computing the same numbers (:mod:`.capture_time_major`).
- ``torch.export`` unrolls a ``for t in range(x.shape[1])`` loop over an
  ``nn.LSTMCell``/``nn.GRUCell``/``nn.RNNCell`` into one call per step: the calls of one
  cell over every step of the input, in both captures, are read as the ``nn.LSTM``/
  ``nn.GRU``/``nn.RNN`` holding its weights (:mod:`.capture_cells`); any other use of a
  cell is refused by name.
- What cannot be read is refused once, listing every operation with the line of
  ``forward`` it came from (``node.meta["stack_trace"]``).
- Where ``torch.export`` cannot capture ``forward`` at all, ``torch.fx`` traces it
  (:mod:`.capture_fx`) and the trace is read the same way; the graph's ``captured_by``
  says which capture ran. Where both fail, the refusal gives both reasons, each with its
  line of ``forward``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._imports import require
from ..errors import UnsupportedFeatureError
from ..graph import ModelGraph
from .capture_attention import is_attention_module
from .capture_fx import EXPORT, FX, fx_module, reason
from .capture_packed import example_lengths, packing_captured
from .capture_walk import LeafTest, ReadChild, read_captured
from .forward_inputs import ForwardInputs

_log = logging.getLogger(__name__)

_BATCHES = (3, 2)


class CaptureError(UnsupportedFeatureError):
    """``torch.export`` could not capture ``forward`` at all."""


class TooShortError(CaptureError):
    """``forward`` has a window longer than every length the capture tries."""


_LENGTHS = (7, 9)
_SCALES = (8, 64)
# What torch says of an input shorter than a convolution's or a pool's window.
_TOO_SHORT = (
    "Kernel size can't be greater than actual input size",
    "Output size is too small",
    "Invalid computed output size",
    "Padding size should be less than the corresponding input dimension",
)


def capture_graph(
    module: Any,
    inputs: ForwardInputs,
    *,
    name: str | None = None,
    is_leaf: LeafTest,
    read_child: ReadChild,
) -> ModelGraph:
    """The model graph of what ``module.forward`` computes, captured by ``torch.export``.

    Args:
        module: the module.
        inputs: its inputs: each data input's ``InputLayer`` options (``shape`` without
            the batch axis, None for a free axis, and ``dtype``), and where the rows'
            lengths are among them, if anywhere.
        name: the graph's name (the class's, lowercased, by default).
        is_leaf: whether a module's calls are read as that module whole.
        read_child: the records of such a call, ``read_child(name, child, previous)``.

    Raises:
        UnsupportedFeatureError: ``torch.export`` could not capture ``forward``, or one
            message listing every operation with no layer record, with its line.
    """
    inputs = dataclasses.replace(inputs, options=tuple(map(fixed_axes, inputs.options)))
    inputs, (captured, exported, captured_by) = long_enough(module, inputs, is_leaf)
    try:
        second = capture(captured, inputs, 1)
    except CaptureError:  # the free axes are not free after all: shapes fixed
        second = None
    graph = read_captured(
        module,
        exported,
        second,
        inputs,
        name=name or type(module).__name__.lower(),
        is_leaf=is_leaf,
        read_child=read_child,
        batches=_BATCHES,
    )
    return dataclasses.replace(graph, captured_by=captured_by)


def long_enough(
    module: Any, inputs: ForwardInputs, is_leaf: LeafTest
) -> tuple[ForwardInputs, tuple[Any, Any, str]]:
    """The inputs at lengths ``forward`` takes, and their first capture (``_first_capture``).

    Where 7 steps are shorter than a window of ``forward``'s, 56, then 448, are tried. The
    second capture must see other lengths downstream too, where strides fold the shortest
    working length into one step: so both captures then run four times longer than the
    first length that worked (``min_steps`` of each input with a free axis).

    Raises:
        CaptureError: as ``_first_capture``; a ``TooShortError`` where no length tried is
            long enough.
    """
    try:
        return inputs, _first_capture(module, inputs, is_leaf)
    except CaptureError as error:
        if not _too_short(error):
            raise
        short = error
    for scale in _SCALES:
        longer = dataclasses.replace(inputs, lengths=_scaled(scale))
        try:
            _first_capture(module, longer, is_leaf)
        except CaptureError as error:
            if _too_short(error):
                short = error
                continue
            raise
        options = tuple(
            {**options, "min_steps": _scaled(scale)[0]} if None in options["shape"] else options
            for options in inputs.options
        )
        inputs = dataclasses.replace(inputs, options=options, lengths=_scaled(4 * scale))
        try:
            return inputs, _first_capture(module, inputs, is_leaf)
        except CaptureError as error:
            worked, tried = _scaled(scale)[0], inputs.lengths[0]
            raise CaptureError(
                f"{error}; forward runs at {worked} steps but not at {tried}, nor at "
                f"{_LENGTHS[0]}: where it takes inputs of one length alone (a pooling over "
                "the whole length), give that length (input_shape, or the inputs compare runs)"
            ) from error
    raise TooShortError(str(short)) from short


def _scaled(scale: int) -> tuple[int, int]:
    return scale * _LENGTHS[0], scale * _LENGTHS[1]


def _too_short(error: CaptureError) -> bool:
    return any(message in str(error) for message in _TOO_SHORT)


def _first_capture(module: Any, inputs: ForwardInputs, is_leaf: LeafTest) -> tuple[Any, Any, str]:
    """The module captured (``module``, or its ``torch.fx`` trace where ``torch.export``
    refuses ``module``), its capture at the first sizes, and which capture ran.

    Raises:
        CaptureError: both refused ``forward``, naming both reasons.
    """
    try:
        return module, capture(module, inputs, 0), EXPORT
    except CaptureError as refused:
        try:
            traced = fx_module(module, lambda child: is_leaf(child) or is_attention_module(child))
        except Exception as error:  # whatever the user's forward raises when traced
            raise CaptureError(
                f"{refused}, nor could torch.fx trace it ({reason(error)})"
            ) from error
        try:
            exported = capture(traced, inputs, 0)
        except CaptureError as error:
            raise CaptureError(
                f"{refused}, nor could its torch.fx trace be captured "
                f"({reason(error.__cause__ or error, located=False)})"
            ) from error
    _log.info(
        "torch.export could not capture %s.forward; captured with torch.fx", type(module).__name__
    )
    return traced, exported, FX


def fixed_axes(input_options: Mapping[str, Any]) -> dict[str, Any]:
    """The input's options with only its last free axis left free (the time axis of ids,
    sequences and channels-first signals); the others take the examples' length, as a
    CRNN's image height is fixed by its convolutions.

    Example:
        >>> fixed_axes({"shape": (1, None, None), "dtype": "float32"})["shape"]
        (1, 7, None)
    """
    shape = list(input_options["shape"])
    free = [index for index, size in enumerate(shape) if size is None]
    for index in free[:-1]:
        shape[index] = _LENGTHS[0]
    return {**input_options, "shape": tuple(shape)}


def example_arguments(module: Any, inputs: ForwardInputs, which: int) -> tuple[Any, ...]:
    """The arguments of ``forward`` in capture ``which``: the example inputs (their free
    axes all of one length), and, where ``forward`` takes them, the rows' lengths at their
    place (:mod:`.capture_packed`)."""
    length = inputs.lengths[which]
    examples = [example_input(module, options, which, length) for options in inputs.options]
    lengths = [example_lengths(_BATCHES[which], length) for _ in inputs.lengths_at]
    return tuple(inputs.arrange(examples, lengths))


def example_input(module: Any, input_options: Mapping[str, Any], which: int, length: int) -> Any:
    """The seeded example input of capture ``which`` (0 or 1), its free axis ``length``."""
    torch = require("torch")
    sizes = [length if s is None else int(s) for s in input_options["shape"]]
    shape = (_BATCHES[which], *sizes)
    if input_options.get("batch_axis") == 1:  # (time, batch, ...), or (layers, batch, ...)
        shape = (sizes[0], _BATCHES[which], *sizes[1:])
    rng = np.random.default_rng(which)
    if np.dtype(input_options["dtype"]).kind in "iu":
        vocabulary = min(  # ids every Embedding takes, as several inputs may read others
            (
                child.num_embeddings
                for child in module.modules()
                if isinstance(child, torch.nn.Embedding)
            ),
            default=2,
        )
        return torch.as_tensor(rng.integers(1, max(vocabulary, 2), size=shape))
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    return torch.as_tensor(rng.standard_normal(shape), dtype=dtype)


class _Called(Exception):
    def __init__(self, child: Any) -> None:
        self.child = child


def first_called(module: Any, inputs: ForwardInputs, children: list[Any]) -> Any:
    """Which of ``children`` ``module.forward`` calls first on example input 0 (run until
    that call, in eval mode), or None where it calls none of them or fails before."""
    torch = require("torch")
    from ..adapters.torch import evaluating

    def called(child: Any, _args: Any) -> None:
        raise _Called(child)

    hooks = [child.register_forward_pre_hook(called) for child in children]
    try:
        with evaluating(module), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            module(*example_arguments(module, inputs, 0))
    except _Called as call:
        return call.child
    except Exception:  # forward fails on this input before calling any of them
        return None
    finally:
        for hook in hooks:
            hook.remove()
    return None


def capture(module: Any, inputs: ForwardInputs, which: int) -> Any:
    """``torch.export.export`` of ``module`` on example input ``which``, in eval mode.

    Raises:
        UnsupportedFeatureError: saying why ``torch.export`` could not capture it.
    """
    torch = require("torch")
    from ..adapters.torch import evaluating

    arguments = example_arguments(module, inputs, which)
    # A refused data-dependent guard is logged, and printed with the partial graph, and an
    # operation failing on fake tensors is logged with its traceback: the error says both,
    # and torch.fx (or another guess of the input) may read the module yet.
    loggers = {
        name: logging.getLogger(name)
        for name in ("torch.fx.experimental.symbolic_shapes", "torch._subclasses.fake_tensor")
    }
    levels, printed = {name: logger.level for name, logger in loggers.items()}, io.StringIO()
    try:
        for logger in loggers.values():
            logger.setLevel(logging.CRITICAL)
        with evaluating(module), torch.no_grad(), warnings.catch_warnings():
            # nn.LSTM reassigns its flat weights as it runs, and torch.nn.utils.weight_norm
            # its modules' weights before each call: torch.export warns, harmlessly.
            warnings.filterwarnings("ignore", "The tensor attribute", UserWarning)
            # Kept meta: where a module names the source of its operations (SOURCE_KEY).
            with (
                contextlib.redirect_stderr(printed),
                packing_captured(module),
                torch.fx.traceback.preserve_node_meta(),
            ):
                return torch.export.export(module, arguments)
    except Exception as error:  # whatever the user's forward raises when captured
        partial = getattr(error, "partial_fx_graph", None)
        if partial is not None:
            printed = io.StringIO(printed.getvalue().replace(f"{partial}\n", ""))
        raise CaptureError(
            f"torch.export could not capture {type(module).__name__}.forward ({reason(error)})"
        ) from error
    finally:
        for name, logger in loggers.items():
            logger.setLevel(levels[name])
        sys.stderr.write(printed.getvalue())  # what forward itself printed stays


__all__ = [
    "CaptureError",
    "TooShortError",
    "capture",
    "capture_graph",
    "example_input",
    "first_called",
    "fixed_axes",
]
