#!/usr/bin/env python3
"""CPU against GPU for PyTorch and Keras, with TF32 off and on: one prepared run for a GPU box.

For a small random Bidirectional LSTM and a larger one with trained-like weight norms, it
runs ``compare()`` on every device both frameworks see, in float32 with TF32 off and on,
and writes what it measured to ``docs/results/gpu-check.md`` and ``.json``: the error of
each run against the float64 reference, each pair, the tolerance derived for it and the
cuDNN/TF32 settings that ran. Without a GPU it still runs (CPU only) and says so.

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch  # before TensorFlow

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xframe_bilstm import compare  # noqa: E402
from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer, RecurrentStack  # noqa: E402
from xframe_bilstm.factories import random_stack  # noqa: E402

OUT = ROOT / "docs" / "results"


def scaled(stack: RecurrentStack, factor: float) -> RecurrentStack:
    """Multiply every kernel: trained models have far larger weights than fresh ones."""

    def grow(w: DirectionWeights) -> DirectionWeights:
        return DirectionWeights(
            (w.kernel * factor).astype(np.float32),
            (w.recurrent_kernel * factor).astype(np.float32),
            None if w.bias is None else w.bias.astype(np.float32),
        )

    return RecurrentStack(
        tuple(
            RecurrentLayer(
                layer.cell,
                layer.input_size,
                layer.units,
                tuple(map(grow, layer.weights)),
                layer.direction,
                layer.merge_mode,
                layer.activation,
                layer.recurrent_activation,
                layer.reset_after,
            )
            for layer in stack.layers
        ),
        stack.return_sequences,
        stack.return_state,
    )


def models() -> dict[str, tuple[RecurrentStack, int]]:
    rng = np.random.default_rng(0)
    small = random_stack(rng, "lstm", 10, 16, direction="bidirectional", return_state=True)
    large = random_stack(rng, "lstm", 64, 256, num_layers=3, direction="bidirectional")
    return {
        "small BiLSTM (H=16, T=20)": (scaled(small, 1.0), 20),
        "trained-like 3-layer BiLSTM (H=256, T=60, kernels x3)": (scaled(large, 3.0), 60),
    }


def main() -> None:
    sections, records = [], {}
    for name, (stack, steps) in models().items():
        for tf32 in (False, True):
            report = compare(stack, frameworks=["torch", "keras"], tf32=tf32, steps=steps)
            records[f"{name}, tf32={tf32}"] = report.to_dict()
            sections += [f"## {name}, TF32 {'on' if tf32 else 'off'}", "", report.to_markdown()]
    gpus = torch.cuda.device_count()
    header = [
        "# CPU against GPU, TF32 off and on",
        "",
        f"Produced by `python benchmarks/gpu_check.py`; {gpus} CUDA device(s) visible to torch"
        + (f" ({torch.cuda.get_device_name(0)})." if gpus else " (CPU only: no GPU here)."),
        "",
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gpu-check.md").write_text("\n".join(header + sections))
    (OUT / "gpu-check.json").write_text(json.dumps(records, indent=1))
    print("\n".join(header + sections))


if __name__ == "__main__":
    main()
