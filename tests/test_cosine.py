"""Dot products and cosine similarities of vectors: Keras's ``Dot`` (Keras 3 and tf_keras)
and torch's ``F.cosine_similarity``, ported both ways.

Expected values are the original's own run. A row of tiny values tells the floors apart:
each framework divides by the norm but never by less than its own floor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, compare, keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def _vectors() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 4, 6)).astype("float32")
    a[1] *= 1e-8  # a norm below every floor but torch's
    a[2] = 0.0
    return [a, b]


def _keras_dot(normalize: bool, axes: Any = 1) -> Any:
    a, b = keras.Input((6,), name="a"), keras.Input((6,), name="b")
    return keras.Model([a, b], keras.layers.Dot(axes, normalize=normalize, name="dot")([a, b]))


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("axes", [1, -1, (1, 1)])
def test_a_keras_dot_of_vectors_ports_as_keras_computes_it(tmp_path: Path, normalize, axes) -> None:
    model = _keras_dot(normalize, axes)
    path = tmp_path / "dot.keras"
    model.save(path)
    inputs = _vectors()
    port = keras_to_torch(path)
    with torch.no_grad():
        actual = port(*map(torch.from_numpy, inputs)).numpy()
    expected = np.asarray(model(inputs))
    assert actual.shape == expected.shape == (4, 1)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    kinds = [record.kind for record in read_model(path).layers]
    assert kinds.count("scalar_op") == (2 if normalize else 0)


def test_a_tf_keras_cosine_dot_divides_by_its_own_floor(tmp_path: Path) -> None:
    k2 = pytest.importorskip("tf_keras")
    a, b = k2.Input((6,)), k2.Input((6,))
    model = k2.Model([a, b], k2.layers.Dot(1, normalize=True)([a, b]))
    path = tmp_path / "dot.h5"
    model.save(path)
    inputs = _vectors()
    port = keras_to_torch(path)  # checked against tf_keras's own run of the file
    assert "tf_keras" in port.verified_against
    with torch.no_grad():
        actual = port(*map(torch.from_numpy, inputs)).numpy()
    np.testing.assert_allclose(actual, model.predict(inputs, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_dot_over_the_steps_of_sequences_is_refused_with_the_ranks(tmp_path: Path) -> None:
    a, b = keras.Input((5, 6)), keras.Input((5, 3))
    model = keras.Model([a, b], keras.layers.Dot(1, name="dot")([a, b]))
    path = tmp_path / "steps.keras"
    model.save(path)
    with pytest.raises(UnsupportedFeatureError, match=r"'dot' \(Dot\): axes=1.*ranks \[3, 3\]"):
        keras_to_torch(path)


class Similarity(torch.nn.Module):
    """Cosine similarity of two projections, ``eps`` as given."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.project = torch.nn.Linear(6, 5, bias=False)
        self.eps = eps

    def forward(self, first: Any, second: Any) -> Any:
        a, b = self.project(first), self.project(second)
        return torch.nn.functional.cosine_similarity(a, b, dim=1, eps=self.eps)


@pytest.mark.parametrize("eps", [1e-8, 1e-3])
def test_torch_cosine_similarity_ports_to_keras_with_its_eps(eps: float) -> None:
    module = Similarity(eps).eval()
    inputs = _vectors()
    port = torch_to_keras(module)
    with torch.no_grad():
        expected = module(*map(torch.from_numpy, inputs)).numpy()
    actual = np.asarray(port(inputs))
    assert actual.shape == expected.shape == (4,)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_compare_of_a_cosine_module_agrees_on_every_framework() -> None:
    report = compare(Similarity().eval(), inputs=_vectors())
    assert report, report
    assert "onnxruntime[cpu,float32]" in str(report)
