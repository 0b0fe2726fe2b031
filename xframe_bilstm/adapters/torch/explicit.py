"""Recurrent cells the native torch modules cannot run, as an exact explicit loop."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ...gates import CANONICAL_ORDER
from .steps import reverse_time, valid_steps

TORCH_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid_keras3": F.hardsigmoid,
    "hard_sigmoid_keras2": lambda x: torch.clamp(0.2 * x + 0.5, 0.0, 1.0),
    "relu": torch.relu,
    "linear": lambda x: x,
    "softsign": F.softsign,
    # threshold=inf: the exact log(1 + e^x), not torch's linear shortcut above 20.
    "softplus": lambda x: F.softplus(x, threshold=float("inf")),
    "elu": F.elu,
    "selu": F.selu,
    "silu": F.silu,
    "exponential": torch.exp,
    "relu6": F.relu6,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),  # Keras's default slope, not torch's
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "hard_silu": F.hardswish,
    "mish": F.mish,
    "hard_tanh": F.hardtanh,
    "log_sigmoid": F.logsigmoid,
    "celu": F.celu,
    "tanh_shrink": F.tanhshrink,
    "soft_shrink": lambda x: F.softshrink(x, 0.5),
    "hard_shrink": lambda x: F.hardshrink(x, 0.5),
    "squareplus": lambda x: (x + torch.sqrt(x * x + 4.0)) / 2.0,
    "log_softmax": lambda x: F.log_softmax(x, dim=-1),
}

SUFFIXES = ("", "_reverse")  # the parameter names of each direction


class ExplicitRNN(nn.Module):
    """One recurrent layer as an explicit loop, for cells the native modules cannot run.

    Parameters have the native names, orientation and gate order (``weight_ih_l0``
    (G·H, D), ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ``*_reverse``), and
    ``forward`` has ``nn.LSTM``'s batch-first signature, so it can stand in for one.
    GRU with ``reset_after=False`` has no ``bias_hh``: its recurrent product sits after the
    reset gate, where Keras has no bias.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        *,
        bidirectional: bool,
        bias: bool,
        activation: str,
        recurrent_activation: str | None,
        reset_after: bool | None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.cell, self.hidden_size = cell, hidden_size
        self.bidirectional, self.reset_after = bidirectional, reset_after
        self.activation, self.recurrent_activation = activation, recurrent_activation
        gates = len(CANONICAL_ORDER[cell]) * hidden_size

        def parameter(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.zeros(*shape, dtype=dtype))

        for suffix in SUFFIXES[: 2 if bidirectional else 1]:
            self.register_parameter(f"weight_ih_l0{suffix}", parameter(gates, input_size))
            self.register_parameter(f"weight_hh_l0{suffix}", parameter(gates, hidden_size))
            if bias:
                self.register_parameter(f"bias_ih_l0{suffix}", parameter(gates))
                if not (cell == "gru" and not reset_after):
                    self.register_parameter(f"bias_hh_l0{suffix}", parameter(gates))

    def forward(
        self,
        x: torch.Tensor,
        hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """Run as ``nn.LSTM`` would on batch-first ``x``, or on a packed sequence of ``lengths``.

        With ``lengths``, steps past each row's length leave the states alone and output
        zeros, and the reverse direction starts at each row's last valid step.
        """
        h0, c0 = hx if isinstance(hx, tuple) else (hx, None)
        valid = None if lengths is None else valid_steps(lengths, x.shape[1])
        outputs, finals_h, finals_c = [], [], []
        for index, suffix in enumerate(SUFFIXES[: 2 if self.bidirectional else 1]):
            c = h0.new_zeros(0) if c0 is None else c0[index]  # only LSTMs have a cell state
            sequence = reverse_time(x, lengths) if suffix else x
            y, h, c = self._run(sequence, h0[index], c, suffix, valid)
            outputs.append(reverse_time(y, lengths) if suffix else y)  # time-aligned
            finals_h.append(h)
            finals_c.append(c)
        output = torch.cat(outputs, dim=-1)
        h_n = torch.stack(finals_h)
        return output, ((h_n, torch.stack(finals_c)) if self.cell == "lstm" else h_n)

    def _run(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        suffix: str,
        valid: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        act = TORCH_ACTIVATIONS[self.activation]
        gate = TORCH_ACTIVATIONS[self.recurrent_activation or "linear"]
        w_hh = getattr(self, f"weight_hh_l0{suffix}")
        b_ih = getattr(self, f"bias_ih_l0{suffix}", None)
        b_hh = getattr(self, f"bias_hh_l0{suffix}", None)
        # (B, T, G·H): the input projection of every step at once.
        projected = F.linear(x, getattr(self, f"weight_ih_l0{suffix}"), b_ih)
        outputs = []
        for t in range(x.shape[1]):
            z = projected[:, t]
            if self.cell == "lstm":
                zi, zf, zg, zo = (z + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
                new_c = gate(zf) * c + gate(zi) * act(zg)
                new_h = gate(zo) * act(new_c)
            elif self.cell == "gru":
                new_c = c
                xr, xz, xn = z.chunk(3, dim=-1)
                if self.reset_after:
                    hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
                    reset, update = gate(xr + hr), gate(xz + hz)
                    candidate = act(xn + reset * hn)
                else:
                    w_r, w_z, w_n = w_hh.chunk(3, dim=0)
                    reset, update = gate(xr + F.linear(h, w_r)), gate(xz + F.linear(h, w_z))
                    candidate = act(xn + F.linear(reset * h, w_n))
                new_h = update * h + (1 - update) * candidate
            else:
                new_c = c
                new_h = act(z + F.linear(h, w_hh, b_hh))
            if valid is None:
                h, c = new_h, new_c
                outputs.append(h)
            else:  # a padded step keeps the states and outputs zeros, as packed sequences do
                keep = valid[:, t, None]
                h = torch.where(keep, new_h, h)
                c = torch.where(keep, new_c, c) if self.cell == "lstm" else c
                outputs.append(torch.where(keep, h, torch.zeros_like(h)))
        return torch.stack(outputs, dim=1), h, c
