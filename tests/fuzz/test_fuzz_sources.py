"""Models assembled from supported and unsupported pieces convert exactly or are refused by us.

Each case is a small model a user could write: a torch module whose ``forward`` chains its
children or does arithmetic of its own (and may end by normalizing, gating, scaling by a
tensor it holds or taking a log magnitude, which must convert), a state_dict with keys
beyond one recurrent module, or a Keras model mixing the layers the package reads with ones
it does not. The converter either returns an object that computes what the original
computes (checked here on a fresh input by running the original itself: ``module(x)`` or
``model(x)``), or raises one of our own errors (:class:`~xframe_bilstm.errors.XFrameError`)
with a message. A silent mismatch and a foreign exception both fail.

Profiles: see ``conftest.py``; ``HYPOTHESIS_PROFILE=long python -m pytest tests/fuzz``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from xframe_bilstm.errors import XFrameError

from .conftest import PROFILE

pytestmark = [pytest.mark.torch, pytest.mark.keras, pytest.mark.filterwarnings("ignore")]

# float32 rounding of these small models is below 1e-5; every silent mismatch seen in the
# wild was above 1e-2. The bound is relative to the output's scale.
AGREEMENT = 1e-4
BATCH, STEPS, VOCAB = 2, 5, 11
# What a forward may do besides calling its children in order.
FORWARDS = ("chain", "relu_between", "sum_over_time", "last_step", "skip_child", "residual")
# A forward written for torch's default layout: the input transposed into a recurrent
# module with batch_first=False, the rest run time-major, and then one of these.
TIME_MAJOR_ENDS = ("transposed_back", "last_step", "mean_over_time")
# What a forward may do to its last output, as real models do: L2-normalize it, scale it by
# a gate of one channel or by a tensor it holds, take a log magnitude.
ENDINGS = ("none", "normalized", "gated", "held_scale", "log_abs")


def _assert_same_computation(expected: np.ndarray, actual: Any) -> None:
    expected = np.asarray(expected, np.float64)
    actual = np.asarray(actual, np.float64)
    assert actual.shape == expected.shape, (
        f"silent mismatch: shape {actual.shape} != {expected.shape}"
    )
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    error = float(np.max(np.abs(expected - actual), initial=0.0))
    assert error <= AGREEMENT * scale, f"silent mismatch: max abs error {error:.3g}"


def _refused_by_us(error: Exception) -> None:
    event(f"refused: {type(error).__name__}")
    assert isinstance(error, XFrameError), f"foreign exception {type(error).__name__}: {error}"
    assert str(error).strip(), "a refusal without a message"


class _Assembled:
    """Builds a torch module whose forward is one of :data:`FORWARDS` over its children."""

    @staticmethod
    def make(
        torch: Any,
        children: list[tuple[str, Any]],
        forward: str,
        ending: str,
        width: int,
        time_major_end: str = TIME_MAJOR_ENDS[0],
    ) -> Any:
        class Assembled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                for name, child in children:
                    self.add_module(name, child)
                self.order = [name for name, _ in children]
                self.scale = torch.nn.Parameter(torch.linspace(0.5, 1.5, width))

            def forward(self, x: Any) -> Any:
                time_major = False
                for index, name in enumerate(self.order):
                    child = getattr(self, name)
                    if forward == "skip_child" and index == len(self.order) - 1 and index:
                        continue
                    before = x
                    if isinstance(child, torch.nn.RNNBase) and not child.batch_first:
                        time_major = forward == "time_major"
                        x = child(x.transpose(0, 1) if time_major else x)
                    else:
                        x = child(x)
                    if isinstance(child, torch.nn.RNNBase):
                        x = x[0]
                        if forward == "relu_between":
                            x = torch.relu(x)
                        elif forward == "last_step":
                            x = x[:, -1]
                    if forward == "residual" and x.shape == before.shape and x.is_floating_point():
                        x = x + before
                if forward == "sum_over_time" and x.dim() == 3:
                    x = x.sum(dim=1)
                if time_major:
                    ends = {"last_step": lambda: x[-1], "mean_over_time": lambda: x.mean(0)}
                    x = ends.get(time_major_end, lambda: x.transpose(0, 1))()
                return self._end(x)

            def _end(self, x: Any) -> Any:
                if ending == "normalized":
                    return torch.nn.functional.normalize(x, dim=-1)
                if ending == "gated":
                    return x * torch.sigmoid(x.mean(-1, keepdim=True))
                if ending == "held_scale":
                    return x * self.scale if x.shape[-1] == width else x
                if ending == "log_abs":
                    return torch.log(x.abs() + 1.0)
                return x

        return Assembled()


@st.composite
def torch_models(draw: st.DrawFn) -> tuple[Any, np.ndarray, bool]:
    """(module, input, readable): readable when it is a chain of supported children only,
    or written time-major around a recurrent module with batch_first=False."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(draw(st.integers(0, 2**16)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    size = draw(st.integers(2, 4))
    children: list[tuple[str, Any]] = []
    if draw(st.booleans()):
        children.append(("emb", torch.nn.Embedding(VOCAB, size)))
        x = rng.integers(0, VOCAB, (BATCH, STEPS))
    else:
        x = rng.standard_normal((BATCH, STEPS, size)).astype(np.float32)
    kind = draw(st.sampled_from(["LSTM", "GRU", "RNN"]))
    batch_first = draw(st.sampled_from([True, True, True, False]))
    hidden = draw(st.integers(2, 4))
    bidirectional = draw(st.booleans())
    children.append(
        (
            "rnn",
            getattr(torch.nn, kind)(
                size, hidden, batch_first=batch_first, bidirectional=bidirectional
            ),
        )
    )
    width = hidden * (2 if bidirectional else 1)
    supported = batch_first
    for index in range(draw(st.integers(0, 2))):
        piece = draw(st.sampled_from(["linear", "relu", "tanh", "dropout", "layer_norm"]))
        if piece == "linear":
            out = draw(st.integers(2, 4))
            children.append((f"fc{index}", torch.nn.Linear(width, out)))
            width = out
        elif piece == "layer_norm":  # not in the vocabulary: must be refused by name
            children.append((f"norm{index}", torch.nn.LayerNorm(width)))
            supported = False
        else:
            module = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "dropout": torch.nn.Dropout}
            children.append((f"{piece}{index}", module[piece]()))
    # Half the forwards are plain chains, so conversions are exercised as much as refusals.
    forwards = [FORWARDS[0]] * (len(FORWARDS) - 1) + list(FORWARDS[1:])
    time_major = [] if batch_first else ["time_major"] * len(forwards)
    forward = draw(st.sampled_from(forwards + time_major))
    ending = draw(st.sampled_from(ENDINGS))
    end = draw(st.sampled_from(TIME_MAJOR_ENDS))
    module = _Assembled.make(torch, children, forward, ending, width, end).eval()
    return module, x, (supported and forward == "chain") or forward == "time_major"


@settings(PROFILE, max_examples=PROFILE.max_examples * 2)
@given(torch_models())
def test_torch_modules_convert_as_their_forward_computes_or_are_refused(case) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("keras")
    from xframe_bilstm import torch_to_keras

    module, x, readable = case
    try:
        model = torch_to_keras(module)
    except Exception as error:
        _refused_by_us(error)
        assert not readable, f"a module of supported pieces was refused: {error}"
        return
    event("converted")
    tensor = torch.as_tensor(x) if x.dtype.kind == "i" else torch.from_numpy(x)
    with torch.no_grad():
        expected = module(tensor).numpy()
    feed = x.astype(np.int32) if x.dtype.kind == "i" else x
    _assert_same_computation(expected, model(feed, training=False))


@st.composite
def state_dict_files(draw: st.DrawFn) -> tuple[dict, Any, bool]:
    """(state, recurrent module, plain): a state_dict of one recurrent module, maybe with more."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["LSTM", "GRU", "RNN"]))
    rnn = getattr(torch.nn, kind)(
        3,
        2,
        num_layers=draw(st.integers(1, 2)),
        bidirectional=draw(st.booleans()),
        batch_first=True,
    )
    extra = draw(st.sampled_from(["none", "whole_model", "batch_norm", "cell"]))
    if extra == "cell":
        cell = getattr(torch.nn, f"{kind}Cell")(3, 2)
        return dict(cell.state_dict()), cell, False
    state = dict(rnn.state_dict())
    if extra == "whole_model":
        state = {f"lstm.{key}": value for key, value in state.items()}
        state |= {
            "emb.weight": torch.randn(7, 3),
            "fc.weight": torch.randn(4, 2),
            "fc.bias": torch.randn(4),
        }
    elif extra == "batch_norm":
        norm = torch.nn.BatchNorm1d(3)
        state |= {f"cnn.1.{key}": value for key, value in norm.state_dict().items()}
    return state, rnn, extra == "none"


@settings(PROFILE)
@given(case=state_dict_files(), suffix=st.sampled_from([".pt", ".safetensors"]))
def test_state_dict_files_convert_every_key_or_are_refused(case, suffix, tmp_path_factory) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("keras")
    from xframe_bilstm import torch_to_keras

    state, original, plain = case
    path = tmp_path_factory.mktemp("state") / f"model{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        pytest.importorskip("safetensors.torch").save_file(
            {key: value.contiguous() for key, value in state.items()}, str(path)
        )
    try:
        layer = torch_to_keras(path)
    except Exception as error:
        _refused_by_us(error)
        assert not plain, f"a plain state_dict was refused: {error}"
        return
    assert plain, "keys beyond one recurrent module were dropped without a word"
    event("converted")
    x = np.random.default_rng(0).standard_normal((BATCH, STEPS, 3)).astype(np.float32)
    with torch.no_grad():
        expected = original(torch.from_numpy(x))[0].numpy()
    _assert_same_computation(expected, layer(x))


@st.composite
def keras_models(draw: st.DrawFn) -> tuple[Any, np.ndarray, bool]:
    """(model, input, plain): plain when every layer is one the package reads."""
    pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(draw(st.integers(0, 2**16)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    supported = True
    if draw(st.booleans()):
        inputs = keras.Input((None,), dtype="int32")
        x = rng.integers(1, VOCAB, (BATCH, STEPS)).astype(np.int32)
        tensor = keras.layers.Embedding(VOCAB, 3, mask_zero=draw(st.booleans()))(inputs)
    else:
        inputs = keras.Input((None, 3))
        x = rng.standard_normal((BATCH, STEPS, 3)).astype(np.float32)
        tensor = inputs
    if draw(st.integers(0, 3)) == 0:
        tensor = keras.layers.Conv1D(3, 2, padding="same")(tensor)  # ends any mask
    cell = getattr(keras.layers, draw(st.sampled_from(["LSTM", "GRU", "SimpleRNN"])))
    sequences = draw(st.booleans())
    recurrent = cell(2, return_sequences=sequences)
    if draw(st.booleans()):
        recurrent = keras.layers.Bidirectional(recurrent)
    tensor = recurrent(tensor)
    after = draw(
        st.sampled_from(["none", "dense", "dense", "pool", "pool", "layer_norm", "lambda"])
    )
    if after == "dense":
        tensor = keras.layers.Dense(2, activation="relu")(tensor)
    elif after == "pool" and sequences:
        tensor = keras.layers.GlobalAveragePooling1D()(tensor)
    elif after == "layer_norm":
        tensor = keras.layers.LayerNormalization()(tensor)
        supported = False
    elif after == "lambda":
        tensor = keras.layers.Lambda(lambda t: t * 2.0)(tensor)
        supported = False
    return keras.Model(inputs, tensor), x, supported


@settings(PROFILE)
@given(keras_models())
def test_keras_models_convert_as_their_call_computes_or_are_refused(case) -> None:
    torch = pytest.importorskip("torch")
    from xframe_bilstm import keras_to_torch

    model, x, plain = case
    try:
        module = keras_to_torch(model)
    except Exception as error:
        _refused_by_us(error)
        assert not plain, f"a model of supported layers was refused: {error}"
        return
    event("converted")
    expected = np.asarray(model(x, training=False))
    tensor = torch.from_numpy(x.astype(np.int64) if x.dtype.kind == "i" else x)
    with torch.no_grad():
        actual = module(tensor)
    _assert_same_computation(expected, actual[0] if isinstance(actual, tuple) else actual)
