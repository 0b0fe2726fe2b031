"""PyTorch to Keras 3 for ``nn.Sequential``-like modules, and state_dict files to modules.

Rules of this module:

- A module is read as its children in order: an ``nn.Sequential``, or any module whose
  ``forward`` calls its children one after another, passing on each recurrent child's
  output sequence (``output`` of ``output, states = rnn(x)``), which
  :func:`~xframe_bilstm.models.torch_forward.check_forward` checks first. The children:
  ``nn.Embedding``, ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (``batch_first=True``),
  ``nn.Linear`` (applied to the last axis, as Keras's ``Dense``), ``nn.Dropout`` and
  activations. Anything else raises :class:`~xframe_bilstm.errors.UnsupportedFeatureError`
  naming the child and its class.
- Recurrent children go through the canonical form, one Keras layer per torch layer, as
  :func:`~xframe_bilstm.torch_to_keras` converts them; ``nn.Linear`` weights are transposed
  into a ``Dense`` kernel. The result is a plain ``keras.Sequential`` that saves as
  ``.keras`` and loads back with ``keras.models.load_model``.
- A state_dict file is read with ``torch.load(weights_only=True)`` or safetensors, never
  unpickled otherwise (a TorchScript archive is refused from its zip directory alone), and
  rebuilt with :func:`~xframe_bilstm.adapters.torch.module_from_state_dict` once every key
  is accounted for (:func:`~xframe_bilstm.state_dicts.recurrent_entries`).
"""

from __future__ import annotations

import itertools
import pickle
import zipfile
from pathlib import Path
from typing import Any

from .._imports import require
from ..canonical import RecurrentStack
from ..errors import UnsupportedFeatureError, WeightShapeError
from ..state_dicts import recurrent_entries

# torch activation module class -> Keras activation name.
_ACTIVATIONS = {
    "ReLU": "relu",
    "Tanh": "tanh",
    "Sigmoid": "sigmoid",
    "Hardsigmoid": "hard_sigmoid",
    "ELU": "elu",
    "SELU": "selu",
    "SiLU": "silu",
    "Softplus": "softplus",
    "Softsign": "softsign",
    "Identity": "linear",
}
# Files read by the torch side: state_dicts and checkpoints, and TorchScript archives
# (.jit, .ts), which are refused by name without being loaded.
TORCH_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".jit", ".ts")
# Where training checkpoints keep the model's state_dict, in the order they are tried.
CHECKPOINT_KEYS = ("model_state_dict", "state_dict", "model")


def load_state_dict_module(
    path: str | Path, *, nonlinearity: str = "tanh", submodule: str | None = None
) -> Any:
    """The ``nn.LSTM``/``nn.GRU``/``nn.RNN`` whose state_dict ``path`` holds.

    The file may hold the state_dict itself or a training checkpoint that holds it under
    one of :data:`CHECKPOINT_KEYS` (``{"epoch": 3, "model_state_dict": ...}``, the PyTorch
    tutorials' layout). Every key must be the recurrent module's
    (:func:`~xframe_bilstm.state_dicts.recurrent_entries`): a whole model's state_dict is
    refused with the keys that would be left out, unless ``submodule`` names the part to
    take.

    Args:
        path: a ``torch.save`` file (read with ``weights_only=True``) or ``.safetensors``.
        nonlinearity: an ``nn.RNN``'s, which its weights do not record.
        submodule: convert only the keys under ``submodule + "."`` (e.g. ``"lstm"`` of a
            model with ``emb``, ``lstm`` and ``fc``).

    Returns:
        The module, with ``checkpoint_key`` (the checkpoint key its state_dict was read
        from, or None for a bare state_dict) and ``converted_part`` (``submodule``: the part
        of the file it holds, or None when it holds the whole file).

    Example:
        >>> import torch
        >>> torch.save({"epoch": 3, "model_state_dict": torch.nn.LSTM(3, 2).state_dict()},
        ...            "checkpoint.pt")  # doctest: +SKIP
        >>> module = load_state_dict_module("checkpoint.pt")  # doctest: +SKIP
        >>> module, module.checkpoint_key  # doctest: +SKIP
        (LSTM(3, 2, batch_first=True), 'model_state_dict')
    """
    torch = require("torch")
    from ..adapters.torch import module_from_state_dict

    state, key = _state_dict_in(torch, _load_state(torch, path), path)
    where = f"{path}" if key is None else f"{path}[{key!r}]"
    try:
        entries = recurrent_entries(state, submodule=submodule)
        for name, tensor in entries.items():
            if not tensor.is_floating_point():
                raise WeightShapeError(f"{name} has dtype {tensor.dtype}; expected floats")
        module = module_from_state_dict(entries, nonlinearity=nonlinearity)
    except (WeightShapeError, UnsupportedFeatureError) as error:
        raise type(error)(f"{where}: {error}") from error
    module.checkpoint_key = key
    module.converted_part = submodule
    return module


def _state_dict_in(torch: Any, content: Any, path: str | Path) -> tuple[dict[str, Any], str | None]:
    """The state_dict in a file's content, and the checkpoint key it was under (or None)."""

    def is_state_dict(value: Any) -> bool:
        return isinstance(value, dict) and all(
            isinstance(key, str) and isinstance(tensor, torch.Tensor)
            for key, tensor in value.items()
        )

    if is_state_dict(content):
        return content, None
    if isinstance(content, dict):
        for key in CHECKPOINT_KEYS:
            if is_state_dict(content.get(key)):
                return content[key], key
        found = ", ".join(repr(key) for key in list(content)[:12])
        more = f" and {len(content) - 12} more" if len(content) > 12 else ""
        raise WeightShapeError(
            f"{path}: expected a state_dict (a mapping of names to tensors) or a checkpoint "
            f"holding one under {', '.join(map(repr, CHECKPOINT_KEYS))}; found a dict with "
            f"the keys {found}{more}. Save the state_dict itself: "
            "torch.save(checkpoint[KEY], 'weights.pt')"
        )
    raise WeightShapeError(
        f"{path}: expected a state_dict (a mapping of names to tensors), got "
        f"{type(content).__name__}"
    )


def _load_state(torch: Any, path: str | Path) -> Any:
    """The file's content, read without running code from it.

    ``torch.load(weights_only=True)`` unpickles only tensors and plain containers and
    refuses any other global a pickle names (a ``__reduce__`` that would call ``os.system``,
    say) before calling it; safetensors holds no code at all. Every failure, including that
    refusal, becomes an error naming the file.
    """
    if not Path(path).is_file():
        raise UnsupportedFeatureError(f"{path}: no such file")
    if _is_torchscript(path):
        raise UnsupportedFeatureError(
            f"{path}: a TorchScript archive (torch.jit.save), not a state_dict; loading it "
            "runs the code it holds, so it is not read here. If you trust it, take its "
            "weights out yourself: torch.save(torch.jit.load(path).state_dict(), "
            "'weights.pt'), and convert weights.pt (or save the state_dict of the original "
            "module instead of scripting it)"
        )
    try:
        if Path(path).suffix == ".safetensors":
            return require("safetensors.torch").load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch names the refused global ("Unsupported global: GLOBAL posix.mkdir ...").
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        named = next(
            (line for line in lines if "global" in line.lower()),
            next(
                (after for line, after in itertools.pairwise(lines) if "WeightsUnpickler" in line),
                "an instruction outside the allowed ones",
            ),
        )
        raise UnsupportedFeatureError(
            f"{path}: refused: the pickle needs code to load ({named}); only tensors and "
            "plain containers are read (torch.load(weights_only=True)); save the "
            "state_dict, or use safetensors"
        ) from error
    except Exception as error:  # corrupt zip, truncated storage, bad safetensors header...
        raise UnsupportedFeatureError(
            f"{path}: not a readable state_dict file ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else ''})"
        ) from error


def _is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a ``torch.jit.save`` zip: it holds ``code/`` and ``constants.pkl``.

    Only the zip's directory is read; nothing in it is unpickled or run.
    """
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False  # torch.load reports the damage
    return any(name.endswith("/constants.pkl") or "/code/" in name for name in names)


def is_sequential_like(module: Any) -> bool:
    """Whether ``module`` is a torch module with children (and not a recurrent module)."""
    torch = require("torch")
    return (
        isinstance(module, torch.nn.Module)
        and not isinstance(module, torch.nn.RNNBase)
        and any(True for _ in module.children())
    )


def _children(module: Any) -> list[tuple[str, Any]]:
    # nn.Sequential names children "0", "1"...: Keras names read better with the class.
    return [
        (f"{type(child).__name__.lower()}_{name}" if name.isdigit() else name, child)
        for name, child in module.named_children()
    ]


def sequential_to_keras(module: Any, *, name: str | None = None) -> Any:
    """Build a Keras 3 ``Sequential`` computing what ``module``'s children compute in order.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Embedding(10, 4),
        ...                           torch.nn.GRU(4, 3, batch_first=True),
        ...                           torch.nn.Linear(3, 2), torch.nn.Softmax(dim=-1))
        >>> [type(layer).__name__ for layer in sequential_to_keras(net).layers]
        ['Embedding', 'GRU', 'Dense', 'Activation']
    """
    torch = require("torch")
    keras = require("keras")
    from ..adapters.keras import canonical_to_keras
    from ..adapters.torch import torch_to_canonical

    children = _children(module)
    if not children:
        raise UnsupportedFeatureError(f"{type(module).__name__} has no children to convert")
    nn = torch.nn
    refused = [
        f"{name!r} ({type(child).__name__})"
        for name, child in children
        if not isinstance(child, (nn.Embedding, nn.RNNBase, nn.Linear, nn.Dropout, nn.Softmax))
        and type(child).__name__ not in _ACTIVATIONS
    ]
    if refused:
        raise UnsupportedFeatureError(
            f"cannot convert child {', '.join(refused)}; supported: Embedding, LSTM, GRU, RNN, "
            f"Linear, Dropout, Softmax(dim=-1) and {', '.join(sorted(_ACTIVATIONS))}"
        )
    first = children[0][1]
    if isinstance(first, nn.Embedding):
        layers: list[Any] = [keras.Input((None,), dtype="int32")]
    elif isinstance(first, nn.RNNBase):
        layers = [keras.Input((None, first.input_size))]
    elif isinstance(first, nn.Linear):
        layers = [keras.Input((first.in_features,))]
    else:
        raise UnsupportedFeatureError(
            f"the first child {children[0][0]!r} ({type(first).__name__}) does not fix the "
            "input size; start with an Embedding, a recurrent module or a Linear"
        )
    with torch.no_grad():
        for name, child in children:
            layers.extend(_convert(name, child, nn, keras, canonical_to_keras, torch_to_canonical))
    return keras.Sequential(layers, name=name or type(module).__name__.lower())


def _convert(
    name: str, child: Any, nn: Any, keras: Any, to_keras: Any, to_canonical: Any
) -> list[Any]:
    from ..adapters.torch import tensor_to_numpy  # bfloat16 too, which .numpy() cannot read

    if isinstance(child, nn.Embedding):
        layer = keras.layers.Embedding(child.num_embeddings, child.embedding_dim, name=name)
        layer.build((None, None))
        layer.set_weights([tensor_to_numpy(child.weight)])
        return [layer]
    if isinstance(child, nn.RNNBase):
        if not child.batch_first:
            raise UnsupportedFeatureError(
                f"child {name!r} ({type(child).__name__}) has batch_first=False; in a "
                "sequence of modules it would read the batch axis as time; use batch_first=True"
            )
        stack = to_canonical(child)
        converted = []
        for index, canonical in enumerate(stack.layers):
            if index and child.dropout:
                converted.append(
                    keras.layers.Dropout(float(child.dropout), name=f"{name}_dropout_{index}")
                )
            converted.append(
                to_keras(RecurrentStack((canonical,)), name=f"{name}_{index}" if index else name)
            )
        return converted
    if isinstance(child, nn.Linear):
        layer = keras.layers.Dense(child.out_features, use_bias=child.bias is not None, name=name)
        layer.build((None, child.in_features))
        weights = [tensor_to_numpy(child.weight).T]
        if child.bias is not None:
            weights.append(tensor_to_numpy(child.bias))
        layer.set_weights(weights)
        return [layer]
    if isinstance(child, nn.Dropout):
        return [keras.layers.Dropout(float(child.p), name=name)]
    if isinstance(child, nn.Softmax):
        if child.dim not in (-1, None):
            raise UnsupportedFeatureError(
                f"child {name!r} is Softmax(dim={child.dim}); only the last axis (dim=-1) maps "
                "to Keras's softmax"
            )
        return [keras.layers.Activation("softmax", name=name)]
    activation = _ACTIVATIONS[type(child).__name__]
    if activation == "softplus" and (child.beta != 1 or child.threshold != 20):
        raise UnsupportedFeatureError(f"child {name!r}: Softplus with beta/threshold changed")
    return [keras.layers.Activation(activation, name=name)]


__all__ = [
    "CHECKPOINT_KEYS",
    "TORCH_FILE_SUFFIXES",
    "is_sequential_like",
    "load_state_dict_module",
    "sequential_to_keras",
]
