"""A recurrent layer of a whole model that reads initial states or returns its final ones.

Initial states are the node's ``initial_h``/``initial_c`` (Keras order: h, c per
direction); final states are its ``Y_h``/``Y_c``, per direction, in Keras order. Under a
mask they come from :func:`~xframe_bilstm.adapters.onnx.masked.masked_recurrent_states`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...graph import LayerRecord
from .builder import GraphBuilder
from .layer_export import export_layer, final_states
from .masked import masked_recurrent_states


def recurrent_with_states(
    builder: GraphBuilder,
    record: LayerRecord,
    x: str,
    mask: str | None,
    states: Sequence[str],
) -> list[str]:
    """The layer's output, then its final states where it returns them (Keras order)."""
    layer = record.recurrent
    assert layer is not None
    return_sequences = bool(record.options["return_sequences"])
    return_state = bool(record.options.get("return_state"))
    if mask is not None:  # time_major under a mask is refused
        outputs = masked_recurrent_states(
            builder, layer, record.name, x, mask, states, return_sequences=return_sequences
        )
        return outputs if return_state else outputs[:1]
    time_major = bool(record.options["time_major"])
    sequence = (
        x
        if time_major
        else builder.one("Transpose", [x], f"{record.name}/time_major", perm=[1, 0, 2])
    )
    y, *_, node = export_layer(
        builder,
        layer,
        record.name,
        sequence,
        states,
        None,
        return_sequences=return_sequences,
        keep_padding=False,
    )
    if return_sequences and not time_major:
        y = builder.one("Transpose", [y], f"{record.name}/batch_major", perm=[1, 0, 2])
    finals = final_states(builder, layer, record.name, node) if return_state else []
    return [y, *finals]


__all__ = ["recurrent_with_states"]
