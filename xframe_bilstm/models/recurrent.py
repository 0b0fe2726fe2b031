"""One Keras recurrent layer as a torch module of a whole-model port, for masks of any pattern.

The weights live in one native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (``rnn``), or in an
:class:`~xframe_bilstm.adapters.torch.ExplicitRNN` where the native modules cannot compute
the cell exactly (Keras 2's hard sigmoid, GRU ``reset_after=False``...), built and filled
by the same code as :func:`~xframe_bilstm.keras_to_torch`, and run by the same
:func:`~xframe_bilstm.adapters.torch.keras_run.run_group`; in its traceable form, so that
``torch.export`` can trace the module and a mask may leave rows empty.
"""

from __future__ import annotations

import torch
from torch import nn

from ..adapters.torch.keras_run import run_group
from ..adapters.torch.steps import Steps
from ..adapters.torch.tensors import torch_dtype
from ..adapters.torch.weights import load_layer, make_module
from ..canonical import RecurrentLayer, layer_structure


class Recurrent(nn.Module):
    """A Keras ``LSTM``/``GRU``/``SimpleRNN`` or ``Bidirectional`` of one, in torch.

    ``forward(x, mask=None, *states)`` takes batch-first ``x`` (B, T, D), an optional
    boolean Keras mask (B, T) and optional initial states (Keras order), and returns the
    layer's output: the sequence (B, T, ·) with ``return_sequences`` or the last output
    (B, ·), followed by the final states (Keras order) with ``return_state``.
    ``time_major`` layers (Keras 2) read and return time-first tensors, as they did in
    Keras.

    Example:
        >>> import numpy as np
        >>> from xframe_bilstm.canonical import DirectionWeights
        >>> w = DirectionWeights(np.full((1, 1), 0.5), np.zeros((1, 1)))
        >>> layer = RecurrentLayer("simple_rnn", 1, 1, (w,), recurrent_activation=None)
        >>> module = Recurrent(layer, return_sequences=True)
        >>> module.rnn
        RNN(1, 1, bias=False, batch_first=True)
        >>> mask = torch.tensor([[True, False, True]])
        >>> y = module(torch.ones(1, 3, 1, dtype=torch.float64), mask)   # step 1 repeats step 0
        >>> [round(v, 6) for v in y[0, :, 0].tolist()]
        [0.462117, 0.462117, 0.462117]
    """

    def __init__(
        self,
        layer: RecurrentLayer,
        *,
        return_sequences: bool,
        time_major: bool = False,
        return_state: bool = False,
        masked: bool = False,
    ) -> None:
        super().__init__()
        self.return_sequences, self.time_major = return_sequences, time_major
        self.return_state = return_state
        # A native module run traceably under a mask gives no final states; the explicit
        # loop (same parameter names) keeps each row's states after its last valid step.
        explicit = return_state and masked
        dtype = torch_dtype(layer.weights[0].kernel.dtype)
        self.rnn = make_module([layer], dtype, explicit=explicit)
        with torch.no_grad():
            load_layer(self.rnn, 0, layer)
        self.layer = layer_structure(layer)  # the parameters hold the weights

    def extra_repr(self) -> str:
        flags = [f"direction={self.layer.direction!r}", f"return_sequences={self.return_sequences}"]
        if self.layer.direction == "bidirectional":
            flags.append(f"merge_mode={self.layer.merge_mode!r}")
        if self.time_major:
            flags.append("time_major=True")
        if self.return_state:
            flags.append("return_state=True")
        return ", ".join(flags)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, *states: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The layer's output from ``x`` and its initial ``states`` (Keras order; zeros
        when none), then its final states in Keras order where it returns them."""
        if self.time_major:  # Keras 2 read axis 0 as time: run batch-first, then turn back
            x = x.transpose(0, 1)
        (y, *_), finals = run_group(
            self.rnn,
            [self.layer],
            x,
            [list(states)] if states else None,
            return_sequences=self.return_sequences,
            steps=None if mask is None else Steps.of_mask(mask),
            traceable=True,
        )
        y = y.transpose(0, 1) if self.time_major and self.return_sequences else y
        if not self.return_state:
            return y
        assert finals is not None  # masked layers returning states run the explicit loop
        return (y, *finals[0])


__all__ = ["Recurrent"]
