"""``lint()``: the traps in a Keras model, and what the port does about each.

Rules of this module:

- It reads the configuration only (no weights, no framework for files), so it runs on
  models that cannot be ported too, and lists their unsupported layers among the traps.
- Each :class:`Trap` names the layer, the trap, what it means, and the port's action:
  ``"converted"`` (reproduced exactly, e.g. Keras 2's hard sigmoid), ``"explicit loop"``
  (exact, without a native torch module), ``"no effect"`` (harmless in this model) or
  ``"refused"`` (the port raises).
- Traps: Keras 2 versus Keras 3 ``hard_sigmoid``; CuDNNLSTM/CuDNNGRU weight layouts; GRU
  ``reset_after=False``; ``unroll=True`` with masks and ``go_backwards`` (a Keras bug zeroes
  valid backward outputs); ``time_major``; masks and left padding; Keras 2 concatenation
  of masks; Keras 3's bias of channels-first convolutions on TensorFlow, added along the
  last axis where its size equals the filters; ``RNN`` layers of unsupported cells, and of
  ``StackedRNNCells`` (a chain of
  layers, one per cell; refused in ``Bidirectional`` and with ``go_backwards`` under a
  mask); attention layers (:mod:`.attention`); unsupported layers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UnsupportedFeatureError
from ..graph import MASK_RULES
from ..keras_files.config import LayerSpec, ModelSpec, parse_layers
from ..keras_files.config.cells import as_plain, cell_entries, is_stacked
from .attention import KINDS as ATTENTION_KINDS
from .attention import attention_traps
from .normpool import KINDS as NORMPOOL_KINDS
from .normpool import normpool_traps


@dataclass(frozen=True)
class Trap:
    """One trap in one layer.

    Example:
        >>> str(Trap("lstm", "LSTM", "time_major", "reads axis 0 as time", "converted"))
        'lstm (LSTM): time_major: reads axis 0 as time [converted]'
    """

    layer: str
    class_name: str
    trap: str
    detail: str
    action: str

    def __str__(self) -> str:
        return f"{self.layer} ({self.class_name}): {self.trap}: {self.detail} [{self.action}]"


def _spec_of(source: Any) -> ModelSpec:
    if isinstance(source, (str, os.PathLike)):
        from ..keras_files import read_spec

        return read_spec(os.fspath(source), strict=False)
    from ..models.live import keras_flavour, spec_from_keras

    if keras_flavour(source) is not None:
        return spec_from_keras(source, strict=False)
    import sys

    keras = sys.modules.get("keras")
    if keras is not None and isinstance(source, keras.layers.Layer):
        config = {
            "class_name": "Sequential",
            "config": {
                "name": source.name,
                "layers": [keras.saving.serialize_keras_object(source)],
            },
        }
        return parse_layers(config, major=3, source=f"layer {source.name!r}", strict=False)
    raise UnsupportedFeatureError(
        f"{type(source).__name__}: lint reads Keras model files (.keras, .h5), Keras 3 or "
        "tf_keras models and Keras 3 layers"
    )


def _halves(layer: LayerSpec) -> list[tuple[str, Mapping[str, Any]]]:
    """(class, config) of each recurrent layer inside ``layer`` (one, a wrapper's two, or
    the plain layer of each cell of an ``RNN``)."""
    if layer.class_name == "Bidirectional":
        halves = []
        for key in ("layer", "backward_layer"):
            inner = layer.config.get(key)
            if isinstance(inner, Mapping):
                halves.extend(_plain(str(inner.get("class_name")), inner.get("config", {})))
        return halves
    return _plain(layer.class_name, layer.config)


def _plain(class_name: str, config: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The plain layers an ``RNN`` runs, one per cell (none when a cell is unsupported)."""
    if class_name != "RNN":
        return [(class_name, config)]
    try:
        return [as_plain(cell, config) for cell in cell_entries(config, "")]
    except UnsupportedFeatureError:
        return []


def _names(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("config")
    return value if isinstance(value, str) else None


def _masked_layers(spec: ModelSpec) -> dict[str, bool]:
    masked: dict[str, bool] = {}
    for layer in spec.layers:
        incoming = [masked.get(name, False) for name in layer.inputs]
        rule = MASK_RULES.get(layer.kind, "drop")
        first = bool(incoming and incoming[0])
        if layer.kind == "masking" or (layer.kind == "embedding" and layer.config.get("mask_zero")):
            masked[layer.name] = True
        elif rule == "keep":
            masked[layer.name] = first
        elif rule == "sequences":
            halves = _halves(layer)
            sequences = bool(halves and halves[0][1].get("return_sequences"))
            masked[layer.name] = first and sequences
        elif rule == "merge":
            masked[layer.name] = any(incoming)
        else:
            masked[layer.name] = False
    return masked


def lint(source: Any) -> list[Trap]:
    """List the traps in a Keras model, a model file or a Keras 3 layer.

    Args:
        source: a ``.keras``/``.h5`` path, a Keras 3 or tf_keras model, or a Keras 3 layer.

    Returns:
        The :class:`Trap` objects, layer by layer; empty when there is nothing to watch.

    Example:
        >>> traps = lint("legacy_classifier.h5")  # doctest: +SKIP
        >>> print(traps[0])  # doctest: +SKIP
        bidi (Bidirectional): hard_sigmoid: ... [converted]
    """
    spec = _spec_of(source)
    masked = _masked_layers(spec)
    keras2 = spec.major < 3
    traps: list[Trap] = []

    def add(layer: LayerSpec, trap: str, detail: str, action: str) -> None:
        traps.append(Trap(layer.name, layer.class_name, trap, detail, action))

    for layer in spec.layers:
        if not layer.kind:
            add(layer, "unsupported layer", f"{layer.class_name} has no port", "refused")
            continue
        reads_mask = any(masked.get(name, False) for name in layer.inputs)
        if layer.kind == "recurrent":
            _cell_traps(layer, add, reads_mask=reads_mask)
            _recurrent_traps(layer, add, keras2=keras2, reads_mask=reads_mask)
        if layer.kind in NORMPOOL_KINDS:
            normpool_traps(layer, add, reads_mask=reads_mask)
        if layer.kind in ATTENTION_KINDS:
            attention_traps(layer, spec, masked, add)
        if layer.kind == "masking" or (layer.kind == "embedding" and layer.config.get("mask_zero")):
            add(
                layer,
                "masks and left padding",
                "this layer masks padded steps; pad_sequences pads on the left by default, "
                "which packed sequences and cuDNN's sequence lengths cannot express; the port "
                "moves each row's valid steps together and is exact for right padding, left "
                "padding and holes",
                "converted",
            )
        if layer.kind in ("conv", "conv_transpose") and not keras2 and _channels_first_bias(layer):
            add(
                layer,
                "channels-first bias",
                "Keras 3 on TensorFlow adds this layer's bias along the last axis, not the "
                "channels, wherever that axis has as many positions as there are filters (its "
                "ops.add reads a (1, filters, 1) operand as an NHWC bias); the port adds it on "
                "the channels for every size",
                "converted",
            )
        if layer.kind == "concatenate" and keras2 and reads_mask:
            add(
                layer,
                "concatenated masks",
                "Keras 2 keeps a step only where every input's mask keeps it (Keras 3: where "
                "any does); the port keeps Keras 2's rule for this Keras 2 model",
                "converted",
            )
        if layer.kind == "merge" and keras2 and reads_mask:
            add(
                layer,
                "merged masks",
                "Keras 2 keeps a step only where every input's mask keeps it and ignores masks "
                "in the values (Keras 3 keeps it where any does, and counts masked values as 1 "
                "in Multiply or the other input's in Maximum/Minimum); the port keeps Keras 2's "
                "rules for this Keras 2 model",
                "converted",
            )
    return traps


def _channels_first_bias(layer: LayerSpec) -> bool:
    """Whether a Keras convolution adds a bias to channels-first outputs (this package's own
    channels-first convolutions add it on the channels)."""
    config = layer.config
    native = not layer.class_name.startswith("xframe_bilstm>")
    return native and config.get("data_format") == "channels_first" and config.get("use_bias", True)


def _cell_traps(layer: LayerSpec, add: Any, *, reads_mask: bool) -> None:
    """Traps of ``RNN(cell)`` layers: unsupported cells, and stacked cells."""
    inner = layer.config.get("layer") if layer.class_name == "Bidirectional" else None
    if isinstance(inner, Mapping):
        rnn = LayerSpec(layer.name, str(inner.get("class_name")), "", inner.get("config", {}))
        if is_stacked(rnn):
            add(
                layer,
                "StackedRNNCells in Bidirectional",
                "each half runs several cells; no layer of the port computes that",
                "refused",
            )
            return
    else:
        rnn = layer
    if rnn.class_name != "RNN":
        return
    try:
        cells = cell_entries(rnn.config, "")
    except UnsupportedFeatureError as error:
        add(layer, "unsupported cell", str(error).lstrip(": "), "refused")
        return
    if not is_stacked(rnn) or inner is not None:
        return
    names = ", ".join(name for name, _ in cells)
    if rnn.config.get("go_backwards") and reads_mask:
        add(
            layer,
            "StackedRNNCells with go_backwards and a mask",
            f"its cells ({names}) all run over the reversed sequence and mask; a chain of "
            "layers passes the mask on in input order; port it without the mask, or with "
            "go_backwards=False",
            "refused",
        )
        return
    add(
        layer,
        "StackedRNNCells",
        f"each of its cells ({names}) feeds the next at every step; the port runs one "
        f"recurrent layer per cell ({layer.name}_cell_0, ..., then {layer.name}), which is "
        "exact",
        "converted",
    )


def _recurrent_traps(layer: LayerSpec, add: Any, *, keras2: bool, reads_mask: bool) -> None:
    halves = _halves(layer)
    if not halves:
        return
    class_name, config = halves[0]
    if class_name in ("CuDNNLSTM", "CuDNNGRU"):
        add(
            layer,
            "cuDNN weight layout",
            f"{class_name} stores per-gate transposed kernels and a doubled bias; Keras 3 "
            "cannot load it; the port rearranges the weights exactly",
            "converted",
        )
    activations = {
        _names(config.get(key))
        for _, config in halves
        for key in ("activation", "recurrent_activation")
    }
    if "hard_sigmoid" in activations:
        if keras2:
            add(
                layer,
                "hard_sigmoid",
                "saved by Keras 2, where hard_sigmoid is clip(0.2x + 0.5); Keras 3 would "
                "load it as clip(x/6 + 0.5) without a warning; the port keeps Keras 2's "
                "function (on an exact explicit loop)",
                "converted",
            )
        else:
            add(
                layer,
                "hard_sigmoid",
                "Keras 3's hard_sigmoid is clip(x/6 + 0.5), not Keras 2's or ONNX's default "
                "clip(0.2x + 0.5); the port computes Keras 3's (on an exact explicit loop)",
                "explicit loop",
            )
    if any(name == "GRU" and not config.get("reset_after", False) for name, config in halves):
        add(
            layer,
            "GRU reset_after=False",
            "the reset gate applies before the recurrent product; nn.GRU cannot compute "
            "that, so the port runs an exact explicit loop with nn.GRU's parameter names",
            "explicit loop",
        )
    if any(config.get("time_major") for _, config in halves):
        add(
            layer,
            "time_major",
            "Keras 2 only (Keras 3 refuses the option when loading): the layer reads axis "
            "0 as time; the port transposes around a batch-first module"
            + ("; under a mask the axes no longer match" if reads_mask else ""),
            "refused" if reads_mask else "converted",
        )
    unrolled = any(config.get("unroll") for _, config in halves)
    backwards = layer.class_name == "Bidirectional" or bool(config.get("go_backwards"))
    if unrolled and backwards:
        sequences = bool(config.get("return_sequences"))
        zeroes = layer.class_name == "Bidirectional" or bool(config.get("zero_output_for_mask"))
        bites = reads_mask and sequences and zeroes
        add(
            layer,
            "unroll=True with go_backwards",
            "with a mask, Keras's unrolled loop zeroes valid backward outputs (a Keras bug)"
            + (
                "; this layer reads a mask, and no port reproduces the bug: rebuild it with "
                "unroll=False"
                if bites
                else "; it cannot bite here (no mask reaches the layer, or no zeroed outputs)"
            ),
            "refused" if bites else "no effect",
        )


__all__ = ["Trap", "lint"]
