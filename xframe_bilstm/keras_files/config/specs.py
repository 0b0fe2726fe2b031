"""What a configuration says of each layer: its kind, its options and what it reads.

``KIND_BY_CLASS`` lists the layer classes a port supports, by what they compute.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import UnsupportedFeatureError
from .attention import KIND_BY_CLASS as ATTENTION_KINDS
from .normpool import KIND_BY_CLASS as NORMPOOL_KINDS
from .tensor_ops import KIND_BY_CLASS as TENSOR_OP_KINDS

KIND_BY_CLASS = {
    "InputLayer": "input",
    "Embedding": "embedding",
    "Masking": "masking",
    "Dropout": "identity",
    "SpatialDropout1D": "identity",
    "SpatialDropout2D": "identity",
    "SpatialDropout3D": "identity",
    "Identity": "identity",
    "GaussianNoise": "identity",
    "GaussianDropout": "identity",
    "AlphaDropout": "identity",
    "ActivityRegularization": "identity",
    "LSTM": "recurrent",
    "GRU": "recurrent",
    "SimpleRNN": "recurrent",
    "CuDNNLSTM": "recurrent",
    "CuDNNGRU": "recurrent",
    "Bidirectional": "recurrent",
    "RNN": "recurrent",  # of LSTMCell, GRUCell, SimpleRNNCell or StackedRNNCells of them
    "Dense": "dense",
    "TimeDistributed": "time_distributed",
    "Activation": "activation",
    "Flatten": "flatten",
    "Reshape": "reshape",
    "GlobalMaxPooling1D": "global_pool",
    "GlobalMaxPool1D": "global_pool",
    "GlobalAveragePooling1D": "global_pool",
    "GlobalAvgPool1D": "global_pool",
    "Concatenate": "concatenate",
    "Conv1D": "conv",
    "Convolution1D": "conv",
    "Conv2D": "conv",
    "Convolution2D": "conv",
    **dict.fromkeys(
        ["DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"], "depthwise"
    ),
    **dict.fromkeys(["SeparableConvolution1D", "SeparableConvolution2D"], "depthwise"),
    "Conv1DTranspose": "conv_transpose",
    "Convolution1DTranspose": "conv_transpose",
    "Conv2DTranspose": "conv_transpose",
    "Convolution2DTranspose": "conv_transpose",
    "ZeroPadding1D": "zero_padding",
    "ZeroPadding2D": "zero_padding",
    "Cropping1D": "cropping",
    "Cropping2D": "cropping",
    "Add": "merge",
    "Subtract": "merge",
    "Multiply": "merge",
    "Average": "merge",
    "Maximum": "merge",
    "Minimum": "merge",
    "Permute": "permute",
    "RepeatVector": "repeat_vector",
    "Dot": "matmul",
    "Rescaling": "rescaling",
    "UpSampling1D": "upsampling",
    "UpSampling2D": "upsampling",
    "ReLU": "relu",
    "LeakyReLU": "relu",
    "ThresholdedReLU": "relu",
    "ELU": "elu",
    "PReLU": "prelu",
    "Softmax": "softmax",
    **NORMPOOL_KINDS,
    **ATTENTION_KINDS,
    **TENSOR_OP_KINDS,
}
SUPPORTED_CLASSES = tuple(sorted(KIND_BY_CLASS))


def kind_of(class_name: str) -> str:
    """The kind of a layer class: a supported class's, ``"custom"`` for a class mapped to a
    factory (:mod:`xframe_bilstm.custom`), ``""`` for anything else.

    Example:
        >>> kind_of("Dense"), kind_of("SqueezeLayer")
        ('dense', '')
    """
    from ...custom import is_custom_class

    return KIND_BY_CLASS.get(class_name) or ("custom" if is_custom_class(class_name) else "")


@dataclass(frozen=True)
class LayerSpec:
    """One layer as its configuration describes it, before its weights are read.

    ``position`` counts the model's layers (operation nodes excluded) in configuration
    order; ``.keras`` files name weight groups by it. ``call`` holds the options of the
    layer's call that change what it computes (an attention's ``use_causal_mask``), and an
    input's batch size where the file fixes it. A layer called on several inputs (shared)
    is one spec per call: ``shares`` names the layer of a later call, whose weights it
    holds (its own ``name`` is the call's, :func:`call_name`). ``path`` says where the
    weights of a nested model's layer are: the nested models' names, outermost first, then
    the layer's own; empty for a layer of the model itself.
    """

    name: str
    class_name: str
    kind: str
    config: Mapping[str, Any]
    inputs: tuple[str, ...] = ()
    position: int = 0
    call: Mapping[str, Any] = field(default_factory=dict)
    shares: str = ""
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class NestedModel:
    """A model used as a layer: its name, class and position among the layers around it,
    and its own spec, whose layers are read inline (:mod:`.nested`)."""

    name: str
    class_name: str
    position: int
    spec: ModelSpec


@dataclass(frozen=True)
class ModelSpec:
    """A parsed configuration: the model's name, layers, inputs and outputs."""

    name: str
    layers: tuple[LayerSpec, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    major: int
    source: str
    # A Sequential returns every tensor of its last layer (the final states too).
    sequential: bool = False
    nested: tuple[NestedModel, ...] = ()

    def where(self, layer: LayerSpec) -> str:
        """``source: layer 'name' (Class)``, the start of a message about ``layer``."""
        return f"{self.source}: layer {layer.name!r} ({layer.class_name})"


def call_name(layer: str, node_index: int) -> str:
    """The name of a layer's call in the graph: the layer's for its first call, and
    ``layer@k`` for call ``k`` of a layer called on several inputs (a shared layer).

    Example:
        >>> call_name("lstm", 0), call_name("lstm", 1)
        ('lstm', 'lstm@1')
    """
    return f"{layer}@{node_index}" if node_index else layer


def layer_name(entry: Mapping[str, Any]) -> str:
    """The name of a layer's configuration entry; refused when it has none."""
    name = entry.get("name") or entry.get("config", {}).get("name")
    if not isinstance(name, str) or not name:
        raise UnsupportedFeatureError(f"a layer configuration has no name: {entry!r:.200}")
    return name


def input_spec(name: str, batch_shape: Any, dtype: Any, position: int) -> LayerSpec:
    """The spec of a model input of ``batch_shape`` (None when the file does not say); a
    batch size it fixes is kept as its call's ``batch_size``."""
    given = isinstance(batch_shape, (list, tuple))
    shape = tuple(batch_shape[1:]) if given else (None,)
    return LayerSpec(
        name,
        "InputLayer",
        "input",
        {"shape": shape, "dtype": dtype if isinstance(dtype, str) else "float32"},
        position=position,
        call={"batch_size": batch_shape[0]} if given and batch_shape[0] is not None else {},
    )


def sub_config(
    config: Mapping[str, Any], key: str, layer: LayerSpec, source: str
) -> tuple[str, Mapping[str, Any]]:
    """(class, config) of the layer a wrapper holds under ``key``."""
    inner = config.get(key)
    if not isinstance(inner, Mapping) or "class_name" not in inner:
        raise UnsupportedFeatureError(
            f"{source}: layer {layer.name!r} ({layer.class_name}) has no {key!r} configuration"
        )
    return str(inner["class_name"]), inner.get("config", {})
