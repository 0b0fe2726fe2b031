"""One Keras recurrent layer as a torch module, with Keras's mask semantics for any mask.

Rules of this module:

- The weights live in one native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (``rnn``), or in an
  :class:`~xframe_bilstm.adapters.torch.ExplicitRNN` where the native modules cannot compute
  the cell exactly (Keras 2's hard sigmoid, GRU ``reset_after=False``...), built and filled
  by the same code as :func:`~xframe_bilstm.keras_to_torch`. No canonical copy is kept.
- Without a mask the module runs as Keras does on unmasked input.
- With a mask (B, T) of any pattern (right or left padding, holes, empty rows) it is exact
  for Keras's generic loop: masked steps leave the states alone; each row's valid steps are
  moved to the front in order (a stable compaction), every direction runs on them, and the
  outputs are put back in place. Masked steps then output the previous output (plain layers),
  zeros (``zero_output_for_mask``, and a ``Bidirectional`` returning sequences), and a layer
  returning one step returns its last. A ``go_backwards`` layer's outputs stay in processing
  order, as in Keras.
- No packed sequences and no data-dependent shapes, so ``torch.export`` can trace it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..adapters.torch import ExplicitRNN, load_layer, make_module, reverse_time, torch_dtype
from ..canonical import RecurrentLayer


def compact(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(destination, counts, lengths) that move each row's valid steps to its front.

    ``counts[b, t]`` is the number of valid steps up to and including ``t``; valid step
    ``t`` goes to ``counts - 1``, masked steps after all valid ones, in order.

    Example:
        >>> dest, counts, lengths = compact(torch.tensor([[False, True, False, True]]))
        >>> dest.tolist(), lengths.tolist()
        ([[2, 0, 3, 1]], [2])
    """
    counts = mask.long().cumsum(1)
    lengths = counts[:, -1]
    steps = torch.arange(mask.shape[1], device=mask.device)[None, :]
    destination = torch.where(mask, counts - 1, lengths[:, None] + steps - counts)
    return destination, counts, lengths


def _at(sequence: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``sequence[b, index[b, t]]`` with ``index`` clamped into range (B, T, F)."""
    index = index.clamp(0, sequence.shape[1] - 1)
    return sequence.gather(1, index[:, :, None].expand(-1, -1, sequence.shape[2]))


def _merge(mode: str, forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    if mode == "concat":
        return torch.cat([forward, backward], dim=-1)
    if mode == "sum":
        return forward + backward
    if mode == "mul":
        return forward * backward
    return (forward + backward) / 2


class Recurrent(nn.Module):
    """A Keras ``LSTM``/``GRU``/``SimpleRNN`` or ``Bidirectional`` of one, in torch.

    ``forward(x, mask=None)`` takes batch-first ``x`` (B, T, D) and an optional boolean
    Keras mask (B, T), and returns the layer's one output: the sequence (B, T, ·) with
    ``return_sequences`` or the last output (B, ·). ``time_major`` layers (Keras 2) read
    and return time-first tensors, as they did in Keras.

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
        self, layer: RecurrentLayer, *, return_sequences: bool, time_major: bool = False
    ) -> None:
        super().__init__()
        self.cell, self.units = layer.cell, layer.units
        self.direction, self.merge_mode = layer.direction, layer.merge_mode or "concat"
        self.zero_masked_outputs = layer.zero_masked_outputs
        self.return_sequences, self.time_major = return_sequences, time_major
        dtype = torch_dtype(layer.weights[0].kernel.dtype)
        self.rnn = make_module([layer], dtype)
        with torch.no_grad():
            load_layer(self.rnn, 0, layer)

    def extra_repr(self) -> str:
        flags = [f"direction={self.direction!r}", f"return_sequences={self.return_sequences}"]
        if self.direction == "bidirectional":
            flags.append(f"merge_mode={self.merge_mode!r}")
        if self.time_major:
            flags.append("time_major=True")
        return ", ".join(flags)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.time_major:  # Keras 2 read axis 0 as time: run batch-first, then turn back
            x = x.transpose(0, 1)
        y = self._unmasked(x) if mask is None else self._masked(x, mask)
        return y.transpose(0, 1) if self.time_major and self.return_sequences else y

    def _initial(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        directions = 2 if self.direction == "bidirectional" else 1
        h0 = x.new_zeros(directions, x.shape[0], self.units)
        return (h0, h0) if self.cell == "lstm" else h0

    def _unmasked(self, x: torch.Tensor) -> torch.Tensor:
        if self.direction == "backward":
            x = x.flip(1)  # go_backwards: outputs stay in processing order
        output, _ = self.rnn(x, self._initial(x))
        if self.direction != "bidirectional":
            return output if self.return_sequences else output[:, -1]
        forward, backward = output[..., : self.units], output[..., self.units :]
        if not self.return_sequences:  # each direction's final output
            forward, backward = forward[:, -1], backward[:, 0]
        return _merge(self.merge_mode, forward, backward)

    def _directions(self, x: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Each direction's outputs over the valid prefix of ``x``, aligned with input time."""
        if isinstance(self.rnn, ExplicitRNN):
            if self.direction == "backward":
                output, _ = self.rnn(reverse_time(x, lengths), self._initial(x), lengths)
                return [reverse_time(output, lengths)]
            output, _ = self.rnn(x, self._initial(x), lengths)
            return list(output.split(self.units, dim=-1))
        suffixes = ("", "_reverse") if self.direction == "bidirectional" else ("",)
        outputs = []
        for suffix in suffixes:
            backward = bool(suffix) or self.direction == "backward"
            sequence = reverse_time(x, lengths) if backward else x
            output = self._native_direction(sequence, suffix)
            outputs.append(reverse_time(output, lengths) if backward else output)
        return outputs

    def _native_direction(self, x: torch.Tensor, suffix: str) -> torch.Tensor:
        """One direction of the native module, run forward over ``x`` from its first step."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        params = [
            getattr(self.rnn, f"{name}_l0{suffix}")
            for name in names
            if hasattr(self.rnn, f"{name}_l0{suffix}")
        ]
        has_bias = len(params) == 4
        h0 = x.new_zeros(1, x.shape[0], self.units)
        if self.cell == "lstm":
            output = torch.lstm(x, (h0, h0), params, has_bias, 1, 0.0, False, False, True)[0]
        elif self.cell == "gru":
            output = torch.gru(x, h0, params, has_bias, 1, 0.0, False, False, True)[0]
        else:
            run = torch.rnn_relu if self.rnn.nonlinearity == "relu" else torch.rnn_tanh
            output = run(x, h0, params, has_bias, 1, 0.0, False, False, True)[0]
        return output

    def _masked(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        destination, counts, lengths = compact(mask)
        packed = torch.zeros_like(x).scatter(1, destination[:, :, None].expand_as(x), x)
        directions = self._directions(packed, lengths)
        valid = mask[:, :, None]
        if self.direction == "bidirectional":
            forward, backward = directions
            if self.return_sequences:  # Keras zeroes masked steps of both halves here
                forward = torch.where(valid, _at(forward, counts - 1), 0.0)
                backward = torch.where(valid, _at(backward, counts - 1), 0.0)
            else:  # the final states: after the last valid step, and after the first
                started = (lengths > 0)[:, None]
                forward = torch.where(started, _at(forward, (lengths - 1)[:, None])[:, 0], 0.0)
                backward = torch.where(started, backward[:, 0], 0.0)
            return _merge(self.merge_mode, forward, backward)
        (output,) = directions
        if self.direction == "forward":
            # A masked step repeats the previous output (zeros before the first valid one).
            keep = mask if self.zero_masked_outputs else counts > 0
            sequence = torch.where(keep[:, :, None], _at(output, counts - 1), 0.0)
        else:
            # Read from the end, a masked step repeats the output of the next valid step.
            if self.zero_masked_outputs:
                keep, index = mask, counts - 1
            else:
                keep = mask | (counts < lengths[:, None])
                index = torch.where(mask, counts - 1, counts)
            sequence = torch.where(keep[:, :, None], _at(output, index), 0.0).flip(1)
        return sequence if self.return_sequences else sequence[:, -1]


__all__ = ["Recurrent", "compact"]
