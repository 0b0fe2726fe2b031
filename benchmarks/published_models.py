#!/usr/bin/env python3
"""Trained recurrent models from public packages, run through the library as a user would.

Nobody here trained these models: their weights are what their authors published. The
script downloads each package's wheel or source archive with ``pip download`` (no install,
no dependencies), takes the model files out of it and runs the conversion a user would:

- **silero-vad** (MIT): a voice-activity detector shipped as ONNX graphs (STFT as a ``Conv``,
  a conv encoder, an LSTM decoder inside ``If`` branches chosen by the sample rate) and as
  TorchScript. ``onnx_to_torch`` on each ONNX variant, verified against onnxruntime on one
  512-sample chunk (three 576-sample windows for the sequence variant), the model's own input
  size, from zero LSTM states as the package starts; the TorchScript file through
  ``torch_to_keras``, which refuses it saying what to do.
- **chars2vec** (Apache-2.0): character embeddings from two stacked LSTMs, published as
  Keras 2 weights-only ``.h5`` files. The model is rebuilt in Keras 3 as the package builds it,
  the weights loaded, then ``keras_to_torch`` and ``compare()`` on one-hot words.
- **textgenrnn** (MIT): a character model, Embedding → two LSTMs → Concatenate → a custom
  ``AttentionWeightedAverage`` layer with a weight of its own → Dense softmax, published as a
  Keras 2.1.5 weights-only file whose LSTM weights are in CuDNNLSTM's layout. The package's
  own ``model.py`` builds it on tf_keras (Keras 2, which it was written for) and loads the
  weights, each checked against the file's arrays read with h5py; the same model is rebuilt
  in Keras 3 with the custom layer ported line by line, saved as ``.keras``, and ported with
  ``custom_layers`` (and back with ``torch_to_keras``, before and after fine-tuning steps),
  then ``compare()`` on sentences encoded with the package's vocabulary as it encodes them;
  the Keras 2 model saved whole (``.h5``) is ported and compared too.
- **ethnicolr** (MIT), 0.9.6, its last release with Keras models: name classifiers
  (Embedding over character bigrams → LSTM → Dropout → LSTM → Dense softmax) published as
  Keras 2 ``.h5`` files, one per dataset (census surnames, Florida and North Carolina voter
  registrations, Wikipedia names). ``keras_to_torch`` on each file (the package's unused
  ``nc_voter_name_hispanic`` model ships without its vocabulary and is skipped), then
  ``compare()`` on names encoded as the package encodes them (title case, bigram indices in
  its vocabulary, 0 for unknown ones, padded in front to the model's length).
- **Resemblyzer** (Apache-2.0): a speaker encoder, a 3-layer LSTM whose last final state
  goes through Linear and ReLU and is L2-normalized in ``forward`` (``x / torch.norm(x)``),
  published as a PyTorch checkpoint. The network is written out as the package's
  ``voice_encoder.py`` defines it and loaded from its ``pretrained.pt``, then
  ``torch_to_keras`` (captured with ``torch.export``) and ``compare()`` on mel frames of the
  package's own length.

    python benchmarks/published_models.py     # writes benchmarks/results/published_models.md

Each row says what ran and the largest error against the original's own computation (the
graph on onnxruntime, the Keras model's call) next to the tolerance the library derived.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before TensorFlow

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import keras  # noqa: E402
import onnx  # noqa: E402
import onnxruntime  # noqa: E402
from resemblyzer_rebuild import voice_encoder  # noqa: E402
from textgenrnn_rebuild import (  # noqa: E402
    TorchAttentionWeightedAverage,
    encode,
    file_weights,
    fine_tune,
    keras2_model_module,
    keras3_model,
    keras_attention,
    package_config,
    torch_attention,
)

import xframe_bilstm  # noqa: E402
from xframe_bilstm import compare, keras_to_torch, onnx_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.comparison import NOISE_FACTOR  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402

PACKAGES = {
    "silero-vad": "6.2.3",
    "chars2vec": "0.1.7",
    "textgenrnn": "2.0.0",
    "resemblyzer": "0.1.4",
    "ethnicolr": "0.9.6",
}
SILERO_GRAPHS = (
    "silero_vad.onnx",
    "silero_vad_16k_op15.onnx",
    "silero_vad_op18_ifless.onnx",
    "silero_vad_16k_sequence.onnx",
)
Row = tuple[str, str, str, str]


def download(folder: Path) -> dict[str, Path]:
    """Each package's archive, unpacked into ``folder``."""
    unpacked = {}
    for name, version in PACKAGES.items():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder),
             f"{name}=={version}"],
            check=True,
        )  # fmt: skip
        (archive,) = [p for p in folder.iterdir() if p.name.lower().startswith(name[:5])]
        target = folder / name
        if archive.suffix == ".whl":
            zipfile.ZipFile(archive).extractall(target)
        else:
            subprocess.run(["tar", "xzf", str(archive), "-C", str(folder)], check=True)
            target = next(folder.glob(f"{name}-*/"))
        unpacked[name] = target
    return unpacked


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    return call(), time.perf_counter() - start


def silero(root: Path) -> list[Row]:
    data = next(root.rglob("silero_vad/data"))
    rows: list[Row] = []
    for name in SILERO_GRAPHS:
        path = data / name
        graph = onnx.load(path)
        rng = np.random.default_rng(0)
        state = np.zeros((2, 1, 128), np.float32)  # as the package starts a stream
        arrays = {
            "input": (rng.normal(size=(1, 512)) * 0.1).astype(np.float32),
            "state": state,
            "sr": np.array(16000, np.int64),
            # The sequence variant: 3 windows of 576 samples, LSTM states apart.
            "h": state[:1],
            "c": state[1:],
        }
        if name == "silero_vad_16k_sequence.onnx":
            arrays["input"] = (rng.normal(size=(3, 576)) * 0.1).astype(np.float32)
        inputs = [arrays[i.name] for i in graph.graph.input]
        try:
            module, seconds = _timed(lambda p=path, x=inputs: onnx_to_torch(p, inputs=x))
        except Exception as error:  # the row says what the user would read
            rows.append((f"silero-vad {name}", "onnx_to_torch", _first_line(error), ""))
            continue
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        expected = session.run(None, {i.name: a for i, a in zip(graph.graph.input, inputs)})
        with torch.no_grad():
            got = module(*[torch.from_numpy(np.asarray(a)) for a in inputs])
        error = max(float(np.abs(g.numpy() - e).max()) for g, e in zip(got, expected))
        rows.append(
            (
                f"silero-vad {name}",
                "onnx_to_torch, verified on the model's own input size",
                f"converted in {seconds:.2f} s; max error vs onnxruntime {error:.2g}",
                "verified",
            )
        )
    script = torch.jit.load(str(data / "silero_vad.jit"))
    try:
        torch_to_keras(script)
        verdict = "converted"
    except Exception as error:
        verdict = _first_line(error)
    rows.append(("silero-vad silero_vad.jit", "torch_to_keras", verdict, "refused"))
    return rows


def _worst(report: Any) -> str:
    worst = max(report.pairs, key=lambda pair: pair.max_abs_error / pair.tolerance)
    left_out = [entry.split(":")[0] for entry in report.left_out]  # what, then why
    return (
        f"{len(report.pairs)} pairs; worst {worst.max_abs_error:.2g} against "
        f"{worst.tolerance:.2g} ({worst.label})"
        + _drift(report)
        + (f"; left out: {', '.join(left_out)}" if left_out else "")
    )


def _converted_row(model: str, action: str, seconds: float, report: Any) -> Row:
    """The row of a model converted in ``seconds``, then compared: ``report``'s worst pair."""
    verdict = "equivalent" if report else "NOT equivalent"
    return (model, action, f"converted in {seconds:.2f} s; {_worst(report)}", verdict)


def _drift(report: Any) -> str:
    """How far the float32 runs lie from the float64 reference, in units of the float32
    reference's own drift: a run's allowance there is NOISE_FACTOR of those units (where
    no floor applies), so its error over the allowance, times NOISE_FACTOR, is the ratio
    ``benchmarks/tolerance.py`` measures on random weights."""
    ratios = [
        NOISE_FACTOR * pair.max_abs_error / pair.tolerance
        for pair in report.pairs
        if "reference[cpu,float64]" in (pair.expected, pair.actual)
        and "float32" in pair.expected + pair.actual
    ]
    return f"; runs' drift up to {max(ratios):.1f}x the reference's" if ratios else ""


def chars2vec(root: Path) -> list[Row]:
    rows: list[Row] = []
    for size in (50, 100, 150, 200, 300):
        weights = next(root.rglob(f"trained_models/eng_{size}/weights.h5"))
        inputs = keras.layers.Input(shape=(None, 59))
        hidden = keras.layers.LSTM(size, return_sequences=True)(inputs)
        model = keras.Model(inputs, keras.layers.LSTM(size)(hidden))
        model.load_weights(weights)
        ids = np.random.default_rng(size).integers(0, 59, (4, 12))
        words = np.eye(59, dtype=np.float32)[ids]  # one-hot characters, as the package feeds
        _, seconds = _timed(lambda m=model: keras_to_torch(m))
        report = compare(model, inputs=words)
        rows.append(
            _converted_row(
                f"chars2vec eng_{size}",
                "keras_to_torch (verified), compare() on one-hot words",
                seconds,
                report,
            )
        )
    return rows


# textgenrnn: its sentences are encoded as the package encodes a prefix to generate from.
TEXTGENRNN_SENTENCES = (
    "Never gonna give you up, never gonna let you down",
    "The quick brown fox jumps over the lazy dog.",
    "What is the airspeed velocity of an unladen swallow?",
    "I think, therefore I am.",
)
# Fine-tuning steps of the port before it goes back to Keras: (Adam steps, learning rate);
# 4e-3 is the rate textgenrnn trains with.
TEXTGENRNN_TUNING = ((1, 5e-4), (3, 4e-3))
TEXTGENRNN_LAYERS = {"AttentionWeightedAverage": torch_attention}  # custom_layers=


def textgenrnn(root: Path, folder: Path) -> list[Row]:
    source = root / "textgenrnn"
    folder.mkdir()
    weights_path = source / "textgenrnn_weights.hdf5"
    vocab = json.loads((source / "textgenrnn_vocab.json").read_text(encoding="utf8"))
    cfg, num_classes = package_config(source), len(vocab) + 1  # as textgenrnn() counts
    ids = np.stack([encode(t, vocab, cfg["max_length"]) for t in TEXTGENRNN_SENTENCES])
    name, custom = "textgenrnn", TEXTGENRNN_LAYERS
    file = f"{name} {weights_path.name}"
    rows: list[Row] = []

    model = keras3_model(num_classes, cfg)
    try:
        model.load_weights(weights_path, by_name=True)
        rows.append((file, "Keras 3 load_weights(by_name=True)", "loaded", "loaded"))
    except ValueError as error:  # Keras 3's own refusal: no CuDNNLSTM conversion
        rows.append(
            (file, "Keras 3 load_weights(by_name=True)", _first_line(error), "refused by Keras")
        )
    try:
        keras_to_torch(weights_path, custom_layers=custom)
        verdict = "converted"
    except Exception as error:  # named by its file name: the folder is a temporary one
        verdict = _first_line(error).replace(str(weights_path), weights_path.name)
    rows.append((file, "keras_to_torch", verdict, "refused"))

    # The package's own build and load, on Keras 2; every array against the file's.
    keras2_module = keras2_model_module(source, folder)
    keras2 = keras2_module.textgenrnn_model(num_classes, cfg=cfg, weights_path=str(weights_path))
    expected = file_weights(weights_path)
    loaded = [(layer.name, layer.get_weights()) for layer in keras2.layers]
    equal = sum(
        np.array_equal(got, want)
        for layer, arrays in loaded
        for got, want in zip(arrays, expected[layer], strict=True)
    )
    total = sum(len(arrays) for arrays in expected.values())
    for layer in model.layers:
        layer.set_weights(expected[layer.name])
    keras_probs = np.asarray(model([ids]))
    error = float(np.abs(keras_probs - keras2([ids]).numpy()).max())
    next_chars = {i: c for c, i in vocab.items()}
    guesses = ", ".join(repr(next_chars[i]) for i in keras_probs.argmax(-1))
    rows.append(
        (
            f"{name} (model.py on tf_keras; in Keras 3)",
            "the package's model.py loads the file; each array against h5py's; the Keras 3 "
            "model with the ported layer against it on 4 encoded sentences",
            f"{equal}/{total} arrays equal to the file's (LSTMs in CuDNNLSTM's layout, "
            f"converted); Keras 3 vs the package's Keras 2 model: max error {error:.2g}; "
            f"next characters {guesses}",
            "rebuilt" if equal == total == len(model.weights) else "NOT rebuilt",
        )
    )
    path = folder / "textgenrnn.keras"
    model.save(path)
    return (
        rows
        + _ported(name, path, ids, keras_probs, vocab["<s>"])
        + _keras2_file(name, keras2, keras2_module, folder, ids)
    )


def _ported(name: str, path: Path, ids: np.ndarray, keras_probs: Any, end: int) -> list[Row]:
    """The Keras 3 file to torch, compared, and back to Keras before and after fine-tuning."""
    custom, rows = TEXTGENRNN_LAYERS, []
    try:
        report = compare(path, inputs=[ids], custom_layers=custom)
        result = _worst(report)
        verdict = "equivalent" if report else "NOT equivalent"
    except Exception as error:
        result, verdict = _first_line(error), "fails"
    rows.append((f"{name} {path.name}", "compare(path, custom_layers=...) on the sentences",
                 result, verdict))  # fmt: skip
    try:
        port, seconds = _timed(lambda: keras_to_torch(path, custom_layers=custom))
    except Exception as error:
        action = "keras_to_torch(path, custom_layers=...)"
        return [(f"{name} {path.name}", action, _first_line(error), "fails"), *rows]
    with torch.no_grad():
        error = float(np.abs(port(torch.from_numpy(ids)).numpy() - keras_probs).max())
    converted = (
        f"{name} {path.name}",
        "keras_to_torch(path, custom_layers=...)",
        f"converted in {seconds:.2f} s; verified against {port.verified_against}; max error "
        f"vs Keras on the sentences {error:.2g}",
        "verified",
    )
    rows = [converted, *rows, _back_to_keras(name, port, ids, keras_probs, "the port")]
    for steps, rate in TEXTGENRNN_TUNING:
        tuned = keras_to_torch(path, custom_layers=custom)
        fine_tune(tuned, ids, end, steps, rate)
        with torch.no_grad():
            tuned_probs = tuned(torch.from_numpy(ids)).numpy()
        label = f"the port after {steps} Adam step(s) at lr {rate:g}"
        rows.append(_back_to_keras(name, tuned, ids, tuned_probs, label))
    try:  # without the factory: the changed attention weight has no reader
        torch_to_keras(tuned)
        rows.append((name, f"torch_to_keras({label})", "converted", "WRONG: not refused"))
    except Exception as error:
        rows.append((name, f"torch_to_keras({label})", _first_line(error), "refused"))
    return rows


def _back_to_keras(name: str, port: Any, ids: np.ndarray, expected: Any, what: str) -> Row:
    """``torch_to_keras`` of a port, custom module factory given: its output against
    ``expected`` on the sentences, and whose attention weight the Keras model holds."""
    called: list[Any] = []

    def factory(module: TorchAttentionWeightedAverage) -> keras.layers.Layer:
        called.append(module)
        return keras_attention(module)

    action = f"torch_to_keras({what}, custom_modules=...)"
    try:
        back, seconds = _timed(
            lambda: torch_to_keras(port, custom_modules={TorchAttentionWeightedAverage: factory})
        )
    except Exception as error:
        return (name, action, _first_line(error), "fails")
    error = float(np.abs(np.asarray(back([ids])) - expected).max())
    held = back.get_layer("attention").get_weights()[0]
    current = np.array_equal(held, port.attention.W.detach().numpy())
    return (
        name,
        action,
        f"converted in {seconds:.2f} s; factory called {len(called)} time(s); attention W "
        f"{'is' if current else 'is NOT'} the port's; max error vs the port on the sentences "
        f"{error:.2g}",
        "verified" if current else "WRONG: stale attention W",
    )


def _keras2_file(name: str, keras2: Any, module: Any, folder: Path, ids: np.ndarray) -> list[Row]:
    """The package's Keras 2 model saved whole (``.h5``), ported with its own class known to
    tf_keras, and compared."""
    path = folder / "textgenrnn_keras2.h5"
    keras2.save(path)
    expected = keras2([ids]).numpy()
    objects = {"AttentionWeightedAverage": module.AttentionWeightedAverage}
    custom = TEXTGENRNN_LAYERS
    label, rows = f"{name} {path.name} (Keras 2)", []
    action = "keras_to_torch(path, custom_layers=..., custom_objects={the package's class})"
    try:
        port, seconds = _timed(
            lambda: keras_to_torch(path, custom_layers=custom, custom_objects=objects)
        )
        with torch.no_grad():
            error = float(np.abs(port(torch.from_numpy(ids)).numpy() - expected).max())
        rows.append(
            (
                label,
                action,
                f"converted in {seconds:.2f} s; verified against {port.verified_against}; max "
                f"error vs the package's model on the sentences {error:.2g}",
                "verified",
            )
        )
    except Exception as error:
        rows.append((label, action, _first_line(error), "fails"))
    action = "compare(path, custom_layers=...) on the sentences"
    try:
        report = compare(path, inputs=[ids], custom_layers=custom)
    except Exception as error:
        return [*rows, (label, action, _first_line(error), "fails")]
    originals = [pair.label for pair in report.pairs if "@original" in pair.label]
    result = f"{_worst(report)}; pairs with the original (@original): {len(originals)}"
    return [*rows, (label, action, result, "equivalent" if report else "NOT equivalent")]


def resemblyzer(root: Path) -> list[Row]:
    """The speaker encoder to Keras, checked against its own ``forward``, then compared."""
    encoder, p = voice_encoder(root)
    frames, channels = int(p["partials_n_frames"]), int(p["mel_n_channels"])
    # Mel energies are non-negative: 4 partial utterances of the package's own length.
    mels = np.random.default_rng(0).random((4, frames, channels)).astype(np.float32) * 0.05
    name, rows = "resemblyzer pretrained.pt (VoiceEncoder)", []
    action = "torch_to_keras(encoder), checked against encoder(x)"
    try:
        model, seconds = _timed(lambda: torch_to_keras(encoder, input_shape=(frames, channels)))
        with torch.no_grad():
            expected = encoder(torch.from_numpy(mels)).numpy()
        error = float(np.abs(np.asarray(model(mels, training=False)) - expected).max())
        result = f"converted in {seconds:.2f} s; max error vs encoder(x), 4 utterances {error:.2g}"
        rows.append((name, action, result, "verified"))
    except Exception as error:
        rows.append((name, action, _first_line(error), "fails"))
    try:
        report = compare(encoder, inputs=mels)
        verdict = "equivalent" if report else "NOT equivalent"
        rows.append((name, "compare(encoder, inputs=mels)", _worst(report), verdict))
    except Exception as error:
        rows.append((name, "compare(encoder, inputs=mels)", _first_line(error), "fails"))
    return rows


# Names as ethnicolr's users pass them: surnames, or "Last First" full names.
ETHNICOLR_NAMES = ("Garcia Maria", "Nguyen Thi", "Smith John", "Okafor Chidi", "Kowalski Anna")


def ethnicolr(root: Path) -> list[Row]:
    rows: list[Row] = []
    for path in sorted(root.rglob("models/*/lstm/*_lstm*.h5")):
        stem, _, suffix = path.stem.partition("_lstm")
        vocabulary = path.with_name(f"{stem}_vocab{suffix}.csv")
        if not vocabulary.exists():
            continue  # nc_voter_name_hispanic: not used by the package, no vocabulary
        vocab = vocabulary.read_text(encoding="utf8").splitlines()[1:]  # after "vocab"
        _, seconds = _timed(lambda p=path: keras_to_torch(p))
        graph = read_model(path)
        length = int(graph.layer(graph.inputs[0]).options["shape"][0])  # its fixed length
        full = "name" in path.stem  # full names, else surnames alone
        names = [n if full else n.split()[0] for n in ETHNICOLR_NAMES]
        ids = np.zeros((len(names), length), np.int64)
        for row, name in enumerate(names):  # bigram indices, padded in front as Keras pads
            grams = [vocab.index(a + b) if a + b in vocab else 0 for a, b in pairwise(name)]
            grams = grams[-length:]
            ids[row, length - len(grams) :] = grams
        report = compare(path, inputs=ids)
        rows.append(
            _converted_row(
                f"ethnicolr {path.parent.parent.name}/{path.name}",
                "keras_to_torch (checked against the model tf_keras loads), compare() on names",
                seconds,
                report,
            )
        )
    return rows


def _first_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text.splitlines()[0][:300]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        packages = download(Path(folder))
        rows = silero(packages["silero-vad"]) + chars2vec(packages["chars2vec"])
        rows += textgenrnn(packages["textgenrnn"], Path(folder) / "textgenrnn-run")
        rows += resemblyzer(packages["resemblyzer"])
        rows += ethnicolr(packages["ethnicolr"])
    lines = [
        "# Trained models from public packages",
        "",
        f"Produced by `python benchmarks/published_models.py` on {platform.machine()} "
        f"(python {platform.python_version()}, xframe_bilstm {xframe_bilstm.__version__}, "
        f"torch {torch.__version__}, keras {keras.__version__}, onnxruntime "
        f"{onnxruntime.__version__}); packages: "
        + ", ".join(f"{name} {version}" for name, version in PACKAGES.items())
        + ".",
        "",
        "| model | what ran | result | verdict |",
        "|---|---|---|---|",
        *(f"| {' | '.join(cell.replace('|', '/') for cell in row)} |" for row in rows),
        "",
    ]
    out = HERE / "results" / "published_models.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
