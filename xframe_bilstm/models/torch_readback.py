"""Read a :class:`~xframe_bilstm.models.to_torch.KerasModel` back as a model graph.

Rules of this module:

- The graph is the one the module was built from (``keras_graph``, its structure), with
  the weights the module's parameters and buffers hold now: a port trained or loaded since
  reads back as it computes now.
- A recurrent layer's weights are read as :func:`~xframe_bilstm.keras_to_torch`'s modules
  are read back (:func:`~xframe_bilstm.adapters.torch.weights.read_layer`).
- Every other layer's submodule was built by one code path from the record's weights, by
  copying and rearranging them (transposes, kernel layouts). That rearrangement is found
  without knowing the layer: the submodule is built once more from weights whose every
  element is a distinct number, and where each number lands in its ``state_dict`` says
  where each weight element went. A submodule that computes anything from its weights (so
  that a number is missing) is refused by name.
- A custom layer (a user's factory's module) is converted by the ``custom_modules``
  factory mapped to its class, given the module as it is now; without one, it keeps the
  weights it was ported with, but only while the module still holds what its factory
  builds from them: a module trained or loaded since is refused, naming the option.
- Nothing here is trusted alone: the graph is checked against the module's own
  ``forward`` by whoever reads it (:func:`~xframe_bilstm.torch_to_keras`, ``compare()``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from ..adapters.torch.tensors import tensor_to_numpy
from ..adapters.torch.weights import read_layer
from ..errors import UnsupportedFeatureError
from ..graph import LayerRecord, ModelGraph
from .recurrent import Recurrent
from .to_torch import KerasModel
from .torch_custom import custom_module
from .torch_custom_children import child_factory, custom_child_record
from .torch_layers import layer_module
from .torch_shape_layers import TimeDistributed

# Probe values start far from the constants a module may hold (0, 1, eps) and stay exact in
# float32, so that a factory that casts its weights still shows where each went.
_FIRST_ID = 2**20


def current_graph(
    model: KerasModel,
    *,
    borrow: bool = False,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None = None,
) -> ModelGraph:
    """The graph ``model`` computes: its structure, with the weights it holds now.

    With ``borrow``, a recurrent layer's kernels are read-only views of its parameters
    where no gate blocks move (see :func:`~xframe_bilstm.adapters.torch.weights.read_layer`),
    for a conversion that copies them into their destination at once. ``custom_modules``
    maps a custom layer's module class (or class name) to a factory returning the Keras
    layer that computes what the module computes now.

    Raises:
        UnsupportedFeatureError: a layer whose weights cannot be read back, named.

    Example:
        >>> from xframe_bilstm.graph import LayerRecord, ModelGraph
        >>> graph = ModelGraph("tiny", (
        ...     LayerRecord("x", "input", "InputLayer",
        ...                 options={"shape": (2,), "dtype": "float32"}),
        ...     LayerRecord("dense", "dense", "Dense", ("x",),
        ...                 {"activation": "linear", "time_distributed": False},
        ...                 {"kernel": np.array([[1.0, 2.0], [3.0, 4.0]], "float32")})),
        ...     inputs=("x",), outputs=("dense",))
        >>> model = KerasModel(graph)
        >>> with torch.no_grad():
        ...     model.dense.weight[0, 1] = 30.0   # torch's (units, inputs): kernel[1, 0]
        >>> current_graph(model).layer("dense").weights["kernel"].tolist()
        [[1.0, 2.0], [30.0, 4.0]]
    """
    graph = model.keras_graph
    attributes = {step.name: step.attribute for step in model._steps}
    records: list[LayerRecord] = []
    for record in graph.layers:
        submodule = getattr(model, attributes.get(record.name, ""), None)
        if record.shares:  # the arrays read for the layer it calls again
            read = next(r for r in records if r.name == record.shares)
            records.append(_sharing(record, read))
        elif submodule is None:
            records.append(record)
        elif record.kind == "custom":
            records.append(_current_custom(record, submodule, custom_modules))
        else:
            records.append(_current(record, submodule, graph, borrow=borrow))
    return dataclasses.replace(graph, layers=tuple(records))


def _sharing(record: LayerRecord, shared: LayerRecord) -> LayerRecord:
    """``record`` holding the weights of ``shared``, the layer it calls again."""
    return dataclasses.replace(
        record, weights=shared.weights, recurrent=shared.recurrent, options=shared.options
    )


def _current_custom(
    record: LayerRecord,
    submodule: torch.nn.Module,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None,
) -> LayerRecord:
    """A custom layer as its module is now: by the factory mapped to the module's class,
    or as ported while the module holds what its factory builds."""
    factory = child_factory(submodule, custom_modules)
    if factory is not None:  # as torch_to_keras converts a mapped child of a module
        built = custom_child_record(record.name, submodule, record.inputs[0], factory)
        return dataclasses.replace(record, options=built.options, weights={})
    if not _same_state(submodule, custom_module(record)):
        raise UnsupportedFeatureError(
            f"layer {record.name!r} ({record.class_name}) of this KerasModel holds other "
            f"weights than its factory built it with (trained or loaded since), and a "
            f"{type(submodule).__name__} is the user's: give torch_to_keras "
            f"custom_modules={{{type(submodule).__name__}: factory}}, a function of the "
            "module returning the Keras layer that computes what it computes now"
        )
    return record


def _same_state(module: torch.nn.Module, built: torch.nn.Module) -> bool:
    now, then = module.state_dict(), built.state_dict()
    return now.keys() == then.keys() and all(
        now[key].shape == then[key].shape and torch.equal(now[key], then[key]) for key in now
    )


def _current(
    record: LayerRecord, submodule: torch.nn.Module, graph: ModelGraph, *, borrow: bool
) -> LayerRecord:
    if record.recurrent is not None:
        if not isinstance(submodule, Recurrent):
            raise _unreadable(record, f"its module is a {type(submodule).__name__} now")
        layer = read_layer(submodule.rnn, 0, submodule.layer, borrow=borrow)
        return dataclasses.replace(record, recurrent=layer)
    if record.kind == "time_distributed":
        if not isinstance(submodule, TimeDistributed) or not isinstance(
            submodule.layer, KerasModel
        ):
            raise _unreadable(record, f"its module is a {type(submodule).__name__} now")
        inner = current_graph(submodule.layer, borrow=borrow)
        wrapped = inner.layer(record.options["layer"].name)
        return dataclasses.replace(record, options={**record.options, "layer": wrapped})
    if not record.weights:
        return record
    return dataclasses.replace(record, weights=_read_weights(record, submodule, graph))


def _read_weights(
    record: LayerRecord, submodule: torch.nn.Module, graph: ModelGraph
) -> dict[str, np.ndarray]:
    """The record's weights, found in ``submodule`` where a probe build puts each element."""
    probes, start = {}, _FIRST_ID
    for key, value in record.weights.items():
        probes[key] = (start + np.arange(value.size, dtype=np.float64)).reshape(value.shape)
        start += value.size
    probe = layer_module(dataclasses.replace(record, weights=probes), graph, KerasModel)
    assert probe is not None  # a record with weights has a module
    if type(probe) is not type(submodule):
        raise _unreadable(
            record, f"its module is a {type(submodule).__name__} now, not a {type(probe).__name__}"
        )
    now = submodule.state_dict()
    where = np.full(start - _FIRST_ID, -1, dtype=np.int64)  # element -> position in `held`
    held, offset = [], 0
    for name, tensor in probe.state_dict().items():
        if name not in now or now[name].shape != tensor.shape:
            raise _unreadable(record, f"its state_dict differs from a fresh build's at {name!r}")
        ids = tensor.detach().cpu().to(torch.float64).reshape(-1).numpy()
        hit = np.nonzero((ids >= _FIRST_ID) & (ids < start) & (ids == np.round(ids)))[0]
        where[(ids[hit] - _FIRST_ID).astype(np.int64)] = offset + hit
        held.append(tensor_to_numpy(now[name].detach().cpu()).astype(np.float64).reshape(-1))
        offset += ids.size
    if (where < 0).any():
        raise _unreadable(record, "its module computes from its weights instead of holding them")
    values = np.concatenate(held) if held else np.zeros(0)
    return {
        key: values[where[(probes[key] - _FIRST_ID).astype(np.int64)]].astype(
            record.weights[key].dtype
        )
        for key in record.weights
    }


def _unreadable(record: LayerRecord, why: str) -> UnsupportedFeatureError:
    return UnsupportedFeatureError(
        f"layer {record.name!r} ({record.class_name}, kind {record.kind!r}) of this KerasModel "
        f"cannot be read back: {why}. Convert the Keras original instead, or convert the "
        "module's parts with torch_to_keras(..., submodule=...)"
    )


__all__ = ["current_graph"]
