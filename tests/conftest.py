"""Models saved by Keras 3 and tf_keras in this test run, and their ports made without TF.

``saved_cases`` builds and saves every model of :mod:`.saved_models` once per session and
records Keras's outputs on padded batches. ``ported_cases`` ports every saved file in one
subprocess where importing tensorflow, keras and tf_keras fails, and reports, per file,
the largest difference from Keras's outputs and the tolerance derived from the float64
reference (or the error the port raised).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from . import saved_models

PORT_WITHOUT_TENSORFLOW = textwrap.dedent(
    """
    import json, sys
    for blocked in ("tensorflow", "keras", "tf_keras"):
        sys.modules[blocked] = None
    import numpy as np
    from xframe_bilstm import keras_to_torch
    from xframe_bilstm.keras_files import read_model
    from xframe_bilstm.adapters.torch import run_module as run_port
    from xframe_bilstm.comparison import derived_tolerance as model_tolerance

    results = {}
    for path in sys.argv[1:]:
        saved = np.load(path + ".npz")
        inputs = [saved[k] for k in sorted(saved.files) if k.startswith("input_")]
        expected = [saved[k] for k in sorted(saved.files) if k.startswith("output_")]
        try:
            module = keras_to_torch(path)
            actual = run_port(module, inputs)
            tolerance = model_tolerance(read_model(path), inputs)
            errors = [float(np.max(np.abs(a - e))) for a, e in zip(actual, expected)]
            shapes = [[list(a.shape), list(e.shape)] for a, e in zip(actual, expected)]
            results[path] = {"errors": errors, "tolerance": tolerance, "shapes": shapes,
                             "module": type(module).__name__}
        except Exception as error:
            results[path] = {"error": f"{type(error).__name__}: {error}"}
    results["frameworks"] = sorted(m for m in ("tensorflow", "keras", "tf_keras")
                                   if sys.modules.get(m) is not None)
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="session")
def saved_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Case id (e.g. ``k3-classifier.keras``) -> saved model file."""
    pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    directory = tmp_path_factory.mktemp("saved")
    cases: dict[str, Path] = {}
    for name, (build, suffixes) in saved_models.KERAS3.items():
        model, inputs = build(keras)
        outputs = saved_models.outputs_of(model, inputs)
        for suffix in suffixes:
            path = directory / f"{name}{suffix}"
            model.save(path)
            saved_models.save_case(directory, path, inputs, outputs)
            cases[path.name] = path
    k2 = pytest.importorskip("tf_keras")
    for name, build in saved_models.TF_KERAS.items():
        model, inputs = build(k2)
        path = directory / f"{name}.h5"
        model.save(path)
        oracle = saved_models.k2_cudnn_oracle(k2, path) if name == "k2-cudnn" else model
        saved_models.save_case(directory, path, inputs, saved_models.outputs_of(oracle, inputs))
        cases[path.name] = path
    return cases


@pytest.fixture(scope="session")
def ported_cases(saved_cases: dict[str, Path]) -> dict[str, dict]:
    """Case id -> what the port without TensorFlow gave (see module docstring)."""
    paths = [str(path) for path in saved_cases.values()]
    result = subprocess.run(
        [sys.executable, "-c", PORT_WITHOUT_TENSORFLOW, *paths],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reported = json.loads(result.stdout.strip().splitlines()[-1])
    by_case = {Path(path).name: reported[path] for path in paths}
    by_case["frameworks"] = reported["frameworks"]
    return by_case
