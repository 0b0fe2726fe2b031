"""Rebuild the native module a ``state_dict`` was saved from."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...errors import UnsupportedFeatureError, WeightShapeError
from ...state_dicts import recurrent_entries


def module_from_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    nonlinearity: str = "tanh",
    submodule: str | None = None,
) -> nn.RNNBase:
    """Rebuild the ``nn.LSTM``/``nn.GRU``/``nn.RNN`` a ``state_dict`` was saved from.

    The cell kind comes from the gate count (4 LSTM, 3 GRU, 1 RNN), the sizes from the
    shapes, ``num_layers``, ``bidirectional`` and ``bias`` from the names. A prefix before
    the native names (``rnn.`` or ``rnns.0.``) is dropped, and so is the ``module.`` that
    ``nn.DataParallel`` puts before every key. An RNN's ``nonlinearity`` is not in its
    weights: pass it.

    Every key must belong to that one module: a whole model's state_dict (an embedding, a
    classifier head, a CNN around the recurrent module) is refused with the keys that
    would be left out, unless ``submodule`` names the part to take (the keys under
    ``submodule + "."``).

    Example:
        >>> saved = torch.nn.GRU(3, 2, num_layers=2, bidirectional=True).state_dict()
        >>> module_from_state_dict({"encoder." + k: v for k, v in saved.items()})
        GRU(3, 2, num_layers=2, batch_first=True, bidirectional=True)
        >>> whole = {"emb.weight": torch.zeros(9, 3), **{"rnn." + k: v for k, v in saved.items()}}
        >>> module_from_state_dict(whole, submodule="rnn")
        GRU(3, 2, num_layers=2, batch_first=True, bidirectional=True)
    """
    entries = recurrent_entries(state_dict, submodule=submodule)
    if "weight_hr_l0" in entries:
        raise UnsupportedFeatureError(
            "state_dict has weight_hr_l0: an nn.LSTM with proj_size, which Keras layers cannot "
            "express"
        )
    w_ih, w_hh = entries["weight_ih_l0"], entries["weight_hh_l0"]
    hidden = int(w_hh.shape[1])
    gates = int(w_hh.shape[0]) // hidden
    kinds = {4: nn.LSTM, 3: nn.GRU, 1: nn.RNN}
    if gates not in kinds or gates * hidden != w_hh.shape[0]:
        raise WeightShapeError(
            f"state_dict: weight_hh_l0 has shape {tuple(w_hh.shape)}, which is not "
            "(G·H, H) for G = 4 (LSTM), 3 (GRU) or 1 (RNN)"
        )
    layers = sum(1 for key in entries if key.startswith("weight_ih_l") and "reverse" not in key)
    options = {"nonlinearity": nonlinearity} if gates == 1 else {}
    module = kinds[gates](
        int(w_ih.shape[1]),
        hidden,
        num_layers=layers,
        bias="bias_ih_l0" in entries,
        batch_first=True,
        bidirectional="weight_ih_l0_reverse" in entries,
        **options,
    )
    try:
        module.load_state_dict(entries, strict=True)
    except RuntimeError as error:
        raise WeightShapeError(f"state_dict does not fit {module}: {error}") from error
    return module.to(w_ih.dtype)
