"""Custom layers both ways: the user's classes ported by the user's factories, verified.

The chord-recogniser shape: Input -> a custom squeeze layer with a weight ->
Bidirectional(GRU(reset_after=False)) -> TimeDistributed(Dense), saved as .keras and .h5.
Expected values come from the Keras model's own call and the torch module's own forward.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import (  # noqa: E402
    ToleranceExceededError,
    UnsupportedFeatureError,
    compare,
    keras_to_torch,
    to_onnx,
    torch_to_keras,
)

pytestmark = [pytest.mark.keras, pytest.mark.torch]


@keras.saving.register_keras_serializable(package="xframe_tests")
class SqueezeLayer(keras.layers.Layer):
    """``tanh(x * scale) * factor``, one scale per feature."""

    def __init__(self, factor: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, shape):
        self.scale = self.add_weight(shape=(shape[-1],), initializer="random_normal", name="scale")

    def call(self, x):
        return keras.ops.tanh(x * self.scale) * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class Squeeze(torch.nn.Module):
    def __init__(self, factor: float, scale: np.ndarray):
        super().__init__()
        self.factor = factor
        self.scale = torch.nn.Parameter(torch.as_tensor(scale))

    def forward(self, x):
        return torch.tanh(x * self.scale) * self.factor


def squeeze_factory(config, weights):
    return Squeeze(config["factor"], weights[0])


CUSTOM = {"SqueezeLayer": squeeze_factory}


def chord_model(custom: keras.layers.Layer) -> keras.Model:
    keras.utils.set_random_seed(3)
    return keras.Sequential(
        [
            keras.Input((None, 4)),
            custom,
            keras.layers.Bidirectional(
                keras.layers.GRU(3, reset_after=False, return_sequences=True), name="bigru"
            ),
            keras.layers.TimeDistributed(keras.layers.Dense(2), name="chords"),
        ],
        name="chord_recogniser",
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[keras.Model, Path]:
    model = chord_model(SqueezeLayer(0.5, name="squeeze"))
    folder = tmp_path_factory.mktemp("custom")
    model.save(folder / "chords.keras")
    model.save(folder / "chords.h5")
    return model, folder


def features(steps: int = 5) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((2, steps, 4)).astype("float32")


@pytest.mark.parametrize("suffix", [".keras", ".h5", "live"])
def test_a_custom_layer_ports_by_its_factory_and_matches_keras(saved, suffix: str) -> None:
    model, folder = saved
    source = model if suffix == "live" else folder / f"chords{suffix}"
    port = keras_to_torch(source, custom_layers=CUSTOM)
    assert isinstance(port.squeeze, Squeeze)
    assert "own call" in port.verified_against or "load_model" in port.verified_against
    x = features()
    with torch.no_grad():
        got = port(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, np.asarray(model(x)), atol=1e-5)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_without_a_mapping_one_refusal_names_the_class_and_the_option(saved, suffix) -> None:
    _, folder = saved
    with pytest.raises(UnsupportedFeatureError) as caught:
        keras_to_torch(folder / f"chords{suffix}")
    message = str(caught.value)
    assert "'squeeze'" in message and "SqueezeLayer" in message
    assert "custom_layers={'SqueezeLayer': factory}" in message


def test_a_factory_of_the_wrong_shape_fails_verification_naming_the_layer(saved) -> None:
    _, folder = saved
    wrong = {"SqueezeLayer": lambda config, weights: torch.nn.Linear(4, 5)}
    with pytest.raises(ToleranceExceededError, match=r"'squeeze' \(SqueezeLayer\) returned"):
        keras_to_torch(folder / "chords.keras", custom_layers=wrong)
    forgetful = {"SqueezeLayer": lambda config, weights: torch.nn.Identity()}
    with pytest.raises(ToleranceExceededError, match=r"custom layers 'squeeze' \(SqueezeLayer\)"):
        keras_to_torch(folder / "chords.keras", custom_layers=forgetful)


def test_a_factory_that_returns_no_module_is_refused_by_layer(saved) -> None:
    _, folder = saved
    with pytest.raises(UnsupportedFeatureError, match=r"'squeeze' .*not a torch\.nn\.Module"):
        keras_to_torch(folder / "chords.keras", custom_layers={"SqueezeLayer": lambda c, w: 3})


class ScaleOnly(keras.layers.Layer):
    """Not registered: Keras knows it only through ``custom_objects``."""

    def build(self, shape):
        self.scale = self.add_weight(shape=(shape[-1],), initializer="random_normal", name="s")

    def call(self, x):
        return x * self.scale


def test_an_unregistered_class_needs_custom_objects_the_reference_cannot_stand_in(
    tmp_path: Path,
) -> None:
    model = chord_model(ScaleOnly(name="scale_only"))
    path = tmp_path / "scale.keras"
    model.save(path)
    factories = {"ScaleOnly": lambda config, weights: _Times(weights[0])}
    with pytest.raises(UnsupportedFeatureError, match="float64 reference cannot run"):
        keras_to_torch(path, custom_layers=factories)
    port = keras_to_torch(path, custom_layers=factories, custom_objects={"ScaleOnly": ScaleOnly})
    x = features()
    with torch.no_grad():
        np.testing.assert_allclose(port(torch.from_numpy(x)).numpy(), model(x), atol=1e-5)


class _Times(torch.nn.Module):
    def __init__(self, scale: np.ndarray):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.as_tensor(scale))

    def forward(self, x):
        return x * self.scale


def test_compare_runs_torch_and_keras_and_says_why_reference_and_onnx_are_left_out(
    saved,
) -> None:
    _, folder = saved
    report = compare(folder / "chords.keras", custom_layers=CUSTOM, steps=6)
    assert report, "\n".join(report.lines())
    labels = [run.label for run in report.runs]
    assert "torch[cpu,float32]" in labels and "keras[cpu,float32]@original" in labels
    assert "keras[cpu,float32]" in labels
    assert not any(label.startswith(("reference", "onnxruntime")) for label in labels)
    missing = "\n".join(report.left_out)
    assert "reference: " in missing and "layer 'squeeze' (SqueezeLayer)" in missing
    assert "onnxruntime: " in missing


def test_to_onnx_refuses_a_custom_layer_by_name(saved) -> None:
    _, folder = saved
    with pytest.raises(UnsupportedFeatureError, match=r"'SqueezeLayer'.*layer 'squeeze'"):
        to_onnx(folder / "chords.keras")
    from xframe_bilstm.adapters.onnx.graph_export import GRAPH_OPSET, graph_export_refusal
    from xframe_bilstm.custom import custom_layers_in_use
    from xframe_bilstm.keras_files import read_model

    with custom_layers_in_use(CUSTOM):
        graph = read_model(folder / "chords.keras")
    refusal = graph_export_refusal(graph, GRAPH_OPSET)
    assert refusal is not None and "'squeeze' (SqueezeLayer) is a custom layer" in refusal


class Scale(torch.nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.randn(features))

    def forward(self, x):
        return torch.tanh(x * self.scale)


class KerasScale(keras.layers.Layer):
    def __init__(self, scale: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        self.initial = np.asarray(scale)

    def build(self, shape):
        self.scale = self.add_weight(
            shape=self.initial.shape, initializer=keras.initializers.Constant(self.initial)
        )

    def call(self, x):
        return keras.ops.tanh(x * self.scale)


def keras_scale(module: Scale) -> KerasScale:
    return KerasScale(module.scale.detach().numpy())


def tagger() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.GRU(4, 3, batch_first=True), Scale(3), torch.nn.Linear(3, 2)
    ).eval()


@pytest.mark.parametrize("key", [Scale, "Scale"])
def test_a_custom_torch_child_becomes_the_factorys_keras_layer(key) -> None:
    module = tagger()
    model = torch_to_keras(module, custom_modules={key: keras_scale})
    x = features(6)
    with torch.no_grad():
        gru_out = module[0](torch.from_numpy(x))[0]
        expected = module[2](module[1](gru_out)).numpy()
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5)


def test_a_custom_torch_child_without_a_mapping_or_with_a_wrong_one_is_refused() -> None:
    module = tagger()
    with pytest.raises(UnsupportedFeatureError, match=r"'scale_1' \(Scale\).*custom_modules="):
        torch_to_keras(module)
    with pytest.raises(ToleranceExceededError, match=r"custom layers 'scale_1' \(Scale\)"):
        torch_to_keras(module, custom_modules={Scale: lambda m: keras.layers.Activation("tanh")})


def keras_squeeze(module: Squeeze) -> SqueezeLayer:
    """The Keras layer computing what a (trained) ``Squeeze`` computes now."""
    layer = SqueezeLayer(module.factor, name="squeeze")
    layer.build((None, None, module.scale.shape[0]))
    layer.set_weights([module.scale.detach().numpy()])
    return layer


def _trained(saved) -> torch.nn.Module:
    """The chords port after a small change to its custom layer's weight, as training makes."""
    model, _ = saved
    port = keras_to_torch(model, custom_layers=CUSTOM)
    with torch.no_grad():
        port.squeeze.scale.mul_(1.5)
    return port


def test_a_port_whose_custom_layer_changed_is_refused_back_without_a_factory(saved) -> None:
    port = _trained(saved)
    for verify in (True, False):  # the stale weights would pass a loose check: never used
        with pytest.raises(UnsupportedFeatureError, match=r"'squeeze'.*custom_modules=\{Squeeze"):
            torch_to_keras(port, verify=verify)


@pytest.mark.parametrize("key", [Squeeze, "Squeeze"])
def test_a_port_whose_custom_layer_changed_converts_back_by_its_factory(saved, key) -> None:
    port = _trained(saved)
    back = torch_to_keras(port, custom_modules={key: keras_squeeze})  # verified
    np.testing.assert_array_equal(
        back.get_layer("squeeze").get_weights()[0], port.squeeze.scale.detach().numpy()
    )
    x = features(7)
    with torch.no_grad():
        expected = port(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(back(x)), expected, atol=1e-5)


def test_an_unchanged_port_converts_back_with_the_weights_it_was_ported_with(saved) -> None:
    model, _ = saved
    port = keras_to_torch(model, custom_layers=CUSTOM)
    back = torch_to_keras(port)  # the class Keras knows, as ported
    np.testing.assert_array_equal(
        back.get_layer("squeeze").get_weights()[0], model.get_layer("squeeze").get_weights()[0]
    )


def _assert_keras_agrees_with_the_original(report) -> None:
    """The report passes, the Keras model and the module's own run among its pairs."""
    assert report, report.lines()
    labels = {pair.actual for pair in report.pairs} | {pair.expected for pair in report.pairs}
    assert {"keras[cpu,float32]", "torch[cpu,float32]@original"} <= labels


def test_compare_runs_a_changed_port_with_the_factory_of_its_custom_layer(saved) -> None:
    port = _trained(saved)
    with pytest.raises(UnsupportedFeatureError, match=r"'squeeze'.*custom_modules=\{Squeeze"):
        compare(port, frameworks=["torch", "keras"])
    report = compare(port, frameworks=["torch", "keras"], custom_modules={Squeeze: keras_squeeze})
    _assert_keras_agrees_with_the_original(report)
    assert any("'squeeze' (SqueezeLayer) is a custom layer" in line for line in report.left_out)


class RunningScale(torch.nn.Module):
    """A child computing what no layer record does (a cumulative sum)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.linspace(0.5, 1.5, 3))

    def forward(self, x):
        return torch.cumsum(x * self.scale, 1)


class KerasRunningScale(keras.layers.Layer):
    def __init__(self, scale: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        self.scale = np.asarray(scale)

    def call(self, x):
        return keras.ops.cumsum(x * self.scale, 1)


class RunningTagger(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.gru = torch.nn.GRU(4, 3, batch_first=True)
        self.running = RunningScale()
        self.fc = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(self.running(self.gru(x)[0]))


def test_compare_runs_a_module_with_a_custom_child_by_its_factory() -> None:
    def factory(module: RunningScale) -> KerasRunningScale:
        return KerasRunningScale(module.scale.detach().numpy())

    module = RunningTagger().eval()
    with pytest.raises(UnsupportedFeatureError, match=r"applies aten.cumsum"):
        compare(module, frameworks=["torch", "keras"])
    report = compare(module, frameworks=["torch", "keras"], custom_modules={RunningScale: factory})
    _assert_keras_agrees_with_the_original(report)
