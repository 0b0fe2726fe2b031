"""One test per legacy trap (what the reader makes of it) and per refused layer or file."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, WeightShapeError, keras_to_torch, lint  # noqa: E402
from xframe_bilstm.adapters.torch import ExplicitRNN  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def recurrent(graph, name):
    return graph.layer(name).recurrent


# --------------------------------------------------------------------------- legacy traps


def test_keras2_hard_sigmoid_is_read_as_keras2s_function(saved_cases, ported_cases) -> None:
    bidi = recurrent(read_model(saved_cases["k2-classifier.h5"]), "bidi")
    assert bidi.recurrent_activation == "hard_sigmoid_keras2"
    assert "error" not in ported_cases["k2-classifier.h5"]


def test_keras3_hard_sigmoid_stays_keras3s_function(saved_cases) -> None:
    graph = read_model(saved_cases["k3-fixed-length.keras"])
    (lstm,) = [r.recurrent for r in graph.layers if r.kind == "recurrent"]
    assert lstm.recurrent_activation == "hard_sigmoid_keras3"


def test_keras3_refuses_the_keras2_file_that_we_read(saved_cases) -> None:
    # The trap itself: Keras 3 cannot load a tf_keras file with recurrent layers.
    with pytest.raises((TypeError, ValueError)):
        keras.models.load_model(saved_cases["k2-time-major.h5"], compile=False)
    graph = read_model(saved_cases["k2-time-major.h5"])
    assert [r.options["time_major"] for r in graph.layers if r.kind == "recurrent"] == [True] * 2


def test_cudnn_weights_become_the_canonical_layout(saved_cases, ported_cases) -> None:
    graph = read_model(saved_cases["k2-cudnn.h5"])
    lstm, gru = [r.recurrent for r in graph.layers if r.kind == "recurrent"]
    assert (lstm.cell, lstm.bias_layout, gru.cell, gru.reset_after) == (
        "lstm",
        "split",
        "gru",
        True,
    )
    # tf_keras's own loader converted the same weights for the expected outputs.
    assert max(ported_cases["k2-cudnn.h5"]["errors"]) <= ported_cases["k2-cudnn.h5"]["tolerance"]


def test_gru_reset_before_runs_on_the_explicit_loop(saved_cases) -> None:
    module = keras_to_torch(saved_cases["k2-classifier.h5"])
    assert recurrent(read_model(saved_cases["k2-classifier.h5"]), "gru").reset_after is False
    assert isinstance(module.gru.rnn, ExplicitRNN)


def test_lint_lists_each_legacy_trap(saved_cases) -> None:
    found = {(trap.layer, trap.trap, trap.action) for trap in lint(saved_cases["k2-classifier.h5"])}
    assert ("bidi", "hard_sigmoid", "converted") in found
    assert ("gru", "GRU reset_after=False", "explicit loop") in found
    assert any(trap == "masks and left padding" for _, trap, _ in found)
    cudnn = {trap.trap for trap in lint(saved_cases["k2-cudnn.h5"])}
    assert "cuDNN weight layout" in cudnn
    assert "time_major" in {trap.trap for trap in lint(saved_cases["k2-time-major.h5"])}
    assert lint(saved_cases["k3-classifier.keras"])[0].trap == "masks and left padding"


def _unrolled(masked: bool):
    layers = keras.layers
    inputs = keras.Input((None,), dtype="int32")
    x = layers.Embedding(10, 3, mask_zero=masked)(inputs)
    x = layers.Bidirectional(layers.LSTM(2, unroll=True, return_sequences=True))(x)
    return keras.Model(inputs, layers.GlobalAveragePooling1D()(x))


def test_unroll_with_a_mask_is_refused_and_harmless_without(tmp_path: Path) -> None:
    path = tmp_path / "unrolled.keras"
    _unrolled(masked=True).save(path)
    with pytest.raises(UnsupportedFeatureError, match="unroll=True"):
        keras_to_torch(path)
    assert [t.action for t in lint(path) if t.trap.startswith("unroll")] == ["refused"]
    harmless = _unrolled(masked=False)
    assert [t.action for t in lint(harmless) if t.trap.startswith("unroll")] == ["no effect"]
    keras_to_torch(harmless)  # verified against Keras itself


# --------------------------------------------------------------------------- refused layers


def _conv():
    return keras.Sequential([keras.Input((5, 4, 3, 2)), keras.layers.Conv3D(2, 3, name="conv")])


def _lambda():
    inputs = keras.Input((5, 3))
    return keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2, name="double")(inputs))


def _unmerged():
    inputs = keras.Input((5, 3))
    halves = keras.layers.Bidirectional(keras.layers.GRU(2), merge_mode=None, name="bi")(inputs)
    return keras.Model(inputs, keras.layers.Concatenate()(halves))


def _nested():
    inner = keras.Sequential([keras.Input((5, 4, 3, 2)), keras.layers.Conv3D(2, 3, name="conv")])
    nested = keras.Model(inner.inputs, inner.outputs, name="inner")
    return keras.Sequential([keras.Input((5, 4, 3, 2)), nested])


REFUSED = [
    pytest.param(_conv, "'conv' (Conv3D)", id="conv3d"),
    pytest.param(_lambda, "'double' (Lambda)", id="lambda"),
    pytest.param(_unmerged, "'bi' (Bidirectional), which returns several", id="merge-mode-none"),
    pytest.param(_nested, "'inner.conv' (Conv3D)", id="nested-model"),
]


@pytest.mark.parametrize(("build", "named"), REFUSED)
def test_refused_layer_is_named_with_its_class(tmp_path: Path, build, named: str) -> None:
    path = tmp_path / "model.keras"
    build().save(path)
    with pytest.raises(UnsupportedFeatureError) as raised:
        keras_to_torch(path)
    assert named in str(raised.value)


def test_unsupported_layer_is_refused_before_any_weight_is_read(tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    _conv().save(path)
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json")
    broken = tmp_path / "no-weights.keras"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("config.json", config)
        archive.writestr("model.weights.h5", b"not hdf5")
    with pytest.raises(UnsupportedFeatureError, match="Conv3D"):
        keras_to_torch(broken)
    assert [trap.action for trap in lint(broken)] == ["refused"]


# --------------------------------------------------------------------------- refused files


def test_archive_with_a_parent_directory_member_is_refused(saved_cases, tmp_path: Path) -> None:
    evil = tmp_path / "evil.keras"
    with (
        zipfile.ZipFile(saved_cases["k3-classifier.keras"]) as source,
        zipfile.ZipFile(evil, "w") as target,
    ):
        for info in source.infolist():
            target.writestr(info, source.read(info))
        target.writestr("../outside.txt", b"x")
    with pytest.raises(UnsupportedFeatureError, match=r"unsafe member name '\.\./outside\.txt'"):
        read_model(evil)


def test_weight_of_the_wrong_shape_is_refused_before_it_is_read(
    saved_cases, tmp_path: Path
) -> None:
    path = tmp_path / "tampered.h5"
    path.write_bytes(saved_cases["k3-classifier.h5"].read_bytes())
    with h5py.File(path, "r+") as handle:
        # The Dense layer's name depends on how many layers this session made before it.
        (layer,) = [name for name in handle["model_weights"] if name.startswith("dense")]
        group = handle["model_weights"][layer]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
        del group[names[0]]
        group.create_dataset(names[0], data=np.zeros((10, 4), "float32"))
    with pytest.raises(
        WeightShapeError, match=r"shape \(10, 4\); its configuration implies \(10, 3\)"
    ):
        read_model(path)


def test_weights_only_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "weights.weights.h5"
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    legacy = tmp_path / "w.h5"
    with h5py.File(legacy, "w") as handle:
        handle.attrs["layer_names"] = [b"dense"]
    with pytest.raises(UnsupportedFeatureError, match="save the whole model"):
        read_model(legacy)
    model.save_weights(path)
    with pytest.raises(UnsupportedFeatureError):
        read_model(path)


def test_a_file_that_is_no_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.keras"
    path.write_text(json.dumps({"not": "a model"}))
    with pytest.raises(UnsupportedFeatureError, match=r"neither a \.keras archive nor an HDF5"):
        read_model(path)
