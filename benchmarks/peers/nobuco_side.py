"""The peer's side: nobuco's ``pytorch_to_keras`` on each saved model, in the peer's own
environment (Keras 2, TensorFlow 2.15).

    ~/venv-nobuco/bin/python benchmarks/peers/nobuco_side.py FOLDER   # FOLDER/nobuco.json

For each model: nobuco's conversion with batch and time left free (``input_shapes``, as a
user converting a sequence model asks), or, where that fails, at the evaluation input's
fixed shape; inputs and outputs in torch's layout (``ChannelOrder.PYTORCH``); a model
packing its rows is given ``args=[x, lengths]``, the lengths' batch free too. Recorded:
nobuco's own check (its per-operation validation against torch with its fixed 1e-4
tolerance: the whole model's error, the largest of any operation and the operations it
flags), the Keras model's largest error against ``module(x)`` on the evaluation input and
on one ``LONGER`` steps longer, the time, and the model saved as ``.keras`` and ``.h5`` for
the load check in Keras 3.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before TensorFlow

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from benchmarks.peers.models import (  # noqa: E402
    SPECS,
    Warmup,
    example_input,
    keras_inputs,
    load,
    torch_outputs,
)
from benchmarks.peers.ours import first_line, where  # noqa: E402


def free_shapes(name: str) -> list[tuple[int | None, ...]]:
    """The inputs' shapes with batch and time free: the input's, then the lengths' or the
    target ids', the characters' or the speaker ids'."""
    shape: list[int | None] = list(SPECS[name].shape)
    shape[0] = None
    shape[SPECS[name].time_axis] = None
    if SPECS[name].target:
        return [tuple(shape), (None, None)]
    if SPECS[name].chars:
        return [tuple(shape), (None, None, SPECS[name].chars)]
    if SPECS[name].speakers:
        return [tuple(shape), (None,)]
    return [tuple(shape), (None,)] if SPECS[name].lengths else [tuple(shape)]


def nobuco_convert(
    module: torch.nn.Module, inputs: tuple[np.ndarray, ...], shapes: Any
) -> tuple[Any, Any, Any]:
    """nobuco's Keras model and its own validation: (model, root result, every result)."""
    import nobuco
    from nobuco import convert as nobuco_convert_module

    seen: list[Any] = []
    collect = nobuco_convert_module.collect_validation_results

    def keep(node: Any) -> Any:  # nobuco computes its check here, then only prints it
        results = collect(node)
        seen.append((node.validation_result, results))
        return results

    nobuco_convert_module.collect_validation_results = keep
    tensors = [torch.from_numpy(a) for a in inputs]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
            model = nobuco.pytorch_to_keras(
                module,
                args=tensors,
                input_shapes=dict(zip(tensors, shapes)) if shapes is not None else None,
                inputs_channel_order=nobuco.ChannelOrder.PYTORCH,
                outputs_channel_order=nobuco.ChannelOrder.PYTORCH,
            )
    except Exception as error:  # nobuco prints what it could not convert, then raises
        _, _, unimplemented = printed.getvalue().partition("Unimplemented nodes:")
        if unimplemented:
            raise RuntimeError(f"{error}: {unimplemented_ops(unimplemented)}") from error
        failed = re.search(r"Conversion exception on node '(\w+)': (.*)", printed.getvalue())
        if failed:  # a converter that failed first, printed, then what nobuco raised
            node, message = failed.groups()
            raise RuntimeError(f"{node} converter: {message}; then {first_line(error)}") from error
        raise
    finally:
        nobuco_convert_module.collect_validation_results = collect
    root, results = seen[-1]  # collect_validation_results recurses through the name we set
    return model, root, results


def unimplemented_ops(printout: str) -> str:
    """The operations nobuco's printout marks unimplemented (in reverse video), once each."""
    names = re.findall(r"\x1b\[7m(\w+\[[\w.]+\])", printout)
    return ", ".join(dict.fromkeys(names)) or re.sub(r"\x1b\[[0-9;]*m", "", printout)[:200]


def own_check(root: Any, results: dict[Any, Any]) -> dict[str, Any]:
    """nobuco's validation: the whole model's error and the operations it flags."""
    diffs = [r.diff_abs for r in results.values() if r is not None and r.diff_abs is not None]
    flagged = [
        r.status.name for r in results.values() if r is not None and r.status.name != "SUCCESS"
    ]
    return {
        "model_error": None if root is None else root.diff_abs,
        "model_status": None if root is None else root.status.name,
        "largest_op_error": max(diffs) if diffs else None,
        "flagged_ops": len(flagged),
        "checked_ops": len(diffs),
    }


def keras_error(model: Any, module: torch.nn.Module, inputs: tuple[np.ndarray, ...]) -> float | str:
    """The Keras model's largest error against ``module(*inputs)``, or why it cannot run
    them."""
    try:
        got = model(keras_inputs(inputs), training=False)
    except Exception as error:  # a fixed-shape model given another length
        return first_line(error)
    got_list = list(got) if isinstance(got, (list, tuple)) else [got]
    expected = torch_outputs(module, inputs)
    if len(got_list) != len(expected):
        return f"{len(got_list)} outputs, torch {len(expected)}"
    return max(float(np.abs(np.asarray(g) - e).max()) for g, e in zip(got_list, expected))


def convert(name: str, folder: Path) -> dict[str, Any]:
    module = load(name, folder)
    inputs = example_input(name)
    result: dict[str, Any] = {}
    start = time.perf_counter()
    try:
        model, root, results = nobuco_convert(module, inputs, free_shapes(name))
        result["shapes"] = "free"
    except Exception as error:
        result["free_shapes_error"] = first_line(error)
        start = time.perf_counter()
        try:
            model, root, results = nobuco_convert(module, inputs, None)
            result["shapes"] = "fixed"
        except Exception as error:
            return {
                **result,
                "status": "error",
                "message": first_line(error),
                "where": where(error.__cause__ or error),  # nobuco's raise, not ours
            }
    result.update(status="ported", seconds=time.perf_counter() - start)
    result["own_check"] = own_check(root, results)
    result["error"] = keras_error(model, module, inputs)
    result["error_longer"] = keras_error(model, module, example_input(name, longer=True))
    result["outputs"] = len(model.outputs)
    for suffix in (".keras", ".h5"):
        path = folder / f"nobuco_{name}{suffix}"
        try:
            model.save(path)
            result[f"saved{suffix}"] = str(path)
        except Exception as error:
            result[f"save_error{suffix}"] = first_line(error)
    return result


def main() -> None:
    import keras
    import tensorflow as tf

    folder = Path(sys.argv[1])
    torch.set_num_threads(1)
    nobuco_convert(Warmup().eval(), (np.zeros((2, 3, 4), np.float32),), None)
    results: dict[str, Any] = {name: convert(name, folder) for name in SPECS}
    from importlib.metadata import version

    versions = {"nobuco": version("nobuco")}
    versions.update(tensorflow=tf.__version__, keras=keras.__version__, torch=torch.__version__)
    versions["numpy"] = np.__version__
    results["versions"] = versions
    (folder / "nobuco.json").write_text(json.dumps(results, indent=1, default=float))
    print(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
