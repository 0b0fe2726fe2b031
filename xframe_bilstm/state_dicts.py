"""Which keys of a torch state_dict make up the one recurrent module it is read as.

Rules of this module:

- A state_dict converts only if every key is accounted for: all of them are the native
  parameters (``weight_ih_l0``, ``bias_hh_l1_reverse``...) of one ``nn.LSTM``/``nn.GRU``/
  ``nn.RNN``, under one common prefix. Anything else is refused with the keys that would be
  left out, grouped by the module they belong to, and how to take the recurrent part alone
  (``submodule``, the keys under ``submodule + "."``).
- The ``module.`` prefix ``nn.DataParallel`` puts before every key is dropped first.
- Weights of an ``nn.LSTMCell``/``nn.GRUCell``/``nn.RNNCell`` (``weight_ih`` without
  ``_l0``) are refused by name: a cell is one step, run over time by code we cannot see.
- Only keys and shapes are read (no framework is imported): values pass through as given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import UnsupportedFeatureError, WeightShapeError

FIRST_KEY = "weight_ih_l0"
_NATIVE_KEY = re.compile(r"^(weight|bias)_(ih|hh|hr)_l\d+(_reverse)?$")
_DATA_PARALLEL = "module."
_MODULES = {4: "nn.LSTM", 3: "nn.GRU", 1: "nn.RNN"}
_CELLS = {4: "nn.LSTMCell", 3: "nn.GRUCell", 1: "nn.RNNCell"}
_CELL_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def recurrent_entries(state: Mapping[str, Any], *, submodule: str | None = None) -> dict[str, Any]:
    """The keys of the one recurrent module ``state`` holds, without their prefix.

    Args:
        state: a state_dict (names to tensors or arrays).
        submodule: take only the keys under ``submodule + "."`` (a whole model's
            recurrent part, e.g. ``"lstm"``); None takes every key.

    Raises:
        UnsupportedFeatureError: keys that are not the recurrent module's (listed), several
            recurrent modules, or the weights of a cell.
        WeightShapeError: no recurrent weights at all.

    Example:
        >>> import numpy as np
        >>> lstm = {"weight_ih_l0": np.zeros((8, 3)), "weight_hh_l0": np.zeros((8, 2))}
        >>> sorted(recurrent_entries({"module.rnn." + k: v for k, v in lstm.items()}))
        ['weight_hh_l0', 'weight_ih_l0']
        >>> recurrent_entries({**{"lstm." + k: v for k, v in lstm.items()},
        ...                    "fc.weight": np.zeros((1, 2))})
        Traceback (most recent call last):
        ...
        xframe_bilstm.errors.UnsupportedFeatureError: state_dict: holds more than the \
recurrent module 'lstm': module 'fc' (fc.weight) would not be converted. ...
        >>> sorted(recurrent_entries({**{"lstm." + k: v for k, v in lstm.items()},
        ...                           "fc.weight": np.zeros((1, 2))}, submodule="lstm"))
        ['weight_hh_l0', 'weight_ih_l0']
    """
    entries = dict(state)
    if entries and all(key.startswith(_DATA_PARALLEL) for key in entries):
        entries = {key[len(_DATA_PARALLEL) :]: value for key, value in entries.items()}
    if submodule is not None:
        entries = _under(entries, submodule)
    prefixes = sorted({key[: -len(FIRST_KEY)] for key in entries if key.endswith(FIRST_KEY)})
    if not prefixes:
        raise _no_recurrent_module(entries)
    if len(prefixes) > 1:
        names = ", ".join(repr(prefix[:-1]) for prefix in prefixes)
        raise UnsupportedFeatureError(
            f"state_dict: holds {len(prefixes)} recurrent modules ({names}); one converts at a "
            f"time: {_how_to_take(prefixes[0])}"
        )
    (prefix,) = prefixes
    left_out = [
        key
        for key in entries
        if not (key.startswith(prefix) and _NATIVE_KEY.match(key[len(prefix) :]))
    ]
    if left_out:
        raise UnsupportedFeatureError(_whole_model_message(prefix, left_out))
    return {key[len(prefix) :]: value for key, value in entries.items()}


def _under(entries: dict[str, Any], submodule: str) -> dict[str, Any]:
    prefix = submodule.strip(".") + "."
    picked = {key[len(prefix) :]: value for key, value in entries.items() if key.startswith(prefix)}
    if not picked:
        modules = sorted({key.split(".")[0] for key in entries if "." in key})
        recurrent = sorted(key[: -len(FIRST_KEY) - 1] for key in entries if key.endswith(FIRST_KEY))
        raise UnsupportedFeatureError(
            f"state_dict: no key starts with {prefix!r} (submodule={submodule!r}); its modules "
            f"are {', '.join(map(repr, modules)) or 'none'}, the recurrent ones "
            f"{', '.join(map(repr, recurrent)) or 'none'}"
        )
    return picked


def _how_to_take(prefix: str) -> str:
    name = prefix[:-1]
    if not name:
        return "load the state_dict into your model and convert the recurrent module itself"
    return (
        f"convert the recurrent module alone with submodule={name!r} (on the command line: "
        f"--torch-submodule {name}), or load the state_dict into your model and pass the "
        "recurrent module itself"
    )


def _whole_model_message(prefix: str, left_out: list[str]) -> str:
    groups: dict[str, list[str]] = {}
    for key in left_out:
        groups.setdefault(_module_of(key, prefix), []).append(key)
    listed = ", ".join(f"{name!r} ({_some(keys)})" for name, keys in groups.items())
    noun = "module" if len(groups) == 1 else "modules"
    name = f" {prefix[:-1]!r}" if prefix else ""
    return (
        f"state_dict: holds more than the recurrent module{name}: {noun} {listed} would not be "
        f"converted. A recurrent layer cannot hold them; {_how_to_take(prefix)}"
    )


def _module_of(key: str, prefix: str) -> str:
    """The module ``key`` belongs to, named down to where it parts from the recurrent one."""
    parts, recurrent = key.split("."), prefix.split(".")[:-1]
    shared = 0
    while shared < min(len(parts) - 1, len(recurrent)) and parts[shared] == recurrent[shared]:
        shared += 1
    return ".".join(parts[: shared + 1])


def _some(keys: list[str]) -> str:
    if len(keys) <= 3:
        return ", ".join(keys)
    return f"{len(keys)} keys: {keys[0]}, {keys[1]}, ..., {keys[-1]}"


def _no_recurrent_module(entries: dict[str, Any]) -> Exception:
    cells = sorted(
        key[: -len("weight_ih")]
        for key in entries
        if key.endswith("weight_ih") and key[: -len("weight_ih")] + "weight_hh" in entries
    )
    if cells:
        return UnsupportedFeatureError(_cell_message(entries, cells))
    if not entries:
        return WeightShapeError("state_dict: empty; expected the weights of a recurrent module")
    return WeightShapeError(
        f"state_dict: expected the weights of one recurrent module (a key ending in "
        f"{FIRST_KEY!r}), found none among {_some(sorted(entries))}"
    )


def _cell_message(entries: dict[str, Any], cells: list[str]) -> str:
    prefix = cells[0]
    w_ih, w_hh = entries[prefix + "weight_ih"], entries[prefix + "weight_hh"]
    units, inputs = int(w_hh.shape[1]), int(w_ih.shape[1])
    gates = int(w_hh.shape[0]) // max(units, 1)
    cell, module = _CELLS.get(gates, "recurrent cell"), _MODULES.get(gates, "nn.RNN")
    keys = [prefix + name for name in _CELL_KEYS if prefix + name in entries]
    more = f" ({len(cells)} cells: {', '.join(map(repr, cells))})" if len(cells) > 1 else ""
    renames = ", ".join(f"{name} -> {name}_l0" for name in _CELL_KEYS if prefix + name in entries)
    return (
        f"state_dict: {', '.join(keys)} are the weights of an {cell}({inputs}, {units}){more}, "
        "one step that a module's forward runs over time in its own code, which a state_dict "
        "does not hold. If that forward runs the cell over the steps in order from zero "
        f"states and returns each step's h, it computes what {module}({inputs}, {units}, "
        f"batch_first=True) computes: rename the keys ({renames}), load them into that "
        "module and convert it"
    )


__all__ = ["FIRST_KEY", "recurrent_entries"]
