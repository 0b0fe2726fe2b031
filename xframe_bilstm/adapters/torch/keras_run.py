"""Run a canonical layer group on its torch module and return what Keras returns.

The one recurrence with Keras semantics in torch: the layer port
(:class:`~xframe_bilstm.adapters.torch.module.KerasRecurrent`) and the whole-model port
(:class:`~xframe_bilstm.models.recurrent.Recurrent`) both run their layers here.

- Without a mask the module runs on ``x`` as it is (a ``go_backwards`` layer on ``x``
  reversed in time, its outputs left in processing order, as in Keras).
- With a mask (B, T) of any pattern it is exact for Keras's generic loop: masked steps
  leave the states alone; each row's valid steps are moved to its front in order (see
  :class:`~xframe_bilstm.adapters.torch.steps.Steps`), every direction runs on them, and
  the outputs are put back in place. Masked steps then output the previous output (plain
  layers), zeros (``zero_output_for_mask``, and a ``Bidirectional`` returning sequences),
  and a layer returning one step returns its last.
- Under a mask, native modules run on packed sequences, every layer of the group in one
  call, which gives the final states at each row's last valid step; rows need a valid
  step. ``traceable=True`` runs them one direction at a time instead: no packed sequences
  and no data-dependent shapes, so ``torch.export`` can trace the run, and rows may be
  empty; the final states are then not computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...canonical import RecurrentLayer
from .explicit import SUFFIXES, ExplicitRNN
from .steps import Steps, gather_time, reverse_time

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # h, or (h, c) for an LSTM


def run_group(
    module: nn.Module,
    group: Sequence[RecurrentLayer],
    x: torch.Tensor,
    states: Sequence[Sequence[torch.Tensor]] | None = None,
    *,
    return_sequences: bool,
    steps: Steps | None = None,
    traceable: bool = False,
) -> tuple[tuple[torch.Tensor, ...], list[list[torch.Tensor]] | None]:
    """What the last layer of ``group`` returns in Keras, and every layer's final states.

    Args:
        module: the native or explicit module holding the group's weights.
        group: the layers it runs, first to last (only their structure is read).
        x: batch-first input (B, T, D).
        states: each layer's initial states in Keras order; None for zeros.
        return_sequences: whether the last layer returns its sequence or its last output.
        steps: the mask of ``x``, if it has one.
        traceable: under a mask, run native modules without packed sequences.

    Returns:
        The output (forward and backward for ``merge_mode=None``), and per layer its final
        states in Keras order; None for a traceable masked run on a native module.
    """
    last = group[-1]
    lengths = None if steps is None else steps.lengths
    hx = _initial(group, x, states)
    if steps is not None:
        x = steps.compacted(x)
    if last.direction == "backward":
        x = reverse_time(x, lengths)  # go_backwards
    output, h_n = _run(module, len(group), x, hx, lengths, traceable)
    finals = None if h_n is None else _finals(group, h_n)
    if steps is None:
        return _unmasked_outputs(last, output, return_sequences), finals
    if last.direction == "backward":
        output = reverse_time(output, lengths)  # aligned with the (compacted) input
    directions = list(output.split(last.units, dim=-1))
    return _masked_outputs(last, directions, steps, return_sequences), finals


def _initial(
    group: Sequence[RecurrentLayer],
    x: torch.Tensor,
    states: Sequence[Sequence[torch.Tensor]] | None,
) -> Hidden:
    """Initial states as torch takes them: (L·D, B, H) per state kind."""
    last = group[-1]
    per_direction = last.num_states
    directions = 2 if last.direction == "bidirectional" else 1
    if states is None:
        h0 = x.new_zeros(len(group) * directions, x.shape[0], last.units)
        return (h0, h0) if per_direction == 2 else h0
    # Keras order per layer is [h, c] per direction.
    hx = [
        torch.stack(
            [
                layer_states[d * per_direction + k]
                for layer_states in states
                for d in range(directions)
            ]
        )
        for k in range(per_direction)
    ]
    return (hx[0], hx[1]) if per_direction == 2 else hx[0]


def _finals(group: Sequence[RecurrentLayer], h_n: Hidden) -> list[list[torch.Tensor]]:
    """torch's final states (L·D, B, H) per kind, as each layer's states in Keras order."""
    last = group[-1]
    directions = 2 if last.direction == "bidirectional" else 1
    by_kind = h_n if isinstance(h_n, tuple) else (h_n,)
    return [
        [by_kind[k][layer * directions + d] for d in range(directions) for k in range(len(by_kind))]
        for layer in range(len(group))
    ]


def _run(
    module: nn.Module,
    layers: int,
    x: torch.Tensor,
    hx: Hidden,
    lengths: torch.Tensor | None,
    traceable: bool,
) -> tuple[torch.Tensor, Hidden | None]:
    """The module's output (B, T, D·H) and final states; the output past ``lengths`` is
    zeros, or anything where ``traceable``."""
    if lengths is None:
        return module(x, hx)
    if isinstance(module, ExplicitRNN):
        return module(x, hx, lengths)
    if traceable:
        return _run_unpacked(module, layers, x, hx, lengths), None
    packed = nn.utils.rnn.pack_padded_sequence(
        x, lengths.cpu(), batch_first=True, enforce_sorted=False
    )
    output, h_n = module(packed, hx)
    padded, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
    return padded, h_n


def _run_unpacked(
    module: nn.Module, layers: int, x: torch.Tensor, hx: Hidden, lengths: torch.Tensor
) -> torch.Tensor:
    """A native module on right-padded rows, one layer and direction at a time.

    Each reverse direction runs forward over its rows' valid steps reversed in place, so
    every direction starts at its first valid step and the padding after never reaches a
    valid output.
    """
    h0, c0 = hx if isinstance(hx, tuple) else (hx, None)
    directions = 2 if module.bidirectional else 1
    for index in range(layers):
        outputs = []
        for d, suffix in enumerate(SUFFIXES[:directions]):
            state = slice(index * directions + d, index * directions + d + 1)
            sequence = reverse_time(x, lengths) if suffix else x
            cell = None if c0 is None else c0[state]
            output = _native_direction(module, sequence, f"l{index}{suffix}", h0[state], cell)
            outputs.append(reverse_time(output, lengths) if suffix else output)
        x = torch.cat(outputs, dim=-1)
    return x


def _native_direction(
    module: nn.Module, x: torch.Tensor, name: str, h0: torch.Tensor, c0: torch.Tensor | None
) -> torch.Tensor:
    """One direction of one layer (parameters ``*_{name}``) run forward over ``x``."""
    params = [
        getattr(module, f"{kind}_{name}")
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        if hasattr(module, f"{kind}_{name}")
    ]
    options = (params, len(params) == 4, 1, 0.0, False, False, True)
    if c0 is not None:  # an LSTM
        return torch.lstm(x, (h0, c0), *options)[0]
    if isinstance(module, nn.GRU):
        return torch.gru(x, h0, *options)[0]
    run = torch.rnn_relu if module.nonlinearity == "relu" else torch.rnn_tanh
    return run(x, h0, *options)[0]


def _merge(
    mode: str | None, forward: torch.Tensor, backward: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    if mode == "concat":
        return (torch.cat([forward, backward], dim=-1),)
    if mode == "sum":
        return (forward + backward,)
    if mode == "mul":
        return (forward * backward,)
    if mode == "ave":
        return ((forward + backward) / 2,)
    return (forward, backward)


def _unmasked_outputs(
    layer: RecurrentLayer, output: torch.Tensor, return_sequences: bool
) -> tuple[torch.Tensor, ...]:
    if layer.direction != "bidirectional":
        return (output if return_sequences else output[:, -1],)
    forward, backward = output[..., : layer.units], output[..., layer.units :]
    if not return_sequences:  # each direction's final output
        forward, backward = forward[:, -1], backward[:, 0]
    return _merge(layer.merge_mode, forward, backward)


def _masked_outputs(
    layer: RecurrentLayer, directions: list[torch.Tensor], steps: Steps, return_sequences: bool
) -> tuple[torch.Tensor, ...]:
    """Keras's outputs, from each direction's outputs over the compacted valid steps."""
    mask, counts, lengths = steps.valid, steps.counts, steps.lengths
    if layer.direction == "bidirectional":
        forward, backward = directions
        if return_sequences:  # Keras zeroes masked steps of both halves here
            valid = mask[:, :, None]
            if steps.destination is not None:  # right padding: valid steps are in place
                forward, backward = (gather_time(y, counts - 1) for y in (forward, backward))
            forward = torch.where(valid, forward, 0.0)
            backward = torch.where(valid, backward, 0.0)
        else:  # the final states: after the last valid step, and after the first
            started = (lengths > 0)[:, None]
            last = gather_time(forward, (lengths - 1)[:, None])[:, 0]
            forward = torch.where(started, last, 0.0)
            backward = torch.where(started, backward[:, 0], 0.0)
        return _merge(layer.merge_mode, forward, backward)
    (output,) = directions
    if layer.direction == "forward":
        # A masked step repeats the previous output (zeros before the first valid one).
        keep = mask if layer.zero_masked_outputs else counts > 0
        sequence = torch.where(keep[:, :, None], gather_time(output, counts - 1), 0.0)
    else:
        # Read from the end, a masked step repeats the output of the next valid step.
        if layer.zero_masked_outputs:
            keep, index = mask, counts - 1
        else:
            keep = mask | (counts < lengths[:, None])
            index = torch.where(mask, counts - 1, counts)
        sequence = torch.where(keep[:, :, None], gather_time(output, index), 0.0).flip(1)
    return (sequence if return_sequences else sequence[:, -1],)
