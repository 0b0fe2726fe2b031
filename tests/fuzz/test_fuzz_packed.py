"""torch modules whose ``forward(x, lengths)`` packs its padded rows convert exactly.

Each case is a small tagger or classifier as tutorials write one: token ids or features,
packed (batch first or time-major, sorted or not) into a recurrent module of one or two
layers (its rows sorted in ``forward`` and put back after, or not), then padded back (with
or without ``total_length``) and given to a Linear per step or averaged over each row's
valid steps or indexed at each row's last valid step by hand, or the last layer's final
``h`` classified. Every case is in the vocabulary, so it must convert, and the Keras model
must compute what ``module(x, lengths)`` computes on a fresh batch of right-padded rows.

Profiles: see ``conftest.py``; ``HYPOTHESIS_PROFILE=long python -m pytest tests/fuzz``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import PROFILE
from .test_fuzz_sources import VOCAB, _assert_same_computation

pytestmark = [pytest.mark.torch, pytest.mark.keras, pytest.mark.filterwarnings("ignore")]

BATCH, STEPS = 3, 6


def _packed_module(torch: Any, draw: st.DrawFn, size: int, embedded: bool) -> Any:
    kind = draw(st.sampled_from(["LSTM", "GRU", "RNN"]))
    batch_first = draw(st.booleans())
    bidirectional = draw(st.booleans())
    layers = draw(st.integers(1, 2))
    hidden = draw(st.integers(2, 4))
    sort = draw(st.booleans())
    by_hand = draw(st.booleans())  # rows sorted in forward, and put back
    total = draw(st.booleans())
    use = draw(st.sampled_from(["steps", "final_h", "mean", "last_step"]))
    width = hidden * (2 if bidirectional else 1)
    rnn = getattr(torch.nn, kind)(
        size, hidden, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional
    )
    utils = torch.nn.utils.rnn

    class Packed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(VOCAB, size) if embedded else None
            self.rnn = rnn
            self.fc = torch.nn.Linear(hidden if use == "final_h" else width, 2)

        def forward(self, x: Any, lengths: Any) -> Any:
            order = torch.argsort(lengths, descending=True) if by_hand else None
            if order is not None:
                x, lengths = x[order], lengths[order]
            x = self.emb(x) if self.emb is not None else x
            x = x if batch_first else x.transpose(0, 1)
            packed = utils.pack_padded_sequence(
                x, lengths.cpu(), batch_first=batch_first, enforce_sorted=sort or by_hand
            )
            output, states = self.rnn(packed)
            if use == "final_h":
                y = self.fc((states[0] if kind == "LSTM" else states)[-1])
            else:
                steps = x.size(1 if batch_first else 0) if total else None
                output, _ = utils.pad_packed_sequence(
                    output, batch_first=True, total_length=steps
                )  # batch first whatever the module's layout
                if use == "mean":  # over each row's valid steps, divided by hand
                    output = output.sum(1) / lengths[:, None].float()
                elif use == "last_step":  # each row's last valid step, indexed by hand
                    output = output[torch.arange(output.size(0)), lengths - 1]
                y = self.fc(output)
            return y if order is None else y[order.argsort()]

    return Packed().eval(), sort and not by_hand


@st.composite
def packed_models(draw: st.DrawFn) -> tuple[Any, np.ndarray, np.ndarray]:
    torch = pytest.importorskip("torch")
    torch.manual_seed(draw(st.integers(0, 2**16)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    size = draw(st.integers(2, 4))
    embedded = draw(st.booleans())
    module, sort = _packed_module(torch, draw, size, embedded)
    x = (
        rng.integers(1, VOCAB, (BATCH, STEPS))
        if embedded
        else rng.standard_normal((BATCH, STEPS, size)).astype(np.float32)
    )
    # The longest row is full: pad_packed_sequence without total_length pads to it.
    lengths = np.array(
        [STEPS, *draw(st.lists(st.integers(1, STEPS), min_size=BATCH - 1, max_size=BATCH - 1))]
    )
    lengths = np.sort(lengths)[::-1].copy() if sort else rng.permutation(lengths)
    return module, x, lengths


@settings(PROFILE)
@given(packed_models())
def test_packed_torch_modules_convert_as_their_forward_computes(case) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("keras")
    from xframe_bilstm import torch_to_keras

    module, x, lengths = case
    model = torch_to_keras(module)  # in the vocabulary: must convert
    with torch.no_grad():
        expected = module(torch.as_tensor(x), torch.as_tensor(lengths)).numpy()
    _assert_same_computation(expected, model([x, lengths], training=False))
