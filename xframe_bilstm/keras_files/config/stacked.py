"""``RNN(StackedRNNCells([...]))`` layers into chains of canonical recurrent records.

Rules of this module:

- ``RNN(StackedRNNCells([c0, c1, ...]))`` (Keras wraps ``RNN([c0, c1])`` into it) feeds
  each cell's output to the next at every step. That is a chain of recurrent records, one
  per cell: all but the last return sequences and are named ``<layer>_cell_<i>``; the last
  keeps the layer's name and returns what the RNN returns. Under a mask every cell keeps
  its states on masked steps, and so does each record of the chain, so masks map exactly.
- With ``go_backwards=True`` every cell runs over the reversed sequence: the first record
  reads its input backwards and returns its outputs in that processing order, and the
  records after it run forwards over them. Under a mask this is not exact (Keras reverses
  the mask for every cell; the later records of a chain would read it in input order over
  outputs in reversed order), so that combination is refused (:func:`check_stacked_masks`),
  as is a stacked RNN inside ``Bidirectional``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import UnsupportedFeatureError, WeightShapeError
from ...graph import LayerRecord, ModelGraph
from ..weights import WeightRef
from .cells import as_plain, cell_entries, is_stacked
from .recurrent import recurrent_record
from .specs import LayerSpec, ModelSpec


def _weight_count(config: Mapping[str, Any]) -> int:
    return 3 if bool(config.get("use_bias", True)) else 2


def _chain_names(layer: LayerSpec, count: int, taken: set[str]) -> list[str]:
    """The records' names: ``<layer>_cell_<i>`` (made unique), the layer's own last."""
    names = []
    for index in range(count - 1):
        name, suffix = f"{layer.name}_cell_{index}", 0
        while name in taken:
            suffix += 1
            name = f"{layer.name}_cell_{index}_{suffix}"
        taken.add(name)
        names.append(name)
    return [*names, layer.name]


def stacked_records(
    layer: LayerSpec, refs: Sequence[WeightRef], spec: ModelSpec
) -> list[LayerRecord]:
    """The chain of records of an ``RNN(StackedRNNCells([...]))`` (see module rules)."""

    where = spec.where(layer)
    cells = cell_entries(layer.config, where)
    if layer.config.get("return_state") or len(layer.inputs) > 1:
        raise UnsupportedFeatureError(
            f"{where}: StackedRNNCells with return_state=True or initial_state; Keras nests "
            "the states of every cell, which a chain of layers does not express; use one "
            "recurrent layer per cell to pass states in or out"
        )
    counts = [_weight_count(config) for _, config in cells]
    if sum(counts) != len(refs):
        raise WeightShapeError(
            f"{where}: its {len(cells)} cells hold {sum(counts)} weights; found {len(refs)}"
        )
    taken = {other.name for other in spec.layers}
    names = _chain_names(layer, len(cells), taken)
    records: list[LayerRecord] = []
    start = 0
    for index, (cell, count) in enumerate(zip(cells, counts, strict=True)):
        last = index == len(cells) - 1
        class_name, config = as_plain(cell, layer.config)
        if not last:  # every cell but the last feeds the next one, step by step
            config["return_sequences"] = True
        if index:  # the first cell reverses the sequence; the others run over its outputs
            config["go_backwards"] = False
        part = dataclasses.replace(
            layer,
            name=names[index],
            class_name=class_name,
            config=config,
            inputs=layer.inputs if index == 0 else (names[index - 1],),
        )
        cell_where = f"{where} cell {index} ({cell[0]})"
        record = recurrent_record(part, list(refs[start : start + count]), spec, cell_where)
        records.append(dataclasses.replace(record, class_name=layer.class_name))
        start += count
    return records


def check_stacked_masks(spec: ModelSpec, graph: ModelGraph) -> None:
    """Refuse a ``go_backwards`` RNN of several cells that reads a mask (see module rules)."""
    for layer in spec.layers:
        if not is_stacked(layer) or not layer.config.get("go_backwards"):
            continue
        if any(graph.masked(name) for name in layer.inputs):
            raise UnsupportedFeatureError(
                f"{spec.where(layer)}: go_backwards=True over StackedRNNCells with a mask; "
                "Keras reverses the mask for every cell, which no chain of layers "
                "expresses; port it without the mask, or with go_backwards=False (reverse "
                "the input yourself)"
            )


__all__ = ["check_stacked_masks", "stacked_records"]
