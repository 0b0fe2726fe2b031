"""The torch module with a Keras layer's (or stack's) interface, and conversions both ways."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ...canonical import (
    DirectionWeights,
    RecurrentLayer,
    RecurrentStack,
    initial_state_count,
    layer_state_names,
    layer_structure,
)
from ...errors import UnsupportedFeatureError, WeightShapeError
from ...gates import CANONICAL_ORDER
from ...masks import check_lengths
from .keras_run import run_group
from .steps import Steps
from .tensors import numpy_to_tensor, torch_dtype
from .weights import NATIVE, is_native, load_layer, make_module, read_layer


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


class KerasRecurrent(nn.Module):
    """A PyTorch module that computes what a Keras recurrent layer or stack computes.

    ``rnns`` holds the underlying modules: native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (one per
    run of layers they can fuse, with ``num_layers`` > 1) or
    :class:`~xframe_bilstm.adapters.torch.explicit.ExplicitRNN`.
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
        self.groups = [[layer_structure(layer) for layer in group] for group in groups]
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
        steps = None if lengths is None else _right_padding(lengths, x)
        if initial_state is None and self.stateful:
            initial_state = self._carried
        states = self._states(initial_state)
        sequence = x
        finals: list[list[torch.Tensor]] = []  # every layer's final states, in Keras order
        for group_index, (module, group) in enumerate(zip(self.rnns, self.groups)):
            outputs, group_finals = run_group(
                module,
                group,
                sequence,
                None if states is None else states[len(finals) : len(finals) + len(group)],
                return_sequences=self.return_sequences or group_index < len(self.groups) - 1,
                steps=steps,
            )
            assert group_finals is not None  # runs that are not traceable have them
            finals.extend(group_finals)
            sequence = outputs[0]
        if self.stateful:
            self._carried = [state.detach() for layer in finals for state in layer]
            self.batch_size = int(x.shape[0])
        result = outputs + (tuple(finals[-1]) if self.return_state else ())
        return result[0] if len(result) == 1 else result

    def _states(
        self, initial_state: Sequence[torch.Tensor] | None
    ) -> list[list[torch.Tensor]] | None:
        """Initial states per layer, in Keras order (None: zeros)."""
        if initial_state is None:
            return None
        if len(initial_state) != self.state_count:
            raise WeightShapeError(
                f"initial_state: expected {self.state_count} tensors (every layer's states in "
                f"Keras order), got {len(initial_state)}"
            )
        flat, per_layer = list(initial_state), []
        for layer in (layer for group in self.groups for layer in group):
            count = len(layer_state_names(layer))
            per_layer.append(flat[:count])
            flat = flat[count:]
        return per_layer

    def to_canonical(self, *, borrow: bool = False) -> RecurrentStack:
        """The canonical form of this module's current parameters (``borrow``: see
        :func:`torch_to_canonical`)."""
        layers = []
        for module, group in zip(self.rnns, self.groups):
            for index, layer in enumerate(group):
                layers.append(read_layer(module, index, layer, borrow=borrow))
        return RecurrentStack(
            tuple(layers),
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            stateful=self.stateful,
        )


def _right_padding(lengths: torch.Tensor | Sequence[int], x: torch.Tensor) -> Steps:
    values = torch.as_tensor(lengths)
    if not torch.compiler.is_exporting():  # an export's tensors hold no values to check
        check_lengths(values.cpu().numpy(), x.shape[0], x.shape[1])
    return Steps.of_lengths(values.to(device=x.device, dtype=torch.long), x.shape[1])


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


def torch_to_canonical(module: nn.Module, *, borrow: bool = False) -> RecurrentStack:
    """The canonical form of an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` or :class:`KerasRecurrent`.

    The stack owns a copy of the weights. With ``borrow=True`` its arrays may instead be
    read-only views of the module's parameters, which change when the parameters do: for a
    conversion that copies them into their destination at once (``torch_to_keras`` does).

    A native module becomes ``num_layers`` layers (bidirectional ones with
    ``merge_mode="concat"``, which is PyTorch's feature layout) that return sequences;
    ``bias_ih`` and ``bias_hh`` are both kept (the canonical ``"split"`` bias layout).

    Example:
        >>> stack = torch_to_canonical(torch.nn.GRU(3, 2, num_layers=2, bidirectional=True))
        >>> [(layer.cell, layer.input_size, layer.direction) for layer in stack.layers]
        [('gru', 3, 'bidirectional'), ('gru', 4, 'bidirectional')]
    """
    if isinstance(module, KerasRecurrent):
        return module.to_canonical(borrow=borrow)
    cell = next((name for name, kind in NATIVE.items() if type(module) is kind), None)
    if isinstance(module, torch.jit.ScriptModule):  # compiled: no parameters by meaning
        raise UnsupportedFeatureError(
            f"{module.original_name} is a TorchScript module (torch.jit.script or "
            "torch.jit.load); convert the nn.Module it was scripted from"
        )
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
        layers.append(read_layer(module, index, template, borrow=borrow))
    return RecurrentStack(tuple(layers))


def _placeholder(cell: str, input_size: int, units: int) -> DirectionWeights:
    """Weights of the right shapes that take no memory (read-only broadcast zeros)."""
    width = len(CANONICAL_ORDER[cell]) * units
    zero = np.zeros((), "float32")
    return DirectionWeights(
        np.broadcast_to(zero, (input_size, width)), np.broadcast_to(zero, (units, width))
    )


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
