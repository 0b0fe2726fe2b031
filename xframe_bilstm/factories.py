"""Random canonical layers whose weights cannot hide a permutation or bias bug.

Every gate block gets its own scale and every bias is non-zero, so swapping two gates,
transposing a kernel or dropping one bias row changes the outputs. The tests, the
benchmarks and the regression matrix draw their models here (and the small tagger graph of
:func:`tagger_graph`); numpy only.

Example:
    >>> import numpy as np
    >>> stack = random_stack(
    ...     np.random.default_rng(0), "gru", 3, 4, num_layers=2, direction="bidirectional"
    ... )
    >>> [(layer.input_size, layer.output_size) for layer in stack.layers]
    [(3, 8), (8, 8)]
    >>> bias = stack.layers[0].weights[0].bias  # reset_after: two rows, none near zero
    >>> bias.shape, bool(np.all(np.abs(bias) >= 0.1))
    ((2, 12), True)
"""

from __future__ import annotations

import numpy as np

from .canonical import DirectionWeights, RecurrentLayer, RecurrentStack
from .gates import CANONICAL_ORDER
from .graph import LayerRecord, ModelGraph


def random_direction(
    rng: np.random.Generator,
    cell: str,
    input_size: int,
    units: int,
    *,
    bias: str = "single",
    scale: float = 1.0,
    dtype: type[np.floating] = np.float64,
) -> DirectionWeights:
    """Weights with gate ``k`` scaled by ``(0.4 + 0.3 k) * scale``, divided by the fan-in's
    square root; ``bias`` is none, single or split, its entries ±0.1 to ±0.5.

    Example:
        >>> import numpy as np
        >>> weights = random_direction(np.random.default_rng(0), "lstm", 300, 200)
        >>> spread = weights.kernel.std(axis=0).reshape(4, 200).mean(axis=1) * np.sqrt(300)
        >>> [round(float(s), 1) for s in spread]  # gates i, f, c, o
        [0.4, 0.7, 1.0, 1.3]
    """
    gates = len(CANONICAL_ORDER[cell])
    scales = np.repeat(0.4 + 0.3 * np.arange(gates), units) * scale  # (G·H,)
    kernel = rng.standard_normal((input_size, gates * units)) * scales / np.sqrt(input_size)
    recurrent = rng.standard_normal((units, gates * units)) * scales / np.sqrt(units)
    shape = {"none": None, "single": (gates * units,), "split": (2, gates * units)}[bias]
    bias_array = (
        None if shape is None else rng.uniform(0.1, 0.5, shape) * rng.choice([-1, 1], shape)
    )
    return DirectionWeights(
        kernel.astype(dtype),
        recurrent.astype(dtype),
        None if bias_array is None else bias_array.astype(dtype),
    )


def random_layer(
    rng: np.random.Generator,
    cell: str,
    input_size: int,
    units: int,
    *,
    direction: str = "forward",
    merge_mode: str | None = "concat",
    bias: str | None = None,
    activation: str = "tanh",
    recurrent_activation: str | None = "sigmoid",
    reset_after: bool | None = None,
    zero_masked_outputs: bool = False,
    scale: float = 1.0,
    dtype: type[np.floating] = np.float64,
) -> RecurrentLayer:
    """A layer with random weights; ``bias`` defaults to the layout Keras uses for ``cell``
    (a GRU's ``reset_after`` defaults to True, as in Keras)."""
    if cell == "gru" and reset_after is None:
        reset_after = True
    if bias is None:
        bias = "split" if cell == "gru" and reset_after else "single"
    count = 2 if direction == "bidirectional" else 1
    weights = tuple(
        random_direction(rng, cell, input_size, units, bias=bias, scale=scale, dtype=dtype)
        for _ in range(count)
    )
    return RecurrentLayer(
        cell,
        input_size,
        units,
        weights,
        direction=direction,
        merge_mode=merge_mode,
        activation=activation,
        recurrent_activation=None if cell == "simple_rnn" else recurrent_activation,
        reset_after=reset_after if cell == "gru" else None,
        zero_masked_outputs=zero_masked_outputs,
    )


def random_stack(
    rng: np.random.Generator,
    cell: str,
    input_size: int,
    units: int,
    *,
    num_layers: int = 1,
    return_sequences: bool = True,
    return_state: bool = False,
    **layer_options: object,
) -> RecurrentStack:
    """``num_layers`` alike layers (``layer_options`` go to :func:`random_layer`); all but the
    last concatenate their directions."""
    layers = []
    size = input_size
    for index in range(num_layers):
        options = dict(layer_options)
        if index < num_layers - 1:
            options["merge_mode"] = "concat"
        layer = random_layer(rng, cell, size, units, **options)  # type: ignore[arg-type]
        layers.append(layer)
        size = layer.output_size
    return RecurrentStack(tuple(layers), return_sequences, return_state)


def tagger_graph(
    embeddings: np.ndarray,
    layer: RecurrentLayer,
    kernel: np.ndarray,
    bias: np.ndarray,
    *,
    return_sequences: bool = True,
    activation: str = "linear",
) -> ModelGraph:
    """ids → Embedding(mask_zero) → Bidirectional ``layer`` (named ``bidi``) → Dense: a
    tagger (the Dense on every step) with ``return_sequences``, else a classifier. The
    arrays are the graph's own, uncopied.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> layer = random_layer(rng, "lstm", 3, 4, direction="bidirectional")
        >>> graph = tagger_graph(np.ones((9, 3)), layer, np.ones((8, 2)), np.zeros(2))
        >>> graph.name, [record.class_name for record in graph.layers]
        ('tagger', ['InputLayer', 'Embedding', 'Bidirectional', 'TimeDistributed'])
    """
    recurrent = {"return_sequences": return_sequences, "time_major": False, "unroll": False}
    dense = {"activation": activation, "time_distributed": return_sequences}
    return ModelGraph(
        "tagger" if return_sequences else "classifier",
        (
            LayerRecord("ids", "input", "InputLayer", options={"shape": (None,), "dtype": "int32"}),
            LayerRecord(
                "embedding",
                "embedding",
                "Embedding",
                ("ids",),
                {"mask_zero": True},
                {"embeddings": embeddings},
            ),
            LayerRecord(
                "bidi", "recurrent", "Bidirectional", ("embedding",), recurrent, recurrent=layer
            ),
            LayerRecord(
                "dense",
                "dense",
                "TimeDistributed" if return_sequences else "Dense",
                ("bidi",),
                dense,
                {"kernel": kernel, "bias": bias},
            ),
        ),
        inputs=("ids",),
        outputs=("dense",),
    )
