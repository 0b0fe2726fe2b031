#!/usr/bin/env python3
"""torch → Keras on trained models, side by side with the tracing peer (nobuco).

    python benchmarks/peers/run.py [--peer-python ~/venv-nobuco/bin/python] [--steps 200]

writes ``benchmarks/results/peers_nobuco.md``. The models (:mod:`benchmarks.peers.models`)
are trained here on seeded random data and saved as state_dicts in a temporary folder; then
each side runs in its own subprocess: ours (:mod:`benchmarks.peers.ours`) in this
environment, nobuco (:mod:`benchmarks.peers.nobuco_side`) in its own, since it needs Keras 2
(TensorFlow ≤ 2.15)::

    python3 -m venv ~/venv-nobuco && cd ~/venv-nobuco
    bin/pip install torch==2.13.0 'tensorflow==2.15.*' nobuco torchvision 'numpy<2'

(nobuco imports torchvision, and PyPI's torchvision loads only with PyPI's torch, the CUDA
build, not a ``+cpu`` one: where pip finds a local ``+cpu`` wheel first, through
``PIP_FIND_LINKS`` or a ``find-links`` in its configuration, reinstall torch with
``PIP_FIND_LINKS= PIP_CONFIG_FILE=/dev/null bin/pip install --force-reinstall torch==2.13.0
'numpy<2'``); then whether nobuco's saved models load
in Keras 3 (:mod:`benchmarks.peers.load_check`), here. Each model's float32 drift is its
own float32 run's largest distance from its float64 run on the evaluation input: the error
any float32 implementation of the model may show.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch  # before TensorFlow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.peers.models import LONGER, SPECS, example_input, torch_outputs, train  # noqa: E402

# The peer's environment (see above); PEER_PYTHON or --peer-python name another.
PEER_PYTHON = os.environ.get("PEER_PYTHON", os.path.expanduser("~/venv-nobuco/bin/python"))


# The models that pack their rows or give a held tensor the batch axis, and what each does;
# the summary says, under the table, what each side made of them.
NOTES = {
    "tacotron_encoder": "(torchaudio's Tacotron 2 encoder) packs its convolved features by "
    "the rows' lengths into a BiLSTM and pads the output back",
    "packed_tagger": "packs its rows in any order (`enforce_sorted=False`) into a 2-layer "
    "BiLSTM and pads back to the input's length (`total_length`)",
    "learned_states": "starts its BiLSTM from learned `h0`/`c0` (`nn.Parameter`s expanded over "
    "the batch)",
    "seq2seq": "takes two inputs, `forward(src, tgt)`, its encoder's final states starting its "
    "decoder",
    "char_cnn_tagger": "(Ma and Hovy's NER tagger) runs a character CNN over each word, "
    "merging the batch and time axes with `view(B * T, W)`",
    "crnn_ctc": "(crnn.pytorch's layout) returns its log-probabilities time-major, (T, B, "
    "classes), as `nn.CTCLoss` reads them",
    "speaker_acoustic": "takes one speaker id per row, `forward(frames, speaker)`, its "
    "embedding joined to every frame with `expand(-1, frames.size(1), -1)`",
    "causal_tcn": "pads its frames on the left with `F.pad` before each dilated convolution "
    "(a causal TCN front end)",
    "last_step_classifier": "takes each padded row's last valid output with `gather`, its "
    "position counted from the ids",
    "positional_lstm": "adds PyTorch's Transformer tutorial's positional encoding (a "
    "time-major buffer cut to the steps, `self.pe[:x.size(0)]`)",
    "statistics_pooling": "pools its LSTM's outputs into their mean and standard deviation "
    "over the steps",
    "denoiser": "(demucs's denoiser in small) encodes 164 samples by strided convolutions and "
    "GLUs, and decodes by transposed convolutions, each encoder's output cut to its "
    "decoder's length (`skip[..., :x.shape[-1]]`); 7 frames longer is 220 samples",
    "spectrogram_crn": "(Tan and Wang's CRN) decodes a spectrogram with `ConvTranspose2d` "
    "(one with `output_padding`), joining the encoders' outputs",
    "wav_encoder": "(wav2vec 2.0's feature encoder in small) reads raw audio, `(B, samples)`, "
    "through strided convolutions (a window of 30 samples), the first normalized by "
    "`GroupNorm(C, C)`",
    "event_detector": "(a sound event detector) upsamples its frame scores back to the "
    "frames' rate with `F.interpolate(scale_factor=2)` and `nn.Upsample`",
}


def drift(module: torch.nn.Module, name: str) -> float:
    """The model's float32 run's largest distance from its float64 run."""
    inputs = example_input(name)
    exact = torch_outputs(module, inputs, torch.float64)
    rounded = torch_outputs(module, inputs, torch.float32)
    return max(float(abs(e - r).max()) for e, r in zip(exact, rounded))


def side(python: str, script: str, folder: Path) -> float:
    """Run one side's script in its own process; its wall time."""
    start = time.perf_counter()
    done = subprocess.run(
        [python, str(HERE / script), str(folder)], capture_output=True, text=True, cwd=ROOT
    )
    if done.returncode:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"{script} failed with exit status {done.returncode}")
    return time.perf_counter() - start


def _err(value: Any) -> str:
    return f"{value:.2g}" if isinstance(value, float) else str(value)


def _clip(text: str, size: int = 160) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= size else text[: size - 1] + "…"


def call(name: str) -> str:
    if SPECS[name].target:
        return "module(src, tgt)"
    if SPECS[name].chars:
        return "module(words, chars)"
    if SPECS[name].speakers:
        return "module(frames, speaker)"
    return "module(x, lengths)" if SPECS[name].lengths else "module(x)"


def our_row(name: str, row: dict[str, Any]) -> list[str]:
    if row["status"] != "ported":
        where = f" (at {row['where']})" if row.get("where") else ""
        return [f"{row['status']}: {_clip(row['message'])}{where}", "", "", "", ""]
    states = " (final h and c among them)" if name == "encoder" else ""
    return [
        f"ported ({row['captured_by'] or 'children in order'}), verified against {call(name)}",
        f"{_err(row['error'])} (T+{LONGER}: {_err(row['error_longer'])})",
        f"tolerance derived {_err(row['tolerance'])}",
        f"{row['seconds']:.2f} s",
        f"{row['outputs']} of {row['torch_outputs']} outputs{states}; Keras 3 native",
    ]


def peer_row(name: str, row: dict[str, Any], loads: dict[str, str]) -> list[str]:
    if row["status"] != "ported":
        return [f"error: {_clip(row['message'])} (at {row['where']})", "", "", "", ""]
    check = row["own_check"]
    flagged = f", {check['flagged_ops']} of {check['checked_ops']} operations flagged"
    shapes = "" if row["shapes"] == "free" else " (fixed shape only)"
    load = "; ".join(f"{suffix}: {_clip(text, 110)}" for suffix, text in loads.items())
    states = " (final h and c among them)" if name == "encoder" else ""
    return [
        f"ported{shapes}",
        f"{_err(row['error'])} (T+{LONGER}: {_err(row['error_longer'])})",
        f"own check (fixed 1e-4): {row['own_check']['model_status']}, model "
        f"{_err(check['model_error'])}, largest operation {_err(check['largest_op_error'])}"
        + flagged,
        f"{row['seconds']:.2f} s",
        f"{row['outputs']} outputs{states}; in Keras 3 {load}",
    ]


def report(folder: Path, drifts: dict[str, float], command: str, walls: dict[str, float]) -> str:
    import keras

    import xframe_bilstm

    ours = json.loads((folder / "ours.json").read_text())
    peer = json.loads((folder / "nobuco.json").read_text())
    loads = json.loads((folder / "loads.json").read_text())
    versions = peer.pop("versions")
    packed = [name for name in SPECS if SPECS[name].lengths]
    lengths = example_input(packed[0])[-1]
    head = (
        "| model | side | result | error vs module(x) | check | float32 drift | time "
        "| outputs, Keras 3 |"
    )
    lines = [
        "# torch → Keras on trained models, side by side with nobuco",
        "",
        f"Produced by `{command}` on {platform.machine()} with one torch thread per side. "
        "Ours: python "
        f"{platform.python_version()}, xframe_bilstm {xframe_bilstm.__version__}, torch "
        f"{torch.__version__}, keras {keras.__version__}. The peer: nobuco "
        f"{versions['nobuco']}, tensorflow {versions['tensorflow']}, keras {versions['keras']}, "
        f"torch {versions['torch']}, numpy {versions['numpy']} (the newest nobuco with the newest "
        "TensorFlow that still has Keras 2; nobuco imports torchvision, whose PyPI build needs "
        "PyPI's CUDA torch).",
        "",
        "Models as in `benchmarks/peers/models.py`, each trained a few hundred Adam steps on "
        "seeded random data, saved as state_dicts and loaded in each side's process. Errors "
        "are the largest absolute difference from `module(x)` (float32) on the evaluation "
        f"input (batch 4, 20 steps; ids padded with 0 at the ends of rows) and on one {LONGER} "
        f"steps longer; {' and '.join(packed)} read `module(x, lengths)`, their rows padded with 0 "
        f"past lengths {', '.join(map(str, lengths))} (the longest full), and their ports are "
        "called with `[x, lengths]`; seq2seq reads `module(src, tgt)`, the target ids "
        f"{SPECS['seq2seq'].target} steps long (and {LONGER} steps longer with the longer "
        "source); char_cnn_tagger reads `module(words, chars)`, "
        f"{SPECS['char_cnn_tagger'].chars} characters per word (0 past each word's length); "
        "speaker_acoustic reads `module(frames, speaker)`, one speaker id per row. "
        "nobuco converts with batch and time free (`input_shapes`; `args=[x, lengths]`, "
        "`[src, tgt]`, `[words, chars]` or `[frames, speaker]` where the model reads two "
        "inputs), inputs and "
        "outputs in torch's layout. Time: the conversion alone, in a process that converted a "
        "small LSTM model first (`Warmup`: imports and first-call costs excluded); ours "
        "includes its verification run, nobuco's its per-operation validation. Side processes "
        "took " + ", ".join(f"{script} {seconds:.0f} s" for script, seconds in walls.items()) + ".",
        "",
        head,
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in SPECS:
        for label, cells in (
            ("ours", our_row(name, ours[name])),
            ("nobuco", peer_row(name, peer[name], loads.get(name, {}))),
        ):
            cells.insert(3, f"{drifts[name]:.2g}")
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines + summary(ours, peer, loads)) + "\n"


def summary(ours: dict[str, Any], peer: dict[str, Any], loads: dict[str, Any]) -> list[str]:
    """What the table adds up to, and the refusals a user without ``input_shape`` reads."""
    ported = {side: [n for n in SPECS if rows[n]["status"] == "ported"] for side, rows in
              (("ours", ours), ("nobuco", peer))}  # fmt: skip
    loaded = [n for n, files in loads.items() if any(t.startswith("loads") for t in files.values())]
    lines = [
        "",
        f"Ported: ours {len(ported['ours'])} of {len(SPECS)}, nobuco {len(ported['nobuco'])} "
        f"of {len(SPECS)}. nobuco's saved models (`.keras` and `.h5`, saved by Keras 2) that "
        f"load in Keras 3: {len(loaded)} of {len(loads)}.",
    ]
    for name in SPECS:
        plain = ours[name].get("without_input_shape")
        if plain:
            lines += ["", f"{name}, ours without `input_shape`: {_clip(plain, 800)}"]
    for name, what in NOTES.items():
        did = {side: outcome(rows[name]) for side, rows in (("ours", ours), ("nobuco", peer))}
        lines += ["", f"{name} {what}: ours {did['ours']}; nobuco {did['nobuco']}."]
    return lines


def outcome(row: dict[str, Any]) -> str:
    """One side's result on one model, in a few words."""
    if row["status"] != "ported":
        where = f" (at {row['where']})" if row.get("where") else ""
        did = "refused it" if row["status"] == "refused" else "failed"
        return f"{did}: {_clip(row['message'], 300)}{where}"
    return f"ported it, error {_err(row['error'])} (T+{LONGER}: {_err(row['error_longer'])})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default=PEER_PYTHON)
    parser.add_argument("--steps", type=int, default=200, help="training steps per model")
    args = parser.parse_args()
    command = (
        "python benchmarks/peers/run.py"
        + (f" --peer-python {args.peer_python}" if args.peer_python != PEER_PYTHON else "")
        + (f" --steps {args.steps}" if args.steps != 200 else "")
    )
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        drifts = {}
        for model in SPECS:
            module = train(model, steps=args.steps)
            torch.save(module.state_dict(), folder / f"{model}.pt")
            drifts[model] = drift(module, model)
        walls = {"nobuco": side(args.peer_python, "nobuco_side.py", folder)}
        walls["ours"] = side(sys.executable, "ours.py", folder)
        walls["load check"] = side(sys.executable, "load_check.py", folder)
        text = report(folder, drifts, command, walls)
    out = ROOT / "benchmarks" / "results" / "peers_nobuco.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
