"""compare(gradients=True) on whole models: the reference's backpropagation through the
graph (itself checked against finite differences in tests/reference/) against PyTorch's
autograd on the port and on the user's own module, each weight named by layer."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402

STEPS = 5


class Tagger(torch.nn.Module):
    """Embedding → BiLSTM → Linear, a token tagger."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(12, 4)
        self.rnn = torch.nn.LSTM(4, 3, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(6, 5)

    def forward(self, ids):
        y, _ = self.rnn(self.emb(ids))
        return self.head(y)


def _names(pair):
    return [array.name for array in pair.comparison.arrays]


def _keras_tagger():
    keras.utils.set_random_seed(3)
    ids = keras.Input((STEPS,), dtype="int32")
    x = keras.layers.Embedding(12, 4, mask_zero=True, name="embedding")(ids)
    x = keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True), name="bigru")(x)
    x = keras.layers.Dense(4, activation="relu", name="hidden")(x)
    x = keras.layers.Dense(3, activation="softmax", name="tags")(x)
    return keras.Model(ids, x)


def test_a_torch_tagger_agrees_with_the_reference_gradient_by_layer_and_weight():
    torch.manual_seed(0)
    report = compare(Tagger(), frameworks=["torch"], gradients=True, seed=0)
    assert report, report.to_text()
    assert len(report.gradient_pairs) == 3  # port, module, reference, pairwise
    (pair,) = [
        p for p in report.gradient_pairs if "@original" in p.actual and "reference" in p.expected
    ]
    names = _names(pair)  # the user's own parameter names beside
    assert "grad inputs" not in " ".join(names)  # token ids have no gradient
    for expected in (
        "grad emb/embeddings (torch emb.weight)",
        "grad rnn/forward.kernel (torch rnn.weight_ih_l0)",
        "grad rnn/backward.recurrent_kernel (torch rnn.weight_hh_l0_reverse)",
        "grad head/kernel (torch head.weight)",
        "grad head/bias (torch head.bias)",
    ):
        assert expected in names, names


def test_a_hook_on_one_dense_weight_fails_on_that_weight_only():
    torch.manual_seed(0)
    module = Tagger()
    module.head.bias.register_hook(lambda grad: grad * 1.5)
    report = compare(module, frameworks=["torch"], gradients=True, seed=0)
    assert all(report.pairs), report.to_text()  # the forward agrees
    assert not report
    failed = [pair for pair in report.gradient_pairs if not pair]
    assert failed and all("@original" in pair.label for pair in failed)
    worst = {a.name for pair in failed for a in pair.comparison.arrays if not a.passed}
    assert worst == {"grad head/bias (torch head.bias)"}


def test_a_keras_tagger_with_mask_zero_compares_its_port_and_the_reference():
    model = _keras_tagger()
    ids = np.array([[3, 5, 1, 0, 0], [7, 2, 9, 4, 11]])
    report = compare(model, inputs=ids, frameworks=["torch"], gradients=True)
    assert report, report.to_text()
    (pair,) = [
        p
        for p in report.gradient_pairs
        if p.actual.startswith("torch") and p.expected.startswith("reference")
    ]
    names = _names(pair)
    assert "grad embedding/embeddings (torch embedding.weight)" in names, names
    assert any(name.startswith("grad bigru/backward.bias") for name in names), names
    assert any(name.startswith("grad tags/bias") for name in names), names


def test_keras_tape_torch_autograd_and_the_reference_agree_on_a_keras_tagger():
    model = _keras_tagger()
    ids = np.array([[3, 5, 1, 0, 0], [7, 2, 9, 4, 11]])
    report = compare(model, inputs=ids, frameworks=["torch", "keras"], gradients=True)
    assert report, report.to_text()
    (pair,) = [
        p for p in report.gradient_pairs if "@original" in p.actual and "reference" in p.expected
    ]
    names = _names(pair)
    assert "grad embedding/embeddings (keras embedding/embeddings)" in names, names
    assert "grad hidden/kernel (keras hidden/kernel)" in names, names
    assert any(n.startswith("grad bigru/forward.recurrent_kernel (keras bigru/") for n in names)
    assert not report.gradient_failures


def test_a_keras_file_with_a_float_input_compares_its_gradients(tmp_path):
    keras.utils.set_random_seed(5)
    inputs = keras.Input((STEPS, 3))
    x = keras.layers.Masking(0.0, name="mask")(inputs)
    x = keras.layers.LSTM(4, return_sequences=True, name="lstm")(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(2), name="td")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    path = tmp_path / "pooled.keras"
    keras.Model(inputs, keras.layers.Dense(1, name="out")(x)).save(path)
    features = np.random.default_rng(0).standard_normal((2, STEPS, 3))
    features[1, 3:] = 0.0  # padded steps, masked
    report = compare(str(path), inputs=features, frameworks=["torch", "keras"], gradients=True)
    assert report, report.to_text()
    names = {a.name for pair in report.gradient_pairs for a in pair.comparison.arrays}
    assert "grad inputs" in names
    assert "grad td/kernel (torch td.weight)" in names, names


def test_a_conv_front_end_is_refused_naming_the_layer():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((STEPS, 3))
    x = keras.layers.Conv1D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.LSTM(3, name="lstm")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    with pytest.raises(UnsupportedFeatureError, match=r"'conv' \(Conv1D, kind conv\)"):
        compare(model, frameworks=["torch"], gradients=True)
    assert compare(model, frameworks=["torch"])  # its forward outputs still compare


def test_a_weight_gradient_only_one_run_gives_fails_naming_it() -> None:
    from xframe_bilstm.frameworks import RunSpec
    from xframe_bilstm.gradient_arrays import GradientArrays
    from xframe_bilstm.gradients import gradient_pair

    shared = {"inputs": np.ones((1, 2, 3)), "head/kernel": np.ones((3, 2))}
    want = GradientArrays({**shared, "head/bias": np.ones(2)})
    got = GradientArrays(dict(shared))
    expected = RunSpec("reference", "cpu", "float64")
    actual = RunSpec("torch", "cpu", "float32")
    pair = gradient_pair(want, got, expected, actual, (), atol=1e-6, rtol=0.0)
    assert not pair.comparison
    failed = [a for a in pair.comparison.arrays if not a.passed]
    assert [a.name for a in failed] == ["grad head/bias"]
    assert "torch[cpu,float32] gives no gradient of 'head/bias'" in str(failed[0].problem)
    whole = gradient_pair(want, GradientArrays(dict(want.arrays)), expected, actual, (), 1e-6, 0.0)
    assert whole.comparison
