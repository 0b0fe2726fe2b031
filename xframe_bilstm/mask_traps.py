"""Keras behaviours under a mask that a port must refuse or reproduce, found in a model graph."""

from __future__ import annotations

from .graph import ModelGraph


def mask_traps(graph: ModelGraph) -> list[tuple[str, str, bool]]:
    """Keras behaviours under a mask: ``(layer, what happens, whether the port refuses)``.

    Refused: a ``time_major`` layer reading a mask (the mask's axes no longer match), and
    ``unroll=True`` where Keras zeroes valid backward outputs under a mask (a Keras bug:
    the unrolled loop zeroes outputs in reversed order with the mask in input order), i.e.
    a ``Bidirectional`` returning sequences, or a ``go_backwards`` layer with
    ``zero_output_for_mask``.

    Example:
        >>> from xframe_bilstm.graph import LayerRecord
        >>> mask_traps(ModelGraph("m", (LayerRecord("x", "input", "InputLayer",
        ...     options={"shape": (None, 3), "dtype": "float32"}),), ("x",), ("x",)))
        []
    """
    traps = []
    for record in graph.layers:
        if record.kind != "recurrent" or not any(graph.masked(name) for name in record.inputs):
            continue
        layer = record.recurrent
        assert layer is not None
        where = f"layer {record.name!r} ({record.class_name})"
        if record.options["time_major"]:
            traps.append((record.name, f"{where}: time_major=True under a mask", True))
        buggy = layer.direction == "bidirectional" or (
            layer.direction == "backward" and layer.zero_masked_outputs
        )
        if record.options["unroll"] and record.options["return_sequences"] and buggy:
            traps.append(
                (
                    record.name,
                    f"{where}: unroll=True with a mask; Keras zeroes valid backward outputs "
                    "of this layer (a Keras bug) and no port reproduces that; rebuild it with "
                    "unroll=False, which computes the same without the bug",
                    True,
                )
            )
    return traps


__all__ = ["mask_traps"]
