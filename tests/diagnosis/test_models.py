"""diagnose() of whole models: a Keras tagger (Embedding -> Bidirectional(LSTM) -> Dense)
against torch ports of it, each broken on purpose in one layer. The model errors the
diagnosis reports are checked against Keras and torch run here on the same input."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from torch import nn  # noqa: E402

from xframe_bilstm import keras_to_torch  # noqa: E402
from xframe_bilstm.diagnosis import diagnose  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

VOCABULARY, FEATURES, UNITS, TAGS = 20, 5, 4, 3


@pytest.fixture(scope="module")
def tagger():
    """A Keras 3 tagger with seeded weights large enough that a wrong gate shows."""
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, FEATURES, mask_zero=True, name="embed")(ids)
    x = keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=True), name="bilstm")(
        x
    )
    tags = keras.layers.Dense(TAGS, activation="softmax", name="tags")(x)
    model = keras.Model(ids, tags, name="tagger")
    rng = np.random.default_rng(5)
    model.set_weights(
        [(rng.standard_normal(w.shape) * 0.6).astype(w.dtype) for w in model.get_weights()]
    )
    return model


@pytest.fixture(scope="module")
def tagger_file(tagger, tmp_path_factory):
    path = tmp_path_factory.mktemp("tagger") / "tagger.keras"
    tagger.save(path)
    return str(path)


@pytest.fixture(scope="module")
def port(tagger_file):
    return keras_to_torch(tagger_file)


@pytest.fixture(scope="module")
def ids():
    """Right-padded token ids (0 pads): rows of 6, 4 and 2 valid steps."""
    batch = np.random.default_rng(9).integers(1, VOCABULARY, size=(3, 6))
    batch[1, 4:] = 0
    batch[2, 2:] = 0
    return batch


def model_error(model, module, ids) -> float:
    """The largest difference of the Keras model's and the torch module's outputs."""
    expected = np.asarray(model(ids, training=False))
    with torch.no_grad():
        actual = module(torch.as_tensor(ids, dtype=torch.int64)).numpy()
    return float(np.abs(expected - actual).max())


def swap_forget_and_cell(lstm: nn.LSTM, suffix: str = "") -> None:
    """Exchange the f and g gate blocks of one direction (torch order i, f, g, o)."""
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            parameter = getattr(lstm, f"{name}_l0{suffix}")
            forget = parameter[UNITS : 2 * UNITS].clone()
            parameter[UNITS : 2 * UNITS] = parameter[2 * UNITS : 3 * UNITS]
            parameter[2 * UNITS : 3 * UNITS] = forget


class HandTagger(nn.Module):
    """The tagger ported by hand, as people write it: nn.Embedding, a packed
    bidirectional nn.LSTM, nn.Linear. ``double_bias`` copies Keras's one bias into both
    ``bias_ih`` and ``bias_hh``; ``num_layers=2`` adds an LSTM layer Keras does not have."""

    def __init__(self, model, *, double_bias: bool = False, num_layers: int = 1) -> None:
        super().__init__()
        embed, bilstm, dense = (model.get_layer(n) for n in ("embed", "bilstm", "tags"))
        self.embedding = nn.Embedding(VOCABULARY, FEATURES)
        self.lstm = nn.LSTM(
            FEATURES, UNITS, batch_first=True, bidirectional=True, num_layers=num_layers
        )
        self.linear = nn.Linear(2 * UNITS, TAGS)
        halves = (bilstm.forward_layer, bilstm.backward_layer)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.tensor(embed.embeddings.numpy()))
            for suffix, half in zip(("", "_reverse"), halves):
                kernel, recurrent, bias = (w.numpy() for w in half.cell.weights)
                getattr(self.lstm, f"weight_ih_l0{suffix}").copy_(torch.tensor(kernel.T))
                getattr(self.lstm, f"weight_hh_l0{suffix}").copy_(torch.tensor(recurrent.T))
                getattr(self.lstm, f"bias_ih_l0{suffix}").copy_(torch.tensor(bias))
                second = bias if double_bias else np.zeros_like(bias)
                getattr(self.lstm, f"bias_hh_l0{suffix}").copy_(torch.tensor(second))
            self.linear.weight.copy_(torch.tensor(dense.kernel.numpy().T))
            self.linear.bias.copy_(torch.tensor(dense.bias.numpy()))

    def forward(self, ids):
        lengths = (ids != 0).sum(dim=1)
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(ids), lengths, batch_first=True, enforce_sorted=False
        )
        output, _ = self.lstm(packed)
        output, _ = nn.utils.rnn.pad_packed_sequence(
            output, batch_first=True, total_length=ids.shape[1]
        )
        return torch.softmax(self.linear(output), dim=-1)


def test_file_and_its_port_are_equivalent(tagger, tagger_file, port, ids) -> None:
    result = diagnose(tagger_file, port, inputs=[ids])
    assert result.code == "equivalent" and result
    assert "Keras" in result.comparison.label
    assert result.max_abs_error == pytest.approx(model_error(tagger, port, ids), abs=1e-9)


def test_seeded_padded_inputs_by_default(tagger_file, port) -> None:
    assert diagnose(tagger_file, port).code == "equivalent"


def test_gate_blocks_swapped_in_the_port(tagger, tagger_file, port, ids) -> None:
    broken = copy.deepcopy(port)
    swap_forget_and_cell(broken.bilstm.rnn)
    result = diagnose(tagger_file, broken, inputs=[ids])
    assert result.code == "gate_order" and not result
    assert result.message.startswith("layer 'bilstm' (Bidirectional), torch 'bilstm': ")
    # Keras's order i,f,c,o with f and c exchanged, in the forward direction only.
    assert "i,f,c,o read as i,c,f,o (layer 0 forward)" in result.message
    error = model_error(tagger, broken, ids)
    assert error > 0.05
    assert result.max_abs_error == pytest.approx(error, abs=1e-9)


def test_changed_dense_bias_in_the_port(tagger, tagger_file, port, ids) -> None:
    broken = copy.deepcopy(port)
    with torch.no_grad():
        broken.tags.bias[1] += 0.5
    result = diagnose(tagger_file, broken, inputs=[ids])
    assert result.code == "weights_differ"
    assert result.message.startswith("layer 'tags' (Dense), torch 'tags': bias: ")
    assert "by up to 0.5 at (1,)" in result.message
    assert result.max_abs_error == pytest.approx(model_error(tagger, broken, ids), abs=1e-9)


def test_hand_port_of_a_live_model(tagger, ids) -> None:
    assert diagnose(tagger, HandTagger(tagger), inputs=[ids]).code == "equivalent"
    broken = HandTagger(tagger, double_bias=True)
    result = diagnose(tagger, broken, inputs=[ids])
    assert result.code == "bias_double_counted"
    assert result.message.startswith("layer 'bilstm' (Bidirectional), torch 'lstm': ")
    assert result.max_abs_error == pytest.approx(model_error(tagger, broken, ids), abs=1e-9)


def test_backward_gates_swapped_in_a_hand_port(tagger, ids) -> None:
    broken = HandTagger(tagger)
    swap_forget_and_cell(broken.lstm, "_reverse")
    result = diagnose(tagger, broken, inputs=[ids])
    assert result.code == "gate_order"
    assert "(layer 0 backward)" in result.message


def test_recurrent_layer_counts_differ(tagger, ids) -> None:
    broken = HandTagger(tagger, num_layers=2)
    result = diagnose(tagger, broken, inputs=[ids])
    assert result.code == "unknown"
    assert (
        "recurrent layers: 1 in the model ('bilstm'), 2 in the port ('lstm layer 0', "
        "'lstm layer 1'), so they were not paired" in result.message
    )


def test_actual_must_be_a_port(tagger_file) -> None:
    import keras

    with pytest.raises(UnsupportedFeatureError, match="must be its PyTorch port"):
        diagnose(tagger_file, keras.layers.LSTM(4))  # a layer, not a model


WITHOUT_KERAS = textwrap.dedent(
    """
    import sys
    for blocked in ("tensorflow", "keras", "tf_keras"):
        sys.modules[blocked] = None
    import torch
    from xframe_bilstm import keras_to_torch
    from xframe_bilstm.diagnosis import diagnose

    port = keras_to_torch(sys.argv[1])
    print(diagnose(sys.argv[1], port).comparison.label)
    with torch.no_grad():
        port.tags.weight[0, 0] += 1.0
    print(diagnose(sys.argv[1], port).message)
    """
)


def test_without_keras_the_file_runs_as_the_reference(tagger_file) -> None:
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_KERAS, tagger_file], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    label, message = run.stdout.splitlines()
    assert "(float64 reference) vs actual KerasModel" in label
    assert message.startswith("layer 'tags' (Dense), torch 'tags': kernel vs weight.T: ")
    assert "by up to 1 at (0, 0)" in message


# --------------------------------------------------------------------------- attention layers


@pytest.fixture(scope="module", params=["self_attention", "multi_head"])
def attention_file(request, tmp_path_factory):
    from .. import attention_models, saved_models

    make = {
        "self_attention": attention_models.self_attention_classifier,
        "multi_head": attention_models.multi_head_classifier,
    }[request.param]
    model = make(keras)
    # Every weight large enough that the attention weights are peaked, not near uniform.
    saved_models.randomize(model, 6, scale=1.0)
    attention_models.randomize_attention(model, 6)
    path = tmp_path_factory.mktemp(request.param) / f"{request.param}.keras"
    model.save(path)
    return model, str(path)


def test_an_attention_port_is_equivalent(attention_file) -> None:
    from ..attention_models import padded_ids

    _, path = attention_file
    assert diagnose(path, keras_to_torch(path), inputs=[padded_ids()]).code == "equivalent"


def test_a_wrong_weight_inside_an_attention_layer_is_named(attention_file) -> None:
    from ..attention_models import padded_ids

    model, path = attention_file
    broken = keras_to_torch(path)
    ids = padded_ids()
    with torch.no_grad():
        if model.name == "multi_head":  # one element of head 1's value projection
            broken.mha.value.weight[4 + 2, 3] += 3.0
            start = "layer 'mha' (MultiHeadAttention), torch 'mha': "
            evidence = "value_kernel vs value.weight.T, heads flattened: they differ by up to 3"
            # Keras's value_kernel[3, 1, 2] (input 3, head 1, dim 2), flattened to (3, 6).
            evidence += " at (3, 6)"
        else:
            broken.attention.scale.fill_(0.01)  # near-uniform weights instead of peaked ones
            start = "layer 'attention' (Attention), torch 'attention': "
            evidence = "scale: they differ by up to "
    result = diagnose(path, broken, inputs=[ids])
    assert result.code == "weights_differ" and not result
    assert result.message.startswith(start), result.message
    assert evidence in result.message
    error = model_error(model, broken, ids)
    assert error > 1e-3
    assert result.max_abs_error == pytest.approx(error, abs=1e-9)


# --------------------------------------------------------------------------- ONNX exports


@pytest.fixture(scope="module")
def tagger_onnx(tagger):
    pytest.importorskip("onnxruntime")
    from xframe_bilstm import to_onnx

    return to_onnx(tagger)


def edited_lstm(proto, edit):
    """A copy of an exported model whose LSTM node's W, R and B go through ``edit``."""
    from onnx import numpy_helper

    proto = copy.deepcopy(proto)
    lstm = next(node for node in proto.graph.node if node.op_type == "LSTM")
    for initializer in proto.graph.initializer:
        if initializer.name in lstm.input[1:4]:
            kind = "WRB"[list(lstm.input[1:4]).index(initializer.name)]
            array = edit(kind, numpy_helper.to_array(initializer))
            initializer.CopyFrom(numpy_helper.from_array(array, initializer.name))
    return proto


def keras_gate_order(kind, array):
    """Keras's i,f,c,o written where ONNX reads i,o,f,c."""
    from xframe_bilstm.gates import reorder_gates

    if kind == "B":  # Wb then Rb
        return np.concatenate(
            [reorder_gates(h, "iofc", "ifco") for h in np.split(array, 2, axis=-1)], -1
        )
    return reorder_gates(array, "iofc", "ifco", axis=1)


def doubled_bias(kind, array):
    """The summed bias written into both Wb and Rb."""
    if kind != "B":
        return array
    summed = array[:, : 4 * UNITS] + array[:, 4 * UNITS :]
    return np.concatenate([summed, summed], axis=-1)


def onnxruntime_error(model, proto, ids) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    feed = {session.get_inputs()[0].name: ids.astype(np.int64)}
    expected = np.asarray(model(ids, training=False), np.float64)
    return float(np.abs(expected - session.run(None, feed)[0]).max())


@pytest.mark.onnx
@pytest.mark.parametrize(
    ("edit", "code", "evidence"),
    [
        (keras_gate_order, "gate_order", "i,f,c,o read as i,c,o,f (layer 0 forward, layer 0"),
        (doubled_bias, "bias_double_counted", "twice expected's"),
    ],
    ids=["keras-gate-order", "doubled-bias"],
)
def test_a_wrong_onnx_export_names_the_layer(tagger, tagger_onnx, ids, edit, code, evidence):
    assert diagnose(tagger, tagger_onnx, inputs=[ids]).code == "equivalent"
    wrong = edited_lstm(tagger_onnx, edit)
    result = diagnose(tagger, wrong, inputs=[ids])
    assert result.code == code and not result, result.message
    assert result.message.startswith("layer 'bilstm' (Bidirectional), ONNX node "), result.message
    assert evidence in result.message
    assert "run by onnxruntime" not in result.comparison.label  # the model ran by Keras
    error = onnxruntime_error(tagger, wrong, ids)
    assert error > 0.01
    assert result.max_abs_error == pytest.approx(error, abs=1e-9)


class TorchTagger(nn.Module):
    """Embedding -> LSTM -> Linear, whose TorchScript export reads as a whole model."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, FEATURES)
        self.lstm = nn.LSTM(FEATURES, UNITS, batch_first=True)
        self.linear = nn.Linear(UNITS, TAGS)

    def forward(self, ids):
        return self.linear(self.lstm(self.embedding(ids))[0])


@pytest.mark.onnx
def test_an_onnx_model_as_expected_runs_on_onnxruntime(ids, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    import warnings

    torch.manual_seed(0)
    module = TorchTagger().eval()
    path = tmp_path / "tagger.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(2, 6, dtype=torch.int64),),
            str(path),
            dynamo=False,
            input_names=["ids"],
            output_names=["tags"],
            dynamic_axes={"ids": {0: "batch", 1: "time"}},
        )
    result = diagnose(path, module, inputs=[ids])
    assert result.code == "equivalent"
    assert "(run by onnxruntime) vs actual TorchTagger" in result.comparison.label
    broken = copy.deepcopy(module)
    with torch.no_grad():  # torch's two biases both set to their sum
        broken.lstm.bias_hh_l0.add_(broken.lstm.bias_ih_l0)
        broken.lstm.bias_ih_l0.copy_(broken.lstm.bias_hh_l0)
    result = diagnose(path, broken, inputs=[ids])
    assert result.code == "bias_double_counted", result.message
    # The layer is named as the graph names its node, '/lstm/LSTM'.
    assert result.message.startswith("layer 'lstm_LSTM' (LSTM), torch 'lstm': ")


# --------------------------------------------------------------------------- custom layers


def test_a_custom_layer_is_refused_by_name_then_taken_by_its_factory() -> None:
    from ..test_custom import CUSTOM, SqueezeLayer, chord_model, features

    model = chord_model(SqueezeLayer(0.5, name="squeeze"))
    port = keras_to_torch(model, custom_layers=CUSTOM)
    with pytest.raises(UnsupportedFeatureError) as refused:
        diagnose(model, port, inputs=[features()])
    message = str(refused.value)
    assert message.startswith("expected cannot be diagnosed: Keras model 'chord_recogniser'")
    assert "'SqueezeLayer'" in message and "diagnose() takes the same custom_layers=" in message
    assert diagnose(model, port, inputs=[features()], custom_layers=CUSTOM).code == "equivalent"
    broken = copy.deepcopy(port)
    with torch.no_grad():  # the first two gate blocks of the backward direction exchanged
        for name in ("weight_ih_l0_reverse", "weight_hh_l0_reverse"):
            weight = getattr(broken.bigru.rnn, name)
            weight.copy_(torch.cat([weight[3:6], weight[:3], weight[6:]]))
    result = diagnose(model, broken, inputs=[features()], custom_layers=CUSTOM)
    assert result.code == "gate_order", result.message
    assert result.message.startswith("layer 'bigru' (Bidirectional), torch 'bigru': ")
    assert "(layer 0 backward)" in result.message


class PackedClassifier(nn.Module):
    """A torch model whose forward packs its rows and classifies the last h: the expected
    side, run by its own forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.embedding = nn.Embedding(VOCABULARY, FEATURES)
        self.gru = nn.GRU(FEATURES, UNITS, batch_first=True)
        self.fc = nn.Linear(UNITS, TAGS)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(ids), lengths, batch_first=True, enforce_sorted=False
        )
        return self.fc(self.gru(packed)[1][-1])


def test_a_torch_module_read_whole_against_its_port() -> None:
    from xframe_bilstm import torch_to_keras

    module = PackedClassifier().eval()
    port = keras_to_torch(torch_to_keras(module))
    good = diagnose(module, port)
    assert good.code == "equivalent", good.message
    assert "run by its forward" in good.comparison.label
    broken = copy.deepcopy(port)
    with torch.no_grad():  # the reset and update gates swapped in every GRU parameter
        for name, weight in broken.named_parameters():
            if "_l0" in name:
                weight.copy_(
                    torch.cat([weight[UNITS : 2 * UNITS], weight[:UNITS], weight[2 * UNITS :]])
                )
    found = diagnose(module, broken)
    assert found.code == "gate_order" and "'gru'" in found.message, found.message


def test_a_torch_module_read_whole_against_its_keras_port() -> None:
    from xframe_bilstm import torch_to_keras

    module = PackedClassifier().eval()
    good = diagnose(module, torch_to_keras(module))
    assert good.code == "equivalent", good.message
    swapped = torch_to_keras(module)  # a hand port reading torch's r,z,n blocks as z,r,h
    gru = swapped.get_layer("gru")
    gru.set_weights(
        [
            np.concatenate([w[..., UNITS : 2 * UNITS], w[..., :UNITS], w[..., 2 * UNITS :]], -1)
            for w in gru.get_weights()
        ]
    )
    found = diagnose(module, swapped)
    assert found.code == "gate_order", found.message
    assert found.message.startswith("layer 'gru' (GRU), Keras layer 'gru': "), found.message
    changed = torch_to_keras(module)
    fc = changed.get_layer("fc")
    kernel, bias = fc.get_weights()
    fc.set_weights([kernel, bias + 0.5])
    found = diagnose(module, changed)
    assert found.code == "weights_differ", found.message
    assert "layer 'fc' (Linear), Keras layer 'fc': bias differs by up to 0.5" in found.message
