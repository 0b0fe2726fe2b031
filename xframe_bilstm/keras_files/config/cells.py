"""``RNN(cell)`` layers read as the plain recurrent layers they compute.

Rules of this module:

- ``RNN(LSTMCell(...))``, ``RNN(GRUCell(...))`` and ``RNN(SimpleRNNCell(...))`` compute
  exactly what ``LSTM``, ``GRU`` and ``SimpleRNN`` compute with the same options: the cell's
  options and the RNN's flags are merged into the configuration of that plain layer
  (:func:`plain_layer`), which :mod:`.recurrent` then reads as usual, in a ``Bidirectional``
  too. The weights are the cell's, in the same order (kernel, recurrent kernel, bias).
- An ``RNN`` of several cells (``StackedRNNCells``) is a chain of records, made by
  :mod:`.stacked`; here it is only recognised (:func:`is_stacked`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import UnsupportedFeatureError
from .specs import LayerSpec

# Each cell class and the plain layer that runs it over a sequence.
CELL_LAYERS = {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "SimpleRNN"}
# What an RNN's configuration holds besides its cell: the plain layer's flags.
RNN_FLAGS = (
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
    flags = {key: rnn_config[key] for key in RNN_FLAGS if key in rnn_config}
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
            f"{where}: wraps an RNN of StackedRNNCells ({len(cells)} cells); a port has "
            "no layer that runs several cells in each direction; Bidirectional of one cell "
            "(or of LSTM, GRU, SimpleRNN) is supported"
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


__all__ = ["CELL_LAYERS", "RNN_FLAGS", "as_plain", "cell_entries", "is_stacked", "plain_layer"]
