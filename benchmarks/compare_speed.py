#!/usr/bin/env python3
"""How long the comparison takes, cold and warm, next to what people would otherwise do.

Every figure comes from fresh processes, started in turn (one of each kind per round), so
load on the machine affects both sides of a ratio alike:

1. The first ``compare()`` in a fresh process (frameworks imported, the layer built) on a
   Bidirectional LSTM (64 units, T=500, batch 4, 32 features) across Keras, PyTorch and the
   float64 reference, next to the first plain eager call of the same Keras layer in another
   fresh process; the target is at most half of it. In the first process, later
   ``compare()`` calls alternate with eager calls: the warm ratio.
2. ``python scripts/compare.py`` (defaults) as a fresh process, next to a fresh process that
   only imports the frameworks it runs (torch, tensorflow, keras, onnx, onnxruntime); the
   target is at most 1.1 times it. The command ends its process without the interpreter's
   teardown of the frameworks (1.6-2 s); beside the target's ratio, the script is also
   shown over a process that imports the same frameworks and ends that way.

Every process runs the package with its bytecode compiled, as an installed package has it
(the frameworks' own is, in site-packages): a checkout run with ``PYTHONDONTWRITEBYTECODE``
would compile each of the package's modules again in every fresh process, a cost the
frameworks' side does not pay. The load average of the machine is reported with the figures.

    python benchmarks/compare_speed.py                  # writes benchmarks/results/compare_speed.md
    python benchmarks/compare_speed.py --before DIR     # also runs the package found in DIR
                                                        # (e.g. an older checkout), side by side
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "compare_speed.md"
REPEATS = 5
WARM_REPEATS = 3
STEPS, BATCH, FEATURES, UNITS = 500, 4, 32, 64
FRAMEWORK_IMPORTS = "import torch, tensorflow, keras, onnx, onnxruntime"
# The same imports, the process then ending as the command ends its own (after its work,
# without the interpreter's teardown of the frameworks: xframe_bilstm.cli.ending).
PROMPT_IMPORTS = FRAMEWORK_IMPORTS + "; import os; os._exit(0)"


def _layer_and_input():
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    layer = keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=True))
    layer.build((None, None, FEATURES))
    x = np.random.default_rng(0).standard_normal((BATCH, STEPS, FEATURES)).astype("float32")
    return layer, x


def child_cold() -> dict[str, object]:
    """In a fresh process: the first compare(), then warm ones alternating with eager calls."""
    import numpy as np
    import torch  # noqa: F401  (before TensorFlow)

    from xframe_bilstm import compare

    layer, x = _layer_and_input()
    start = time.perf_counter()
    report = compare(layer, inputs=x, frameworks=["keras", "torch"])
    cold = time.perf_counter() - start
    assert report, "\n".join(report.lines())
    runs = {run.label: round(run.seconds, 3) for run in report.runs}
    warm, eager = [], []
    for _ in range(WARM_REPEATS):
        start = time.perf_counter()
        compare(layer, inputs=x, frameworks=["keras", "torch"])
        warm.append(time.perf_counter() - start)
        start = time.perf_counter()
        np.asarray(layer(x))
        eager.append(time.perf_counter() - start)
    return {"cold": cold, "runs": runs, "warm": statistics.median(warm), "eager_warm": eager}


def child_eager() -> dict[str, object]:
    """In a fresh process: the first plain eager call of the same layer."""
    import numpy as np
    import torch  # noqa: F401  (imported as in the compare process)

    layer, x = _layer_and_input()
    start = time.perf_counter()
    np.asarray(layer(x))
    return {"eager": time.perf_counter() - start}


def _environment(package: Path, cache: Path) -> dict[str, str]:
    """A measuring process's environment: ``package`` first on the path, its bytecode
    compiled once into ``cache`` (see the module)."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environment["PYTHONPYCACHEPREFIX"] = str(cache)
    environment["PYTHONPATH"] = str(package)
    compile_all = [sys.executable, "-m", "compileall", "-q", str(package / "xframe_bilstm")]
    subprocess.run(compile_all, env=environment, check=True, capture_output=True)
    return environment


def _child(kind: str, package: Path, environment: dict[str, str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind],
        check=True,
        capture_output=True,
        text=True,
        env={**environment, "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=ROOT,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _wall(command: list[str], package: Path, environment: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=environment, cwd=package)
    return time.perf_counter() - start


def measure(packages: dict[str, Path], repeats: int = REPEATS) -> dict[str, dict[str, list]]:
    """Each kind of process once per round, in turn, for every package; the load average
    (1 minute) after each round under ``"load"``."""
    found: dict[str, dict[str, list]] = {name: {} for name in packages}
    with tempfile.TemporaryDirectory() as cache:
        environments = {name: _environment(path, Path(cache)) for name, path in packages.items()}
        for _ in range(repeats):
            for name, package in packages.items():
                environment = environments[name]
                rows = found[name]
                rows.setdefault("eager", []).append(_child("eager", package, environment)["eager"])
                cold = _child("cold", package, environment)
                for key in ("cold", "warm", "runs"):
                    rows.setdefault(key, []).append(cold[key])
                rows.setdefault("eager_warm", []).extend(cold["eager_warm"])
                imports = [sys.executable, "-c", FRAMEWORK_IMPORTS]
                rows.setdefault("imports", []).append(_wall(imports, package, environment))
                prompt = [sys.executable, "-c", PROMPT_IMPORTS]
                rows.setdefault("prompt", []).append(_wall(prompt, package, environment))
                script = [sys.executable, str(package / "scripts" / "compare.py")]
                rows.setdefault("script", []).append(_wall(script, package, environment))
                rows.setdefault("load", []).append(os.getloadavg()[0])
    return found


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def _ratio(top: list[float], bottom: list[float]) -> float:
    return statistics.median(top) / statistics.median(bottom)


def ratios(rows: dict[str, list]) -> dict[str, float]:
    """The cold, warm and script ratios of one package's rows (what the targets hold)."""
    return {
        "cold": _ratio(rows["cold"], rows["eager"]),
        "warm": _ratio(rows["warm"], rows["eager_warm"]),
        "script": _ratio(rows["script"], rows["imports"]),
        "script_prompt": _ratio(rows["script"], rows["prompt"]),
    }


def report(
    found: dict[str, dict[str, list]],
    repeats: int,
    *,
    title: str = "# Comparison speed, cold and warm",
    command: str = "python benchmarks/compare_speed.py",
) -> list[str]:
    """The Markdown report (``title`` and ``command`` as ``run_all.py`` shows them)."""
    import keras
    import torch

    lines = [
        title,
        "",
        f"Produced by `{command}` on {platform.machine()} with "
        f"{os.cpu_count()} cores (python {platform.python_version()}, torch "
        f"{torch.__version__}, keras {keras.__version__}); medians (min–max) of {repeats} "
        "rounds of fresh processes, one of each kind per round in turn. Bidirectional LSTM "
        f"{UNITS} units, T={STEPS}, batch {BATCH}, {FEATURES} features; compare() across "
        "keras, torch and the reference. Each process runs the package's compiled bytecode, "
        "as an installed package has it." + _load_note(found),
        "",
        "| package | first compare() | first eager call | cold ratio (≤ 0.5) | warm compare() "
        "| warm eager call | warm ratio | `scripts/compare.py` | framework imports "
        "| script ratio (≤ 1.1) | imports, ending as the command ends | script over those |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in found.items():
        lines.append(
            f"| {name} | {_cell(rows['cold'])} | {_cell(rows['eager'])} | "
            f"**{_ratio(rows['cold'], rows['eager']):.2f}** | {_cell(rows['warm'])} | "
            f"{_cell(rows['eager_warm'])} | {_ratio(rows['warm'], rows['eager_warm']):.2f} | "
            f"{_cell(rows['script'])} | {_cell(rows['imports'])} | "
            f"**{_ratio(rows['script'], rows['imports']):.2f}** | {_cell(rows['prompt'])} | "
            f"{_ratio(rows['script'], rows['prompt']):.2f} |"
        )
    lines += [
        "",
        "Runs of the first compare() (median seconds):",
        "",
    ]
    for name, rows in found.items():
        labels = rows["runs"][0]
        each = {label: statistics.median(r[label] for r in rows["runs"]) for label in labels}
        lines.append(f"- {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in each.items()))
    return lines


def _load_note(found: dict[str, dict[str, list]]) -> str:
    """The machine's load average (1 minute) over the rounds, as a sentence."""
    loads = [load for rows in found.values() for load in rows.get("load", [])]
    if not loads:
        return ""
    return f" Load average (1 minute) after each round: {min(loads):.1f}–{max(loads):.1f}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=["cold", "eager"], help=argparse.SUPPRESS)
    parser.add_argument("--before", type=Path, help="another checkout to run side by side")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="rounds (default 5)")
    args = parser.parse_args()
    if args.child:
        result = child_cold() if args.child == "cold" else child_eager()
        print(json.dumps(result))
        return
    packages = {"this checkout": ROOT}
    if args.before:
        packages = {"before": args.before.resolve(), **packages}
    lines = report(measure(packages, args.repeats), args.repeats)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
