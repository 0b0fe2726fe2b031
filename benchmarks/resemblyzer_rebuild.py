"""Resemblyzer 0.1.4's speaker encoder as the package builds and loads it.

``benchmarks/published_models.py`` runs the library on it. The package's
``voice_encoder.py`` imports its audio front end (librosa, webrtcvad) at the top, so the
network is written out here as that file defines it: ``nn.LSTM`` → ``nn.Linear`` →
``nn.ReLU``, its ``forward`` copied line for line (the last layer's final state, then an
L2 normalization written with ``torch.norm``), sized by the package's ``hparams.py`` and
loaded from its ``pretrained.pt`` as the package loads it (``strict=False``: the file also
holds the similarity head of its training loss).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import torch
from torch import nn


def hparams(root: Path) -> dict[str, Any]:
    """The constants of the package's ``hparams.py``, read without importing it."""
    tree = ast.parse((root / "resemblyzer" / "hparams.py").read_text())
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }


class VoiceEncoder(nn.Module):
    """``resemblyzer.VoiceEncoder``'s network and ``forward``, without its audio helpers."""

    def __init__(self, mel_n_channels: int, hidden: int, embedding: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(mel_n_channels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, embedding)
        self.relu = nn.ReLU()

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        embeds_raw = self.relu(self.linear(hidden[-1]))
        return embeds_raw / torch.norm(embeds_raw, dim=1, keepdim=True)


def voice_encoder(root: Path) -> tuple[VoiceEncoder, dict[str, Any]]:
    """The encoder with the package's weights, in eval mode, and its hyperparameters."""
    p = hparams(root)
    encoder = VoiceEncoder(
        int(p["mel_n_channels"]),
        int(p["model_hidden_size"]),
        int(p["model_embedding_size"]),
        int(p["model_num_layers"]),
    )
    checkpoint = torch.load(root / "resemblyzer" / "pretrained.pt", map_location="cpu")
    encoder.load_state_dict(checkpoint["model_state"], strict=False)
    return encoder.eval(), p
