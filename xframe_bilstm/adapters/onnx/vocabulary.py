"""What export, import and the runners agree on: the ONNX vocabulary of recurrent layers.

Operator names per cell, directions, the canonical activations ONNX can express with their
``alpha``/``beta``, which ONNX activations read those values, the graph's input names, and
the opsets that features need. Importing this module imports no framework.
"""

from __future__ import annotations

from typing import Any

from ...canonical import RecurrentLayer, RecurrentStack, layer_state_names

# The lowest opset whose LSTM/GRU/RNN match today's (opset 7 dropped ``output_sequence``).
MIN_OPSET = 7
# Reversing a dynamic time axis needs Slice with negative steps (opset 10).
REVERSE_OPSET = 10
# Repeating the last valid output over padding needs Range (opset 11).
CARRY_OPSET = 11

OP_BY_CELL = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "RNN"}
CELL_BY_OP = {op: cell for cell, op in OP_BY_CELL.items()}
ONNX_DIRECTION = {"forward": "forward", "backward": "reverse", "bidirectional": "bidirectional"}

# Canonical activation -> (ONNX RNN activation, alpha, beta); None keeps the ONNX default.
# Keras 3's hard_sigmoid is x/6 + 0.5; ONNX's HardSigmoid defaults (0.2, 0.5) are Keras 2's.
ONNX_ACTIVATIONS: dict[str, tuple[str, float | None, float | None]] = {
    "tanh": ("Tanh", None, None),
    "sigmoid": ("Sigmoid", None, None),
    "relu": ("Relu", None, None),
    "hard_sigmoid_keras3": ("HardSigmoid", 1.0 / 6.0, 0.5),
    "hard_sigmoid_keras2": ("HardSigmoid", 0.2, 0.5),
    "linear": ("Affine", 1.0, 0.0),
    "softsign": ("Softsign", None, None),
    "softplus": ("Softplus", None, None),
    "elu": ("Elu", 1.0, None),
}

# Which ONNX RNN activations read an alpha and a beta. onnxruntime hands out
# ``activation_alpha`` and ``activation_beta`` (two separate lists) in order, one value to
# each activation that reads it; activations that read none take no entry.
READS_ALPHA_BETA = {
    "Relu": (False, False),
    "Tanh": (False, False),
    "Sigmoid": (False, False),
    "Affine": (True, True),
    "LeakyRelu": (True, False),
    "ThresholdedRelu": (True, False),
    "ScaledTanh": (True, True),
    "HardSigmoid": (True, True),
    "Elu": (True, False),
    "Softsign": (False, False),
    "Softplus": (False, False),
}
# Defaults where an activation reads a value the lists do not provide (onnxruntime's).
DEFAULT_ALPHA_BETA = {
    "LeakyRelu": (0.01, 0.0),
    "HardSigmoid": (0.2, 0.5),
    "Elu": (1.0, 0.0),
}

# ONNX's default activation of each slot when a node names none (LSTM f, g, h; GRU f, g; RNN f).
DEFAULT_ACTIVATIONS = {
    "lstm": ("Sigmoid", "Tanh", "Tanh"),
    "gru": ("Sigmoid", "Tanh"),
    "simple_rnn": ("Tanh",),
}

LENGTHS_INPUT = "lengths"
X_INPUT = "x"


def activation_refusal(layer: RecurrentLayer) -> str | None:
    """Why ``layer``'s activations have no ONNX recurrent node, or None when they have one.

    Example:
        >>> import numpy as np
        >>> from xframe_bilstm.canonical import DirectionWeights
        >>> w = DirectionWeights(np.zeros((1, 1)), np.zeros((1, 1)))
        >>> layer = RecurrentLayer("simple_rnn", 1, 1, (w,), activation="gelu",
        ...                        recurrent_activation=None)
        >>> activation_refusal(layer)[:38]
        "activation ['gelu'] has no ONNX recurr"
    """
    used = (layer.activation, layer.recurrent_activation)
    missing = sorted({name for name in used if name and name not in ONNX_ACTIVATIONS})
    if not missing:
        return None
    return (
        f"activation {missing} has no ONNX recurrent activation; supported: "
        f"{sorted(ONNX_ACTIVATIONS)}"
    )


def initial_state_input_names(stack: RecurrentStack) -> tuple[str, ...]:
    """Graph input names of every layer's initial states, in Keras order.

    One layer: ``initial_h``, ``initial_c`` (``initial_h_forward``, ... when bidirectional);
    several: the same with a ``layer{i}_`` prefix.

    Example:
        >>> import numpy as np
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((3, 8)), np.zeros((2, 8)))
        >>> layer = RecurrentLayer("lstm", 3, 2, (w, w), "bidirectional")
        >>> initial_state_input_names(RecurrentStack((layer,)))
        ('initial_h_forward', 'initial_c_forward', 'initial_h_backward', 'initial_c_backward')
        >>> initial_state_input_names(RecurrentStack((layer, layer.__class__(
        ...     "lstm", 4, 2, (w.__class__(np.zeros((4, 8)), np.zeros((2, 8))),)))))[-2:]
        ('layer1_initial_h', 'layer1_initial_c')
    """
    several = len(stack.layers) > 1
    return tuple(
        (f"layer{index}_" if several else "") + "initial_" + name
        for index, layer in enumerate(stack.layers)
        for name in layer_state_names(layer)
    )


def ir_version(onnx: Any, opset: int) -> int:
    """The oldest IR version that knows ``opset``, so that older runtimes load the model.

    At least 4, from which initializers need not be listed as graph inputs.
    """
    return max(4, int(onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])))
