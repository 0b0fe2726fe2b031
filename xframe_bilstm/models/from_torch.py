"""State_dict files and training checkpoints read back into the torch module they hold.

Rules of this module:

- A file is read with ``torch.load(weights_only=True)`` or safetensors, never unpickled
  otherwise (a TorchScript archive is refused from its zip directory alone), and rebuilt
  with :func:`~xframe_bilstm.adapters.torch.module_from_state_dict` once every key is
  accounted for (:func:`~xframe_bilstm.state_dicts.recurrent_entries`).
- A module made of children is read by :mod:`xframe_bilstm.models.torch_graph`.
"""

from __future__ import annotations

import itertools
import pickle
import zipfile
from pathlib import Path
from typing import Any

from .._imports import require
from ..errors import UnsupportedFeatureError, WeightShapeError
from ..state_dicts import recurrent_entries

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


__all__ = ["CHECKPOINT_KEYS", "TORCH_FILE_SUFFIXES", "load_state_dict_module"]
