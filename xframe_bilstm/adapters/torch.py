"""PyTorch adapter: canonical stacks to and from ``torch.nn`` modules.

Rules of this module:

- It imports torch at the top, so only import it once torch is known to be wanted
  (``xframe_bilstm`` itself never imports it; the public converters call
  :func:`xframe_bilstm._imports.require` first).
- Whatever ``nn.LSTM``/``nn.GRU``/``nn.RNN`` compute exactly runs on them, with their native
  parameter names and gate orders (LSTM ``ifgo``, GRU ``rzn``). Everything else (other
  activations, GRU ``reset_after=False``) runs on :class:`ExplicitRNN`, an exact loop with the
  same parameter names. Nothing is approximated.
- :class:`KerasRecurrent` wraps them so that ``forward`` takes and returns what the Keras
  layer takes and returns: batch-first input, initial states in Keras order, outputs merged
  and flipped as Keras does.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..canonical import (
    DirectionWeights,
    RecurrentLayer,
    RecurrentStack,
    initial_state_count,
    layer_state_names,
)
from ..errors import UnsupportedFeatureError, WeightShapeError
from ..gates import CANONICAL_ORDER, TORCH_ORDER, reorder_gates
from ..masks import check_lengths
from ..state_dicts import recurrent_entries

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
}

_NATIVE = {"lstm": nn.LSTM, "gru": nn.GRU, "simple_rnn": nn.RNN}
_SUFFIXES = ("", "_reverse")


def _bfloat16_numpy() -> np.dtype:
    """numpy's bfloat16 (``ml_dtypes``, which TensorFlow, Keras and JAX depend on)."""
    try:
        import ml_dtypes
    except ImportError as error:
        raise UnsupportedFeatureError(
            "bfloat16 weights or inputs need the ml_dtypes package for a numpy bfloat16 "
            "(pip install ml_dtypes); or convert the module to float32 first "
            "(module.float())"
        ) from error
    return np.dtype(ml_dtypes.bfloat16)


def torch_dtype(dtype: Any) -> torch.dtype:
    """The torch dtype of a numpy float dtype, ``ml_dtypes.bfloat16`` included.

    Example:
        >>> torch_dtype(np.float16)
        torch.float16
    """
    if np.dtype(dtype).name == "bfloat16":
        return torch.bfloat16
    return torch.from_numpy(np.zeros(0, dtype)).dtype


def numpy_to_tensor(array: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A tensor of a numpy array (bfloat16 arrays bit for bit), cast to ``dtype`` if given.

    Read-only arrays are copied rather than shared: torch cannot protect them.
    """
    array = np.asarray(array)
    if array.dtype.name == "bfloat16":
        # torch reads no ml_dtypes array: move the same 16 bits through int16.
        tensor = torch.from_numpy(np.ascontiguousarray(array).view(np.int16).copy())
        tensor = tensor.view(torch.bfloat16)
    elif array.flags.writeable:
        tensor = torch.as_tensor(array)
    else:
        tensor = torch.from_numpy(array.copy())
    return tensor if dtype is None else tensor.to(dtype)


def tensor_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A numpy array of a tensor on any device; bfloat16 becomes ``ml_dtypes.bfloat16``.

    Example:
        >>> tensor_to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype.name
        'bfloat16'
    """
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(_bfloat16_numpy())
    return tensor.numpy()


def is_native(layer: RecurrentLayer) -> bool:
    """Whether ``nn.LSTM``/``nn.GRU``/``nn.RNN`` compute this layer's cell exactly."""
    if layer.cell == "simple_rnn":
        return layer.activation in ("tanh", "relu")
    if layer.cell == "gru" and not layer.reset_after:
        return False
    return layer.activation == "tanh" and layer.recurrent_activation == "sigmoid"


def _fusable(group: list[RecurrentLayer], layer: RecurrentLayer) -> bool:
    """Whether ``layer`` can run as one more layer of the torch module running ``group``."""
    first, below = group[0], group[-1]
    return (
        is_native(layer)
        and layer.direction in ("forward", "bidirectional")
        and (below.direction == "forward" or below.merge_mode == "concat")
        and (layer.cell, layer.units, layer.direction, layer.use_bias, layer.activation)
        == (first.cell, first.units, first.direction, first.use_bias, first.activation)
    )


def _group_layers(stack: RecurrentStack) -> list[list[RecurrentLayer]]:
    """Consecutive layers that one multi-layer torch module represents exactly."""
    groups: list[list[RecurrentLayer]] = []
    for layer in stack.layers:
        if groups and is_native(groups[-1][0]) and _fusable(groups[-1], layer):
            groups[-1].append(layer)
        else:
            groups.append([layer])
    return groups


def valid_steps(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) booleans: True where step ``t`` is before row ``b``'s length."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, t]]`` for (B, T, F) ``x`` and (B, T) ``index``."""
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


def reverse_time(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each row's valid steps in time, leaving its padding where it is."""
    if lengths is None:
        return x.flip(1)
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    last = lengths[:, None] - 1
    return _gather_time(x, torch.where(steps <= last, last - steps, steps))


def _carry_last_valid(y: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Repeat each row's last valid output over its padding (Keras's plain masked layers)."""
    steps = torch.arange(y.shape[1], device=y.device)[None, :]
    return _gather_time(y, torch.minimum(steps, lengths[:, None] - 1))


def _align_right(y: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Move each row's valid prefix to the end, zeros before it.

    Keras's ``go_backwards`` reads a right-padded row from its end, so it meets the padding
    first (zero outputs) and its valid outputs fill the last ``length`` steps.
    """
    steps = torch.arange(y.shape[1], device=y.device)[None, :]
    source = steps - (y.shape[1] - lengths[:, None])
    moved = _gather_time(y, source.clamp(min=0))
    return torch.where((source >= 0)[:, :, None], moved, torch.zeros_like(moved))


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

        for suffix in _SUFFIXES[: 2 if bidirectional else 1]:
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
        for index, suffix in enumerate(_SUFFIXES[: 2 if self.bidirectional else 1]):
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


class KerasRecurrent(nn.Module):
    """A PyTorch module that computes what a Keras recurrent layer or stack computes.

    ``rnns`` holds the underlying modules: native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (one per
    run of layers they can fuse, with ``num_layers`` > 1) or :class:`ExplicitRNN`.
    ``forward(x, initial_state=None)`` takes batch-first ``x`` (B, T, D) and optional initial
    states in Keras order (every layer's, layer after layer), and returns what Keras returns:
    one tensor, or a tuple (output(s), then the last layer's states when ``return_state``).
    A ``stateful`` module feeds each call's final states into the next; ``reset_states()``
    sets them back to zeros. ``batch_size`` is the batch its states are carried for (from
    the states it was given or its last call; None until then), kept across resets as a
    stateful Keras layer keeps its own.
    """

    def __init__(self, stack: RecurrentStack) -> None:
        super().__init__()
        groups = _group_layers(stack)
        dtype = torch_dtype(stack.layers[0].weights[0].kernel.dtype)
        self.rnns = nn.ModuleList(make_module(group, dtype) for group in groups)
        with torch.no_grad():
            for module, group in zip(self.rnns, groups):
                for index, layer in enumerate(group):
                    load_layer(module, index, layer)
        # The parameters now hold the weights: keep only the layers' structure.
        self.groups = [[_structure(layer) for layer in group] for group in groups]
        self.return_sequences = stack.return_sequences
        self.return_state = stack.return_state
        self.stateful = stack.stateful
        self.state_count = initial_state_count(stack)
        self._carried: list[torch.Tensor] | None = None
        self.batch_size: int | None = None

    def reset_states(self) -> None:
        """Forget the states carried between calls (stateful modules start from zeros)."""
        self._carried = None

    def carried_states(self) -> list[np.ndarray]:
        """Copies of the states carried into the next call, in Keras order (empty if none)."""
        if self._carried is None:
            return []
        return [state.detach().cpu().numpy().copy() for state in self._carried]

    def load_states(self, states: Sequence[np.ndarray | torch.Tensor]) -> None:
        """Carry ``states`` (every layer's, in Keras order) into the next call.

        For a stateful module taking over from a stateful Keras layer mid-sequence.
        """
        if len(states) != self.state_count:
            raise WeightShapeError(
                f"states: expected {self.state_count} arrays (every layer's states in Keras "
                f"order), got {len(states)}"
            )
        parameter = next(self.parameters())
        self._carried = [
            torch.as_tensor(state, dtype=parameter.dtype, device=parameter.device)
            for state in states
        ]
        if self._carried:
            self.batch_size = int(self._carried[0].shape[0])

    def forward(
        self,
        x: torch.Tensor,
        initial_state: Sequence[torch.Tensor] | None = None,
        lengths: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Run on batch-first ``x`` (B, T, D); ``lengths`` (B,) masks right padding as Keras does.

        With ``lengths``, padded steps keep the states; they output the last valid output in
        plain layers and zeros in bidirectional ones that return sequences, and final states
        are taken at each row's last valid step (Keras's mask semantics).
        """
        size = self.groups[0][0].input_size
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = f"dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise WeightShapeError(f"x: expected a floating-point tensor, got {got}")
        if x.dim() != 3 or x.shape[2] != size or x.shape[0] < 1 or x.shape[1] < 1:
            raise WeightShapeError(
                f"x: expected shape (batch >= 1, time >= 1, {size}), got {tuple(x.shape)}"
            )
        lengths = None if lengths is None else _check_lengths(lengths, x)
        if initial_state is None and self.stateful:
            initial_state = self._carried
        states = self._states(x, initial_state)
        sequence, finals = x, []
        for group_index, (module, group) in enumerate(zip(self.rnns, self.groups)):
            layer_states, states = states[: len(group)], states[len(group) :]
            is_last = group_index == len(self.groups) - 1
            outputs, group_finals = self._run_group(
                module,
                group,
                sequence,
                layer_states,
                self.return_sequences or not is_last,
                lengths,
            )
            finals.extend(group_finals)
            sequence = outputs[0]
        if self.stateful:
            self._carried = [state.detach() for layer in finals for state in layer]
            self.batch_size = int(x.shape[0])
        result = outputs + (tuple(finals[-1]) if self.return_state else ())
        return result[0] if len(result) == 1 else result

    def _states(
        self, x: torch.Tensor, initial_state: Sequence[torch.Tensor] | None
    ) -> list[list[torch.Tensor]]:
        """Initial states per layer, in Keras order."""
        layers = [layer for group in self.groups for layer in group]
        if initial_state is None:
            return [
                [x.new_zeros(x.shape[0], layer.units) for _ in layer_state_names(layer)]
                for layer in layers
            ]
        if len(initial_state) != self.state_count:
            raise WeightShapeError(
                f"initial_state: expected {self.state_count} tensors (every layer's states in "
                f"Keras order), got {len(initial_state)}"
            )
        flat, per_layer = list(initial_state), []
        for layer in layers:
            count = len(layer_state_names(layer))
            per_layer.append(flat[:count])
            flat = flat[count:]
        return per_layer

    @staticmethod
    def _run_group(
        module: nn.Module,
        group: list[RecurrentLayer],
        x: torch.Tensor,
        states: list[list[torch.Tensor]],
        return_sequences: bool,
        lengths: torch.Tensor | None,
    ) -> tuple[tuple[torch.Tensor, ...], list[list[torch.Tensor]]]:
        last = group[-1]
        per_direction, units = last.num_states, last.units
        directions = 2 if last.direction == "bidirectional" else 1
        # Keras order per layer is [h, c] per direction; torch wants (L·D, B, H) per state kind.
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
        if last.direction == "backward":
            x = reverse_time(x, lengths)  # go_backwards: outputs stay in processing order
        initial = (hx[0], hx[1]) if per_direction == 2 else hx[0]
        output, h_n = _run_module(module, x, initial, lengths)
        finals_by_kind = h_n if isinstance(h_n, tuple) else (h_n,)
        finals = [
            [
                finals_by_kind[k][layer * directions + d]
                for d in range(directions)
                for k in range(per_direction)
            ]
            for layer in range(len(group))
        ]
        last_finals = finals[-1]
        if not return_sequences:  # each direction's last output is its final h
            if directions == 1:
                last_output = last_finals[0]
                if lengths is not None and last.zero_masked_outputs and last.direction == "forward":
                    # Keras returns the last step's output: zero where that step is padding.
                    ended = (lengths == x.shape[1])[:, None]
                    last_output = torch.where(ended, last_output, torch.zeros_like(last_output))
                return (last_output,), finals
            return _merge(last.merge_mode, last_finals[0], last_finals[per_direction]), finals
        if lengths is not None and last.direction == "forward" and not last.zero_masked_outputs:
            output = _carry_last_valid(output, lengths)
        elif lengths is not None and last.direction == "backward":
            output = _align_right(output, lengths)
        if last.direction != "bidirectional":
            return (output,), finals
        return _merge(last.merge_mode, output[..., :units], output[..., units:]), finals

    def to_canonical(self) -> RecurrentStack:
        """The canonical form of this module's current parameters."""
        layers = []
        for module, group in zip(self.rnns, self.groups):
            for index, layer in enumerate(group):
                layers.append(_read_layer(module, index, layer))
        return RecurrentStack(
            tuple(layers),
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            stateful=self.stateful,
        )


def _check_lengths(lengths: torch.Tensor | Sequence[int], x: torch.Tensor) -> torch.Tensor:
    values = torch.as_tensor(lengths)
    check_lengths(values.cpu().numpy(), x.shape[0], x.shape[1])
    return values.to(device=x.device, dtype=torch.long)


def _run_module(
    module: nn.Module,
    x: torch.Tensor,
    hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    lengths: torch.Tensor | None,
) -> tuple[torch.Tensor, Any]:
    """Run a native or explicit module; with ``lengths``, as a packed sequence."""
    if lengths is None:
        return module(x, hx)
    if isinstance(module, ExplicitRNN):
        return module(x, hx, lengths)
    packed = nn.utils.rnn.pack_padded_sequence(
        x, lengths.cpu(), batch_first=True, enforce_sorted=False
    )
    output, h_n = module(packed, hx)
    padded, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
    return padded, h_n


def _structure(layer: RecurrentLayer) -> RecurrentLayer:
    """``layer`` with placeholder weights that take no memory (broadcast zeros)."""

    def placeholder(array: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.zeros((), array.dtype), array.shape)

    weights = tuple(
        DirectionWeights(
            placeholder(w.kernel),
            placeholder(w.recurrent_kernel),
            None if w.bias is None else placeholder(w.bias),
        )
        for w in layer.weights
    )
    return dataclasses.replace(layer, weights=weights)


def make_module(group: list[RecurrentLayer], dtype: torch.dtype) -> nn.Module:
    """An empty native module for ``group`` (layers it fuses) or an :class:`ExplicitRNN`."""
    first = group[0]
    bidirectional = first.direction == "bidirectional"
    if not is_native(first):
        return ExplicitRNN(
            first.cell,
            first.input_size,
            first.units,
            bidirectional=bidirectional,
            bias=first.use_bias,
            activation=first.activation,
            recurrent_activation=first.recurrent_activation,
            reset_after=first.reset_after,
            dtype=dtype,
        )
    options = {"nonlinearity": first.activation} if first.cell == "simple_rnn" else {}
    # Made on the meta device and given empty memory: the weights are overwritten right
    # away, so the random initialization would only cost time.
    module = _NATIVE[first.cell](
        first.input_size,
        first.units,
        num_layers=len(group),
        bias=first.use_bias,
        batch_first=True,
        bidirectional=bidirectional,
        device="meta",
        dtype=dtype,
        **options,
    )
    return module.to_empty(device="cpu")


def _to_torch_order(array: np.ndarray, cell: str) -> np.ndarray:
    return reorder_gates(array, CANONICAL_ORDER[cell], TORCH_ORDER[cell], axis=-1)


def _to_canonical_order(array: np.ndarray, cell: str) -> np.ndarray:
    return reorder_gates(array, TORCH_ORDER[cell], CANONICAL_ORDER[cell], axis=-1)


def load_layer(module: nn.Module, index: int, layer: RecurrentLayer) -> None:
    """Copy one canonical layer into layer ``index`` of a native or explicit module."""
    for suffix, weights in zip(_SUFFIXES, layer.weights):
        # Canonical (D, G·H) x-on-the-left becomes torch's (G·H, D) W-on-the-left.
        arrays = {
            "weight_ih": _to_torch_order(weights.kernel, layer.cell).T,
            "weight_hh": _to_torch_order(weights.recurrent_kernel, layer.cell).T,
        }
        if weights.input_bias is not None:
            arrays["bias_ih"] = _to_torch_order(weights.input_bias, layer.cell)
            if hasattr(module, f"bias_hh_l{index}{suffix}"):
                recurrent = weights.recurrent_bias
                arrays["bias_hh"] = (
                    np.zeros_like(arrays["bias_ih"])
                    if recurrent is None
                    else _to_torch_order(recurrent, layer.cell)
                )
        for name, array in arrays.items():
            parameter = getattr(module, f"{name}_l{index}{suffix}")
            with warnings.catch_warnings():
                # copy_ only reads the (read-only) canonical array: the warning does not apply.
                warnings.filterwarnings("ignore", "The given NumPy array is not writable")
                if array.dtype.name == "bfloat16":
                    parameter.copy_(numpy_to_tensor(array))
                else:
                    parameter.copy_(torch.from_numpy(array))


def _read_layer(module: nn.Module, index: int, template: RecurrentLayer) -> RecurrentLayer:
    """Layer ``index`` of a native or explicit module, as a canonical layer like ``template``."""

    def read(name: str, suffix: str) -> np.ndarray:
        return tensor_to_numpy(getattr(module, f"{name}_l{index}{suffix}"))

    def read_bias(name: str, suffix: str) -> np.ndarray | None:
        return read(name, suffix) if hasattr(module, f"{name}_l{index}{suffix}") else None

    weights = []
    for suffix in _SUFFIXES[: len(template.weights)]:
        bias_ih, bias_hh = read_bias("bias_ih", suffix), read_bias("bias_hh", suffix)
        bias = None
        if bias_ih is not None:
            bias = _to_canonical_order(
                bias_ih if bias_hh is None else np.stack([bias_ih, bias_hh]), template.cell
            )
        weights.append(
            DirectionWeights(
                _to_canonical_order(read("weight_ih", suffix).T, template.cell),
                _to_canonical_order(read("weight_hh", suffix).T, template.cell),
                bias,
            )
        )
    return RecurrentLayer(
        template.cell,
        template.input_size,
        template.units,
        tuple(weights),
        direction=template.direction,
        merge_mode=template.merge_mode,
        activation=template.activation,
        recurrent_activation=template.recurrent_activation,
        reset_after=template.reset_after,
        zero_masked_outputs=template.zero_masked_outputs,
    )


def canonical_to_torch(stack: RecurrentStack) -> KerasRecurrent:
    """Build a :class:`KerasRecurrent` module holding ``stack``'s weights exactly.

    Example:
        >>> w = DirectionWeights(np.ones((1, 1)), np.zeros((1, 1)))
        >>> layer = RecurrentLayer("simple_rnn", 1, 1, (w,), recurrent_activation=None)
        >>> module = canonical_to_torch(RecurrentStack((layer,)))
        >>> type(module.rnns[0]).__name__, sorted(module.rnns[0].state_dict())
        ('RNN', ['weight_hh_l0', 'weight_ih_l0'])
    """
    return KerasRecurrent(stack)


def torch_to_canonical(module: nn.Module) -> RecurrentStack:
    """The canonical form of an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` or :class:`KerasRecurrent`.

    A native module becomes ``num_layers`` layers (bidirectional ones with
    ``merge_mode="concat"``, which is PyTorch's feature layout) that return sequences;
    ``bias_ih`` and ``bias_hh`` are both kept (the canonical ``"split"`` bias layout).

    Example:
        >>> stack = torch_to_canonical(torch.nn.GRU(3, 2, num_layers=2, bidirectional=True))
        >>> [(layer.cell, layer.input_size, layer.direction) for layer in stack.layers]
        [('gru', 3, 'bidirectional'), ('gru', 4, 'bidirectional')]
    """
    if isinstance(module, KerasRecurrent):
        return module.to_canonical()
    cell = next((name for name, kind in _NATIVE.items() if type(module) is kind), None)
    if cell is None or not isinstance(module, nn.RNNBase):
        raise UnsupportedFeatureError(
            f"{type(module).__name__} is not nn.LSTM, nn.GRU, nn.RNN or KerasRecurrent; "
            "only those convert"
        )
    if module.proj_size:
        raise UnsupportedFeatureError(
            f"nn.LSTM(proj_size={module.proj_size}) has a projection that Keras layers cannot "
            "express; convert a model without proj_size"
        )
    activation = getattr(module, "nonlinearity", "tanh")
    directions = 2 if module.bidirectional else 1
    layers = []
    for index in range(module.num_layers):
        input_size = module.input_size if index == 0 else directions * module.hidden_size
        template = RecurrentLayer(
            cell,
            input_size,
            module.hidden_size,
            tuple(_placeholder(cell, input_size, module.hidden_size) for _ in range(directions)),
            direction="bidirectional" if module.bidirectional else "forward",
            activation=activation,
            recurrent_activation=None if cell == "simple_rnn" else "sigmoid",
            reset_after=True if cell == "gru" else None,
        )
        layers.append(_read_layer(module, index, template))
    return RecurrentStack(tuple(layers))


def _placeholder(cell: str, input_size: int, units: int) -> DirectionWeights:
    width = len(CANONICAL_ORDER[cell]) * units
    return DirectionWeights(np.zeros((input_size, width)), np.zeros((units, width)))


def run_torch(
    module: nn.Module,
    x: np.ndarray,
    *,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Run a :class:`KerasRecurrent` on numpy input and return its outputs as numpy arrays."""
    parameter = next(module.parameters())
    dtype, device = parameter.dtype, parameter.device
    with torch.no_grad():
        inputs = numpy_to_tensor(x, dtype).to(device)
        states = (
            None
            if initial_states is None
            else [numpy_to_tensor(s, dtype).to(device) for s in initial_states]
        )
        masks = None if lengths is None else torch.as_tensor(np.asarray(lengths), device=device)
        result = module(inputs, states, masks)
    tensors = result if isinstance(result, tuple) else (result,)
    return tuple(
        t.detach().float().cpu().numpy()
        if t.dtype in (torch.float16, torch.bfloat16)
        else t.detach().cpu().numpy()
        for t in tensors
    )


def module_from_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    nonlinearity: str = "tanh",
    submodule: str | None = None,
) -> nn.RNNBase:
    """Rebuild the ``nn.LSTM``/``nn.GRU``/``nn.RNN`` a ``state_dict`` was saved from.

    The cell kind comes from the gate count (4 LSTM, 3 GRU, 1 RNN), the sizes from the
    shapes, ``num_layers``, ``bidirectional`` and ``bias`` from the names. A prefix before
    the native names (``rnn.`` or ``rnns.0.``) is dropped, and so is the ``module.`` that
    ``nn.DataParallel`` puts before every key. An RNN's ``nonlinearity`` is not in its
    weights: pass it.

    Every key must belong to that one module: a whole model's state_dict (an embedding, a
    classifier head, a CNN around the recurrent module) is refused with the keys that
    would be left out, unless ``submodule`` names the part to take (the keys under
    ``submodule + "."``).

    Example:
        >>> saved = torch.nn.GRU(3, 2, num_layers=2, bidirectional=True).state_dict()
        >>> module_from_state_dict({"encoder." + k: v for k, v in saved.items()})
        GRU(3, 2, num_layers=2, batch_first=True, bidirectional=True)
        >>> whole = {"emb.weight": torch.zeros(9, 3), **{"rnn." + k: v for k, v in saved.items()}}
        >>> module_from_state_dict(whole, submodule="rnn")
        GRU(3, 2, num_layers=2, batch_first=True, bidirectional=True)
    """
    entries = recurrent_entries(state_dict, submodule=submodule)
    if "weight_hr_l0" in entries:
        raise UnsupportedFeatureError(
            "state_dict has weight_hr_l0: an nn.LSTM with proj_size, which Keras layers cannot "
            "express"
        )
    w_ih, w_hh = entries["weight_ih_l0"], entries["weight_hh_l0"]
    hidden = int(w_hh.shape[1])
    gates = int(w_hh.shape[0]) // hidden
    kinds = {4: nn.LSTM, 3: nn.GRU, 1: nn.RNN}
    if gates not in kinds or gates * hidden != w_hh.shape[0]:
        raise WeightShapeError(
            f"state_dict: weight_hh_l0 has shape {tuple(w_hh.shape)}, which is not "
            "(G·H, H) for G = 4 (LSTM), 3 (GRU) or 1 (RNN)"
        )
    layers = sum(1 for key in entries if key.startswith("weight_ih_l") and "reverse" not in key)
    options = {"nonlinearity": nonlinearity} if gates == 1 else {}
    module = kinds[gates](
        int(w_ih.shape[1]),
        hidden,
        num_layers=layers,
        bias="bias_ih_l0" in entries,
        batch_first=True,
        bidirectional="weight_ih_l0_reverse" in entries,
        **options,
    )
    try:
        module.load_state_dict(entries, strict=True)
    except RuntimeError as error:
        raise WeightShapeError(f"state_dict does not fit {module}: {error}") from error
    return module.to(w_ih.dtype)
