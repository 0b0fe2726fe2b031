"""One ONNX ``LSTM``/``GRU``/``RNN`` node as an exact torch module, ``OnnxRecurrent``.

The node runs on a native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` where that computes it exactly
(default activations, no ``clip``, ``input_forget`` or peepholes, GRU
``linear_before_reset=1``), else on an exact loop of the ONNX equations, so an attribute that
changes the math is computed, never ignored. Every attribute is honoured: ``direction``,
``layout`` 0 and 1, ``sequence_lens``, initial states, activations with alpha and beta.

The classes are defined on first use (:func:`recurrent_classes`), so importing this module
imports no framework.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ..._imports import require
from ...errors import WeightShapeError
from ...gates import ONNX_ORDER, reorder_gates
from .direction_axis import BATCH_FIRST_DIRECTIONS, BATCH_MAJOR, SQUEEZED
from .nodes import (
    WEIGHT_SLOTS,
    RecurrentNodeSpec,
    RecurrentOptions,
    describe_node,
    read_recurrent_node,
    read_recurrent_options,
    runtime_weight_inputs,
    weight_shapes,
)
from .vocabulary import DEFAULT_ACTIVATIONS

_CLASSES: list[Any] = []
# W, R, B, P by their positions among a recurrent node's inputs.
WEIGHT_SLOT_ITEMS = tuple(WEIGHT_SLOTS.items())


def recurrent_classes() -> Any:
    """``OnnxRecurrent`` and ``reverse_valid``, defined on first use (they need torch)."""
    if not _CLASSES:
        _CLASSES.append(_define_recurrent_classes())
    return _CLASSES[0]


def _define_recurrent_classes() -> Any:
    torch = require("torch")
    from types import SimpleNamespace

    from torch import nn
    from torch.nn import functional as F

    from ...gates import TORCH_ORDER

    def activation(name: str, alpha: float, beta: float) -> Any:
        functions = {
            "Relu": torch.relu,
            "Tanh": torch.tanh,
            "Sigmoid": torch.sigmoid,
            "Affine": lambda v: alpha * v + beta,
            "LeakyRelu": lambda v: torch.where(v >= 0, v, alpha * v),
            "ThresholdedRelu": lambda v: torch.where(v > alpha, v, torch.zeros_like(v)),
            "ScaledTanh": lambda v: alpha * torch.tanh(beta * v),
            "HardSigmoid": lambda v: torch.clamp(alpha * v + beta, 0.0, 1.0),
            "Elu": lambda v: torch.where(v >= 0, v, alpha * torch.expm1(torch.clamp(v, max=0))),
            "Softsign": F.softsign,
            # log(1 + e^x) without overflow (onnxruntime's own overflows above ~88).
            "Softplus": lambda v: torch.logaddexp(v, torch.zeros_like(v)),
        }
        return functions[name]

    def reverse_valid(x: Any, lengths: Any) -> Any:
        """Reverse each row's valid steps of batch-first ``x``, padding left in place."""
        if lengths is None:
            return x.flip(1)
        steps = torch.arange(x.shape[1], device=x.device)[None, :]
        last = lengths[:, None] - 1
        index = torch.where(steps <= last, last - steps, steps)
        return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))

    class OnnxRecurrent(nn.Module):
        """One ONNX LSTM/GRU/RNN node; ``forward`` has the node's inputs and outputs."""

        def __init__(self, spec: RecurrentNodeSpec, dtype: Any) -> None:
            super().__init__()
            self._set_options(spec)
            self.native = self._native(spec, dtype)
            if self.native is None:
                as_parameter = lambda a: nn.Parameter(torch.tensor(a, dtype=dtype))  # noqa: E731
                self.w, self.r = as_parameter(spec.w), as_parameter(spec.r)
                gates = spec.w.shape[1]
                b = np.zeros((spec.directions, 2 * gates)) if spec.b is None else spec.b
                self.b = as_parameter(b)
                p = np.zeros((spec.directions, 3 * spec.hidden_size)) if spec.p is None else spec.p
                self.p = as_parameter(p)

        def _set_options(self, options: RecurrentOptions) -> None:
            self.cell, self.directions = options.cell, options.directions
            self.hidden, self.layout = options.hidden_size, options.layout
            self.reverse_only = options.direction == "reverse"
            self.y_form = ""  # Y as ONNX lays it out, unless the graph reads it otherwise
            self.activations, self.clip = options.activations, options.clip
            self.input_forget = options.input_forget
            self.linear_before_reset = options.linear_before_reset

        @staticmethod
        def _native(spec: RecurrentNodeSpec, dtype: Any) -> Any:
            names = {tuple(name for name, _, _ in slots) for slots in spec.activations}
            if spec.clip is not None or spec.input_forget or spec.p is not None:
                return None
            if spec.cell == "gru" and not spec.linear_before_reset:
                return None
            options: dict[str, Any] = {}
            if spec.cell == "simple_rnn":
                if names not in ({("Tanh",)}, {("Relu",)}):
                    return None
                options["nonlinearity"] = next(iter(names))[0].lower()
            elif names != {DEFAULT_ACTIVATIONS[spec.cell]}:
                return None
            kind = {"lstm": nn.LSTM, "gru": nn.GRU, "simple_rnn": nn.RNN}[spec.cell]
            module = kind(
                spec.input_size,
                spec.hidden_size,
                bias=spec.b is not None,
                bidirectional=spec.directions == 2,
                **options,
            ).to(dtype)
            source, target = ONNX_ORDER[spec.cell], TORCH_ORDER[spec.cell]
            with torch.no_grad():
                for d, suffix in enumerate(("", "_reverse")[: spec.directions]):
                    arrays = {
                        "weight_ih_l0": reorder_gates(spec.w[d], source, target, axis=0),
                        "weight_hh_l0": reorder_gates(spec.r[d], source, target, axis=0),
                    }
                    if spec.b is not None:
                        wb, rb = np.split(spec.b[d], 2)
                        arrays["bias_ih_l0"] = reorder_gates(wb, source, target)
                        arrays["bias_hh_l0"] = reorder_gates(rb, source, target)
                    for name, array in arrays.items():
                        getattr(module, name + suffix).copy_(torch.tensor(array))
            return module

        def forward(
            self,
            x: Any,
            lengths: Any = None,
            h0: Any = None,
            c0: Any = None,
            weights: tuple[Any, ...] = (),
        ) -> tuple[Any, Any, Any]:
            """The node's outputs Y, Y_h, Y_c; ``weights`` are the node's W, R, B and P inputs
            as tensors (None where constant), used by :class:`OnnxRuntimeRecurrent` only."""
            if self.layout == 1:  # batch-major: x (B, T, D), states (B, dirs, H)
                x = x.transpose(0, 1)
                h0 = None if h0 is None else h0.transpose(0, 1)
                c0 = None if c0 is None else c0.transpose(0, 1)
            steps, batch = x.shape[0], x.shape[1]
            shape = (self.directions, batch, self.hidden)
            h0 = x.new_zeros(shape) if h0 is None else h0
            c0 = x.new_zeros(shape) if c0 is None else c0
            lengths = None if lengths is None else lengths.long()
            checked = lengths is not None and not torch.compiler.is_compiling()  # no values
            if checked and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
                raise WeightShapeError(
                    f"sequence_lens: each must be in 1..{steps}, got {lengths.tolist()}"
                )
            if self.native is not None:
                y, h_n, c_n = self._run_native(x, lengths, h0, c0)
            else:
                loop_weights = self._loop_weights(x.shape[-1], weights)
                y, h_n, c_n = self._run_loop(x, lengths, h0, c0, loop_weights)
            if self.y_form == SQUEEZED:  # as the graph reads it (:mod:`.direction_axis`)
                return y.reshape(steps, batch, self.hidden), h_n, c_n
            y = y.reshape(steps, batch, self.directions, self.hidden)
            if self.y_form == BATCH_MAJOR:
                return y.transpose(0, 1), h_n, c_n
            if self.y_form != BATCH_FIRST_DIRECTIONS:
                y = y.permute(0, 2, 1, 3)
            if self.layout == 1:  # Y (B, T, dirs, H), Y_h (B, dirs, H)
                return y.permute(2, 0, 1, 3), h_n.transpose(0, 1), c_n.transpose(0, 1)
            return y, h_n, c_n  # (T, dirs, B, H), (dirs, B, H), (dirs, B, H)

        def _run_native(self, x: Any, lengths: Any, h0: Any, c0: Any) -> tuple[Any, Any, Any]:
            if self.reverse_only:  # a lone reverse direction: native forward on reversed rows
                x = reverse_valid(x.transpose(0, 1), lengths).transpose(0, 1)
            hx = (h0, c0) if self.cell == "lstm" else h0
            if lengths is None:
                y, state = self.native(x, hx)
            else:
                packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
                y, state = self.native(packed, hx)
                y, _ = nn.utils.rnn.pad_packed_sequence(y, total_length=x.shape[0])
            if self.reverse_only:
                y = reverse_valid(y.transpose(0, 1), lengths).transpose(0, 1)
            h_n, c_n = state if self.cell == "lstm" else (state, torch.zeros_like(state))
            return y, h_n, c_n

        def _loop_weights(self, input_size: int, given: tuple[Any, ...]) -> tuple[Any, ...]:
            """W, R, B, P of the exact loop: the node's constant weights, as parameters."""
            return self.w, self.r, self.b, self.p

        def _run_loop(
            self, x: Any, lengths: Any, h0: Any, c0: Any, weights: tuple[Any, ...]
        ) -> tuple[Any, Any, Any]:
            x = x.transpose(0, 1)  # (B, T, D)
            outputs, finals_h, finals_c = [], [], []
            for d in range(self.directions):
                reverse = self.reverse_only or d == 1
                sequence = reverse_valid(x, lengths) if reverse else x
                direction_weights = tuple(weight[d] for weight in weights)
                y, h, c = self._direction(d, sequence, lengths, h0[d], c0[d], direction_weights)
                outputs.append(reverse_valid(y, lengths) if reverse else y)
                finals_h.append(h)
                finals_c.append(c)
            y = torch.cat(outputs, dim=-1).transpose(0, 1)  # (T, B, dirs·H)
            return y, torch.stack(finals_h), torch.stack(finals_c)

        def _direction(
            self, d: int, x: Any, lengths: Any, h: Any, c: Any, weights: tuple[Any, ...]
        ) -> tuple[Any, Any, Any]:
            w, r, b, p = weights
            acts = [activation(*slot) for slot in self.activations[d]]
            f = acts[0]
            g = acts[1] if len(acts) > 1 else acts[0]
            out = acts[2] if len(acts) > 2 else g
            wb, rb = b.chunk(2)
            bound = self.clip
            clip = (lambda v: v) if bound is None else (lambda v: torch.clamp(v, -bound, bound))
            projected = F.linear(x, w, wb)  # (B, T, G·H)
            valid = None
            if lengths is not None:
                valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
            outputs = []
            for t in range(x.shape[1]):
                if self.cell == "lstm":
                    zi, zo, zf, zc = (projected[:, t] + F.linear(h, r, rb)).chunk(4, -1)
                    pi, po, pf = p.chunk(3)
                    i = f(clip(zi + pi * c))
                    forget = 1 - i if self.input_forget else f(clip(zf + pf * c))
                    new_c = forget * c + i * g(clip(zc))
                    new_h = f(clip(zo + po * new_c)) * out(new_c)
                elif self.cell == "gru":
                    new_c = c
                    xz, xr, xh = projected[:, t].chunk(3, -1)
                    r_z, r_r, r_h = r.chunk(3, 0)
                    b_z, b_r, b_h = rb.chunk(3)
                    z = f(clip(xz + F.linear(h, r_z, b_z)))
                    reset = f(clip(xr + F.linear(h, r_r, b_r)))
                    if self.linear_before_reset:
                        candidate = g(clip(xh + reset * F.linear(h, r_h, b_h)))
                    else:
                        candidate = g(clip(xh + F.linear(reset * h, r_h, b_h)))
                    new_h = (1 - z) * candidate + z * h
                else:
                    new_c = c
                    new_h = f(clip(projected[:, t] + F.linear(h, r, rb)))
                if valid is None:
                    h, c = new_h, new_c
                    outputs.append(h)
                else:  # past a row's length the states stay and the output is zero
                    keep = valid[:, t, None]
                    h = torch.where(keep, new_h, h)
                    c = torch.where(keep, new_c, c)
                    outputs.append(torch.where(keep, h, torch.zeros_like(h)))
            return torch.stack(outputs, dim=1), h, c

    class OnnxRuntimeRecurrent(OnnxRecurrent):
        """An ONNX LSTM/GRU/RNN node whose W, R, B or P are inputs of ``forward`` (graph
        inputs or computed at run time), run on the exact loop of the ONNX equations.

        The node's constant weight inputs are kept as buffers; ``forward`` takes the others
        and checks their shapes against ``hidden_size``, the directions and ``x``.
        """

        def __init__(
            self, options: RecurrentOptions, constants: dict[int, np.ndarray], dtype: Any
        ) -> None:
            nn.Module.__init__(self)
            self._set_options(options)
            self.native = None
            self.options = options
            self.constant_slots = sorted(constants)
            for slot, array in constants.items():
                tensor = torch.from_numpy(np.array(array)).to(dtype)
                self.register_buffer(f"weight{slot}", tensor)

        def _loop_weights(self, input_size: int, given: tuple[Any, ...]) -> tuple[Any, ...]:
            shapes = weight_shapes(self.options, input_size)
            given = tuple(given) + (None,) * (len(WEIGHT_SLOT_ITEMS) - len(given))
            resolved: list[Any] = []
            for (slot, name), tensor in zip(WEIGHT_SLOT_ITEMS, given):
                if slot in self.constant_slots:
                    tensor = getattr(self, f"weight{slot}")
                if tensor is None:
                    if name in ("W", "R"):
                        raise WeightShapeError(f"{describe_node(self.options.node)}: no {name}")
                    tensor = torch.zeros(shapes[name], dtype=resolved[0].dtype)
                elif tuple(tensor.shape) != shapes[name]:
                    raise WeightShapeError(
                        f"{describe_node(self.options.node)}: input {name} expected shape "
                        f"{shapes[name]} (hidden_size={self.hidden}, {self.directions} "
                        f"direction(s), {input_size} input features), got {tuple(tensor.shape)}"
                    )
                resolved.append(tensor)
            return tuple(resolved)

    return SimpleNamespace(
        OnnxRecurrent=OnnxRecurrent,
        OnnxRuntimeRecurrent=OnnxRuntimeRecurrent,
        reverse_valid=reverse_valid,
    )


def recurrent_module(node: Any, constants: dict[str, np.ndarray], dtype: Any) -> Any:
    """The torch module of one ONNX LSTM/GRU/RNN node: ``OnnxRecurrent`` when its weights are
    constants, else ``OnnxRuntimeRecurrent``, whose ``forward`` takes the weights given at run
    time (graph inputs, such as those of ONNX's own node test cases).

    Raises:
        UnsupportedFeatureError: an attribute or activation the node cannot have.
        WeightShapeError: constant weights whose shapes do not fit ``hidden_size``.
    """
    classes = recurrent_classes()
    runtime = runtime_weight_inputs(node, constants)
    if not runtime:
        return classes.OnnxRecurrent(read_recurrent_node(node, constants), dtype)
    inputs = list(node.input)
    fixed = {
        slot: constants[inputs[slot]]
        for slot in WEIGHT_SLOTS
        if slot < len(inputs) and inputs[slot] and slot not in runtime
    }
    return classes.OnnxRuntimeRecurrent(read_recurrent_options(node), fixed, dtype)


def layer_key(node: Any, constants: dict[str, np.ndarray]) -> tuple[Any, ...] | None:
    """What makes two recurrent nodes one layer: their op, attributes and constant weights,
    byte for byte (``torch.onnx`` writes a module called twice, a siamese model's encoder,
    as two nodes, each with its own copy of the weights); None where a weight is given at
    run time."""
    weights = []
    for slot in WEIGHT_SLOTS:
        name = node.input[slot] if slot < len(node.input) else ""
        if name and name not in constants:
            return None
        value = constants.get(name) if name else None
        if value is not None:
            digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).digest()
            weights.append((slot, value.dtype.str, value.shape, digest))
    attributes = tuple(sorted(a.SerializeToString() for a in node.attribute))
    return node.op_type, attributes, tuple(weights)
