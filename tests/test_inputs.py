"""compare() on whole models with the caller's inputs, lengths, dtypes and frameworks.

A recording module passed as ``against`` shows what the runs were given; the float64
torch port is held to float64 precision; Keras runs a saved file itself.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import (  # noqa: E402
    UnsupportedFeatureError,
    WeightShapeError,
    compare,
    keras_to_torch,
)

pytestmark = [pytest.mark.keras, pytest.mark.torch]

LENGTHS = [6, 3, 1, 5]
# torch.onnx.export(dynamo=True) runs under "auto" where onnxscript is installed.
DYNAMO = ["torch-onnx-dynamo"] if importlib.util.find_spec("onnxscript") else []


class Recording(torch.nn.Module):
    """A port that keeps a copy of every input it is called with."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[list[np.ndarray]] = []

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        self.seen.append([x.detach().numpy().copy() for x in inputs])
        return self.inner(*inputs)


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(30, 4, mask_zero=True),
            keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True)),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    path = tmp_path_factory.mktemp("tagger") / "tagger.keras"
    model.save(path)
    return path


def padded_ids(lengths: list[int], steps: int, seed: int = 0) -> np.ndarray:
    ids = np.random.default_rng(seed).integers(1, 30, (len(lengths), steps))
    ids[np.arange(steps)[None, :] >= np.array(lengths)[:, None]] = 0
    return ids.astype(np.int32)


def test_given_ids_and_lengths_reach_every_run(tagger: Path) -> None:
    ids = padded_ids(LENGTHS, 6)
    port = Recording(keras_to_torch(str(tagger)))
    report = compare(
        str(tagger),
        inputs=ids,
        lengths=LENGTHS,
        against=port,
        frameworks="auto",
        dtypes=["float32", "float64"],
    )
    assert bool(report), report.failures
    assert [run.label for run in report.runs] == [
        "reference[cpu,float64]",
        "torch[cpu,float32]",
        "torch[cpu,float64]",
        "keras[cpu,float32]",  # rebuilt in Keras from the reading
        "keras[cpu,float64]",
        "onnxruntime[cpu,float32]",  # our ONNX export of the whole model
        "torch-onnx[cpu,float32]",  # PyTorch's export of the port
        *(f"{name}[cpu,float32]" for name in DYNAMO),
        "torch[cpu,float32]@against",
        "torch[cpu,float64]@against",
        "keras[cpu,float32]@original",  # the file, loaded by Keras itself
    ]
    assert report.lengths == tuple(LENGTHS) and report.input_shape == (4, 6)
    np.testing.assert_array_equal(port.seen[0][0], ids)  # the float32 run; float64 runs a copy
    errors = {pair.label: pair.max_abs_error for pair in report.pairs}
    # float64 all through: no float32 rounding
    assert errors["torch[cpu,float64] vs reference[cpu,float64]"] < 1e-12
    assert errors["keras[cpu,float64] vs reference[cpu,float64]"] < 1e-12
    assert 0 < errors["torch[cpu,float32] vs reference[cpu,float64]"] < 1e-5
    # The port and Keras's own run of the file, side by side.
    assert errors["torch[cpu,float32] vs keras[cpu,float32]@original"] < 1e-5


def test_lengths_alone_pad_the_generated_rows(tagger: Path) -> None:
    port = Recording(keras_to_torch(str(tagger)))
    report = compare(str(tagger), lengths=[4, 2, 3], against=port, frameworks=["torch"])
    assert bool(report), report.failures
    (ids,) = port.seen[0]
    assert ids.shape == (3, 4) and report.input_shape == (3, 4)
    np.testing.assert_array_equal(ids == 0, np.arange(4)[None, :] >= np.array([[4], [2], [3]]))


def test_lengths_must_describe_the_mask_the_model_computes(tagger: Path) -> None:
    ids = padded_ids(LENGTHS, 6)
    ids[1, 1] = 0  # inside row 1's length: the Embedding would mask this step too
    with pytest.raises(WeightShapeError, match=r"row 1, step 1 \(length 3\)"):
        compare(str(tagger), inputs=ids, lengths=LENGTHS, frameworks=["torch"])


def test_float_features_are_padded_with_the_masking_value(tmp_path: Path) -> None:
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((None, 3)),
            keras.layers.Masking(mask_value=-1.0),
            keras.layers.LSTM(4),
            keras.layers.Dense(2),
        ]
    )
    path = tmp_path / "masked.keras"
    model.save(path)
    port = Recording(keras_to_torch(str(path)))
    report = compare(str(path), lengths=[5, 2], against=port, frameworks=["torch"])
    assert bool(report), report.failures
    (x,) = port.seen[0]
    assert (x[1, 2:] == -1.0).all() and (x[1, :2] != -1.0).all() and (x[0] != -1.0).all()
    # The last state of a padded row is that of its last valid step, as Keras computes it.
    expected = model(x[1:, :2]).numpy()
    np.testing.assert_allclose(model(x).numpy()[1:], expected, rtol=0, atol=1e-6)


def test_what_a_whole_model_cannot_run_is_refused(tagger: Path) -> None:
    with pytest.raises(UnsupportedFeatureError, match="float32 and float64, got"):
        compare(str(tagger), frameworks=["torch"], dtypes=["float16"])
    with pytest.raises(UnsupportedFeatureError, match="initial_states"):
        compare(str(tagger), frameworks=["torch"], initial_states=[np.zeros((3, 3))] * 2)
    with pytest.raises(WeightShapeError, match="takes 1 inputs"):
        compare(str(tagger), inputs=[padded_ids([2], 2), padded_ids([2], 2)])
    if not torch.cuda.is_available():
        with pytest.raises(UnsupportedFeatureError, match=r"devices: \['gpu:0'\]"):
            compare(str(tagger), frameworks=["torch"], devices=["gpu:0"])


def test_a_file_keras_cannot_load_fails_its_keras_run_only(tagger: Path, tmp_path: Path) -> None:
    """An option our reader does not need but Keras's constructor rejects: the Keras run
    fails with Keras's reason, the port still runs."""
    with zipfile.ZipFile(tagger) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Dense":
            layer["config"]["no_such_option"] = 1
    files["config.json"] = json.dumps(config).encode()
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    report = compare(str(broken))
    runs = {run.label: run.error for run in report.runs}
    assert runs["torch[cpu,float32]"] is None
    assert runs["keras[cpu,float32]@original"]  # Keras's own message
    assert not bool(report)
    # Every column of the reading, in the order of the frameworks; Keras rebuilds the model
    # from our reading, which does not need the file's broken option.
    columns = ["torch", "keras", "onnxruntime", "torch-onnx", *DYNAMO]
    assert [pair.label for pair in report.pairs] == [
        "torch[cpu,float32] vs reference[cpu,float64]",
        *(f"{name}[cpu,float32] vs reference[cpu,float64]" for name in columns[1:]),
        *(
            f"{later}[cpu,float32] vs {earlier}[cpu,float32]"
            for index, earlier in enumerate(columns)
            for later in columns[index + 1 :]
        ),
    ]
