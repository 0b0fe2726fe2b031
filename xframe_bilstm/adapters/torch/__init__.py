"""PyTorch adapter: canonical stacks to and from ``torch.nn`` modules.

Its modules import torch at the top, so only import them once torch is known to be wanted
(``xframe_bilstm`` itself never imports them; the public converters call
:func:`xframe_bilstm._imports.require` first).

- :mod:`.module`: :class:`KerasRecurrent`, whose ``forward`` takes what the Keras layer
  takes and returns what it returns (batch-first input, initial states in Keras order,
  outputs merged and flipped as Keras does), and the conversions both ways.
- :mod:`.keras_run`: the one recurrence with Keras semantics, masks included, which it and
  the whole-model port run.
- :mod:`.weights`: canonical weights into native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` modules
  (their parameter names and gate orders) and back; :mod:`.explicit`: an exact loop with
  the same names for cells they cannot run. Nothing is approximated.
- :mod:`.state_dict`: the native module a ``state_dict`` was saved from;
  :mod:`.steps`: masks as right padding; :mod:`.tensors`: numpy to torch and back.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .explicit import ExplicitRNN
    from .module import KerasRecurrent, canonical_to_torch, run_torch, torch_to_canonical
    from .state_dict import module_from_state_dict
    from .tensors import evaluating, flatten, numpy_to_tensor, run_module, tensor_to_numpy

# Name -> the module defining it, imported on first use: a whole-model port needs the
# cells and tensors, not the stack module or the state_dict reader.
_DEFINED_IN = {
    "ExplicitRNN": ".explicit",
    "KerasRecurrent": ".module",
    "canonical_to_torch": ".module",
    "run_torch": ".module",
    "torch_to_canonical": ".module",
    "module_from_state_dict": ".state_dict",
    "evaluating": ".tensors",
    "flatten": ".tensors",
    "float_dtype": ".tensors",
    "numpy_to_tensor": ".tensors",
    "run_module": ".tensors",
    "tensor_to_numpy": ".tensors",
}


def __getattr__(name: str) -> Any:
    if name not in _DEFINED_IN:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_DEFINED_IN[name], __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_DEFINED_IN})


__all__ = [
    "ExplicitRNN",
    "KerasRecurrent",
    "canonical_to_torch",
    "evaluating",
    "flatten",
    "float_dtype",
    "module_from_state_dict",
    "numpy_to_tensor",
    "run_module",
    "run_torch",
    "tensor_to_numpy",
    "torch_to_canonical",
]
