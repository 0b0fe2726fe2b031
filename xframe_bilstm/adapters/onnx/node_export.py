"""One canonical layer as one native ONNX ``LSTM``/``GRU``/``RNN`` node.

The node is ``layout=0`` (time-major, the only layout onnxruntime's CPU kernels accept).
ONNX LSTMs use gate order ``iofc`` (Keras ``ifco``); GRUs use ``zrh`` as Keras does. ``B``
is ``[Wb, Rb]``: a canonical split bias keeps its two rows, a single bias becomes ``Wb``
with ``Rb = 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...canonical import RecurrentLayer
from ...errors import UnsupportedFeatureError
from ...gates import CANONICAL_ORDER, ONNX_ORDER, reorder_gates
from .builder import GraphBuilder
from .vocabulary import (
    DEFAULT_ALPHA_BETA,
    ONNX_ACTIVATIONS,
    ONNX_DIRECTION,
    OP_BY_CELL,
    READS_ALPHA_BETA,
)


@dataclass(frozen=True)
class NodeOutputs:
    """What one exported recurrent node produced."""

    y: str  # (T, dirs, B, H)
    y_h: str  # (dirs, B, H)
    y_c: str | None  # (dirs, B, H), LSTM only


def _onnx_weights(
    layer: RecurrentLayer, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(W [dirs, G·H, D], R [dirs, G·H, H], B [dirs, 2·G·H] or None) in ``dtype``."""
    source, target = CANONICAL_ORDER[layer.cell], ONNX_ORDER[layer.cell]
    w, r, b = [], [], []
    for weights in layer.weights:
        # Canonical (D, G·H) x-on-the-left becomes ONNX (G·H, D) W-on-the-left.
        w.append(reorder_gates(weights.kernel, source, target).T)
        r.append(reorder_gates(weights.recurrent_kernel, source, target).T)
        if weights.input_bias is not None:
            input_bias = reorder_gates(weights.input_bias, source, target)
            recurrent = weights.recurrent_bias
            # A single bias is Wb with Rb = 0: for GRU reset_after=False that is exact, since
            # ONNX's Rbh sits outside the reset gate where Keras has no bias.
            recurrent_bias = (
                np.zeros_like(input_bias)
                if recurrent is None
                else reorder_gates(recurrent, source, target)
            )
            b.append(np.concatenate([input_bias, recurrent_bias]))
    cast = lambda arrays: np.stack(arrays).astype(dtype)  # noqa: E731
    return cast(w), cast(r), (cast(b) if b else None)


def activation_attributes(layer: RecurrentLayer) -> dict[str, Any]:
    """The node's activations, alphas and betas; raises naming an activation ONNX lacks."""
    names = [layer.recurrent_activation, layer.activation, layer.activation]
    if layer.cell == "gru":
        names = names[:2]
    elif layer.cell == "simple_rnn":
        names = [layer.activation]
    onnx_names, alphas, betas = [], [], []
    for name in names * len(layer.weights):
        assert name is not None  # checked by RecurrentLayer
        if name not in ONNX_ACTIVATIONS:
            raise UnsupportedFeatureError(
                f"activation {name!r} has no ONNX recurrent activation (ONNX offers "
                f"{', '.join(sorted(READS_ALPHA_BETA))}); supported here: "
                f"{sorted(ONNX_ACTIVATIONS)}"
            )
        onnx_name, alpha, beta = ONNX_ACTIVATIONS[name]
        reads_alpha, reads_beta = READS_ALPHA_BETA[onnx_name]
        default_alpha, default_beta = DEFAULT_ALPHA_BETA.get(onnx_name, (0.0, 0.0))
        onnx_names.append(onnx_name)
        # Every activation that reads a value gets one, defaults included: the lists are
        # consumed in order, so one missing entry would shift the later ones.
        if reads_alpha:
            alphas.append(default_alpha if alpha is None else alpha)
        if reads_beta:
            betas.append(default_beta if beta is None else beta)
    attributes: dict[str, Any] = {"activations": onnx_names}
    if alphas:
        attributes["activation_alpha"] = alphas
    if betas:
        attributes["activation_beta"] = betas
    return attributes


def recurrent_node(
    graph: GraphBuilder,
    layer: RecurrentLayer,
    prefix: str,
    sequence: str,
    states: Sequence[str],
    lengths: str | None,
) -> NodeOutputs:
    """Add the node of ``layer`` on time-major ``sequence``, from ``states`` (Keras order)
    and ``lengths`` where given; return its outputs."""
    w, r, b = _onnx_weights(layer, graph.float_dtype)
    directions = len(layer.weights)
    inputs = [
        sequence,
        graph.constant(f"{prefix}/W", w),
        graph.constant(f"{prefix}/R", r),
        "" if b is None else graph.constant(f"{prefix}/B", b),
        lengths or "",
    ]
    if states:
        per_direction = layer.num_states
        for kind in range(per_direction):
            # Keras order is [h, c] per direction; ONNX stacks each kind as [dirs, B, H].
            pieces = [states[d * per_direction + kind] for d in range(directions)]
            joined = (
                pieces[0]
                if directions == 1
                else graph.one("Concat", pieces, f"{prefix}/initial_{'hc'[kind]}_rows", axis=0)
            )
            inputs.append(
                graph.one(
                    "Reshape",
                    [
                        joined,
                        graph.ints(
                            f"shape_dirs{directions}_b_{layer.units}", [directions, -1, layer.units]
                        ),
                    ],
                    f"{prefix}/initial_{'hc'[kind]}",
                )
            )
    while inputs[-1] == "":
        inputs.pop()  # trailing optional inputs are left out, not named empty
    attributes: dict[str, Any] = {
        "hidden_size": layer.units,
        "direction": ONNX_DIRECTION[layer.direction],
        **activation_attributes(layer),
    }
    if layer.cell == "gru":
        attributes["linear_before_reset"] = 1 if layer.reset_after else 0
    count = 3 if layer.cell == "lstm" else 2
    names = graph.op(
        OP_BY_CELL[layer.cell],
        inputs,
        prefix,
        outputs=count,
        output_names=[graph.name(f"{prefix}/{n}") for n in ("Y", "Y_h", "Y_c")[:count]],
        **attributes,
    )
    return NodeOutputs(names[0], names[1], names[2] if count == 3 else None)
