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

    python benchmarks/published_models.py     # writes benchmarks/results/published_models.md

Each row says what ran and the largest error against the original's own computation (the
graph on onnxruntime, the Keras model's call) next to the tolerance the library derived.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before TensorFlow

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import keras  # noqa: E402
import onnx  # noqa: E402
import onnxruntime  # noqa: E402

import xframe_bilstm  # noqa: E402
from xframe_bilstm import compare, keras_to_torch, onnx_to_torch, torch_to_keras  # noqa: E402

PACKAGES = {"silero-vad": "6.2.3", "chars2vec": "0.1.7"}
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
        worst = max(report.pairs, key=lambda pair: pair.max_abs_error / pair.tolerance)
        rows.append(
            (
                f"chars2vec eng_{size}",
                "keras_to_torch (verified), compare() on one-hot words",
                f"converted in {seconds:.2f} s; {len(report.pairs)} pairs; worst "
                f"{worst.max_abs_error:.2g} against {worst.tolerance:.2g} ({worst.label})",
                "equivalent" if report else "NOT equivalent",
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
