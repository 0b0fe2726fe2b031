"""Whether the peer's saved Keras 2 models load in Keras 3: ``keras.models.load_model`` on
each file, in the project's environment, then run on the evaluation input.

    python benchmarks/peers/load_check.py FOLDER   # FOLDER/nobuco.json → FOLDER/loads.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before TensorFlow

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from benchmarks.peers.models import example_input, keras_inputs, load, torch_outputs  # noqa: E402
from benchmarks.peers.ours import first_line  # noqa: E402


def try_load(name: str, path: Path, folder: Path) -> str:
    """``loads; error E against module(x)``, or the exception's first line."""
    import keras

    try:
        model = keras.models.load_model(path)
    except Exception as error:  # the row says what a Keras 3 user would read
        return f"refused: {first_line(error)}"
    inputs = example_input(name)
    try:
        got = model(keras_inputs(inputs), training=False)
    except Exception as error:
        return f"loads, but does not run: {first_line(error)}"
    got_list = list(got) if isinstance(got, (list, tuple)) else [got]
    expected = torch_outputs(load(name, folder), inputs)
    largest = max(float(np.abs(np.asarray(g) - e).max()) for g, e in zip(got_list, expected))
    return f"loads; error {largest:.2g} against module(x)"


def main() -> None:
    folder = Path(sys.argv[1])
    torch.set_num_threads(1)
    peer = json.loads((folder / "nobuco.json").read_text())
    results: dict[str, dict[str, Any]] = {}
    for name, row in peer.items():
        if name == "versions" or row.get("status") != "ported":
            continue
        results[name] = {
            suffix: try_load(name, Path(row[f"saved{suffix}"]), folder)
            for suffix in (".keras", ".h5")
            if f"saved{suffix}" in row
        }
    (folder / "loads.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
