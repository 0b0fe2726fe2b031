"""``RNN(cell)`` and ``RNN(StackedRNNCells([...]))`` layers into canonical recurrent records.

Rules of this module:

- ``RNN(LSTMCell(...))``, ``RNN(GRUCell(...))`` and ``RNN(SimpleRNNCell(...))`` compute
  exactly what ``LSTM``, ``GRU`` and ``SimpleRNN`` compute with the same options: the cell's
  options and the RNN's flags are merged into the configuration of that plain layer
  (:func:`plain_layer`), which :mod:`.recurrent` then reads as usual, in a ``Bidirectional``
  too. The weights are the cell's, in the same order (kernel, recurrent kernel, bias).
- ``RNN(StackedRNNCells([c0, c1, ...]))`` (Keras wraps ``RNN([c0, c1])`` into it) feeds
  each cell's output to the next at every step. That is a chain of recurrent records, one
  per cell: all but the last return sequences and are named ``<layer>_cell_<i>``; the last
  keeps the layer's name and returns what the RNN returns. Under a mask every cell keeps
  its states on masked steps, and so does each record of the chain, so masks map exactly.
- With ``go_backwards=True`` every cell runs over the reversed sequence: the first record
  reads its input backwards and returns its outputs in that processing order, and the
  records after it run forwards over them. Under a mask this is not exact (Keras passes
  the mask on in input order while the chain's outputs are in reversed order), so that
  combination is refused (:func:`check_stacked_masks`), as is a stacked RNN inside
  ``Bidirectional``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import UnsupportedFeatureError, WeightShapeError
from ...graph import LayerRecord, ModelGraph
from ..weights import WeightRef
from .specs import LayerSpec, ModelSpec

# Each cell class and the plain layer that runs it over a sequence.
CELL_LAYERS = {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "SimpleRNN"}
# What an RNN's configuration holds besides its cell: the plain layer's flags.
_RNN_KEYS = (
    "return_sequences",
    "return_state",
    "go_backwards",
    "stateful",
    "unroll",
    "time_major",
    "zero_output_for_mask",
)


def cell_entries(config: Mapping[str, Any], where: str) -> list[tuple[str, Mapping[str, Any]]]:
    """(class, config) of each cell an ``RNN`` configuration runs, in the order they run.

    Example:
        >>> cell = {"class_name": "GRUCell", "config": {"units": 2}}
        >>> stacked = {"class_name": "StackedRNNCells", "config": {"cells": [cell, cell]}}
        >>> [name for name, _ in cell_entries({"cell": stacked}, "layer 'rnn'")]
        ['GRUCell', 'GRUCell']
    """
    cell = config.get("cell")
    if isinstance(cell, Mapping) and cell.get("class_name") == "StackedRNNCells":
        cell = cell.get("config", {}).get("cells")
    entries = cell if isinstance(cell, list) else [cell]
    if not entries:
        raise UnsupportedFeatureError(f"{where}: its StackedRNNCells holds no cells")
    cells = []
    for entry in entries:
        if not isinstance(entry, Mapping) or "class_name" not in entry:
            raise UnsupportedFeatureError(f"{where}: its cell configuration is missing")
        class_name = str(entry["class_name"])
        if class_name not in CELL_LAYERS:
            raise UnsupportedFeatureError(
                f"{where}: runs a {class_name} cell; supported cells: "
                f"{', '.join(CELL_LAYERS)} (alone or in StackedRNNCells); rebuild a custom "
                "cell's computation with those, or port the model without it"
            )
        cells.append((class_name, entry.get("config", {})))
    return cells


def as_plain(
    cell: tuple[str, Mapping[str, Any]], rnn_config: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The plain layer (class, config) that computes ``cell`` under the RNN's flags."""
    class_name, cell_config = cell
    flags = {key: rnn_config[key] for key in _RNN_KEYS if key in rnn_config}
    return CELL_LAYERS[class_name], {**cell_config, **flags}


def plain_layer(
    class_name: str, config: Mapping[str, Any], where: str
) -> tuple[str, Mapping[str, Any]]:
    """The plain recurrent layer an ``RNN`` of one cell is; other classes unchanged.

    Example:
        >>> cell = {"class_name": "LSTMCell", "config": {"units": 3}}
        >>> plain_layer("RNN", {"cell": cell, "go_backwards": True}, "layer 'rnn'")
        ('LSTM', {'units': 3, 'go_backwards': True})
    """
    if class_name != "RNN":
        return class_name, config
    cells = cell_entries(config, where)
    if len(cells) != 1:
        raise UnsupportedFeatureError(
            f"{where}: an RNN of StackedRNNCells ({len(cells)} cells) inside Bidirectional "
            "is not supported; wrap each cell's RNN in its own Bidirectional, or use "
            "Bidirectional layers of single cells"
        )
    return as_plain(cells[0], config)


def is_stacked(layer: LayerSpec) -> bool:
    """Whether ``layer`` is an ``RNN`` of several cells (a chain of records)."""
    if layer.class_name != "RNN":
        return False
    cell = layer.config.get("cell")
    if isinstance(cell, Mapping) and cell.get("class_name") == "StackedRNNCells":
        cells = cell.get("config", {}).get("cells")
        return isinstance(cells, list) and len(cells) > 1
    return isinstance(cell, list) and len(cell) > 1


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
    from .recurrent import recurrent_record

    where = spec.where(layer)
    cells = cell_entries(layer.config, where)
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


__all__ = [
    "CELL_LAYERS",
    "as_plain",
    "cell_entries",
    "check_stacked_masks",
    "is_stacked",
    "plain_layer",
    "stacked_records",
]
