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

from .explicit import ExplicitRNN
from .module import KerasRecurrent, canonical_to_torch, run_torch, torch_to_canonical
from .state_dict import module_from_state_dict
from .tensors import evaluating, flatten, numpy_to_tensor, run_module, tensor_to_numpy

__all__ = [
    "ExplicitRNN",
    "KerasRecurrent",
    "canonical_to_torch",
    "evaluating",
    "flatten",
    "module_from_state_dict",
    "numpy_to_tensor",
    "run_module",
    "run_torch",
    "tensor_to_numpy",
    "torch_to_canonical",
]
