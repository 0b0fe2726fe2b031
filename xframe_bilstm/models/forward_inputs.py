"""What a torch module's ``forward`` is captured on: its data inputs, and the rows' lengths.

``forward(x)`` takes one input. ``forward(x, lengths)`` takes the rows' lengths after it, as
a packing model does (:mod:`.capture_packed`). ``forward(src, tgt)`` and any ``forward``
with more inputs, as an encoder–decoder's, take several data inputs. Which of the last two
a ``forward`` of two inputs is cannot be seen from its signature, so both are tried, the
lengths first; each data input's shape and dtype are guessed from the modules that fix one
(:mod:`.input_guesses`), or given by the user.
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
            axis, None for a free axis, and ``dtype``), in ``forward``'s order.
        lengths: whether the rows' lengths follow them (``forward(x, lengths)``).
    """

    options: tuple[dict[str, Any], ...]
    lengths: bool = False

    def replace(self, index: int, **changes: Any) -> ForwardInputs:
        """These inputs with input ``index``'s options changed."""
        options = list(self.options)
        options[index] = {**options[index], **changes}
        return dataclasses.replace(self, options=tuple(options))


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
    tried = "as data then the rows' lengths, and " if len(names) == 2 else ""
    shapes = ", ".join(f"<shape of {name}>" for name in names)
    return (
        f"{type(module).__name__}.forward takes {len(names)} inputs ({', '.join(names)}), "
        f"tried {tried}as {len(names)} data inputs shaped as the modules that read them "
        f"guess; give each data input's shape, without the batch axis and None for time: "
        f"input_shape=[{shapes}]"
    )


__all__ = ["ForwardInputs", "input_names", "several_inputs_hint"]
