"""Command line: convert a Keras recurrent layer to PyTorch and show how closely they agree.

``python scripts/compare.py`` (or ``python -m xframe_bilstm``) builds a Keras layer with
seeded random weights (a Bidirectional LSTM by default), converts it with
:func:`~xframe_bilstm.keras_to_torch`, runs Keras, the torch module and the float64
reference on one seeded input, and prints a ``PASSED``/``FAILED`` line per pair with the
greatest error and the tolerance derived for this model. The exit status is 1 when any pair
disagrees.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

import numpy as np

from .canonical import DirectionWeights, RecurrentLayer, RecurrentStack, output_names
from .comparison import compare_outputs, derived_tolerance
from .gates import CANONICAL_ORDER


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compare.py",
        description="Convert a seeded random Keras recurrent layer to PyTorch and report how "
        "closely Keras, PyTorch and the float64 reference agree.",
    )
    parser.add_argument("--cell", choices=sorted(CANONICAL_ORDER), default="lstm")
    parser.add_argument(
        "--direction", choices=("forward", "backward", "bidirectional"), default="bidirectional"
    )
    parser.add_argument(
        "--merge-mode",
        choices=("concat", "sum", "mul", "ave"),
        default="concat",
        help="how a bidirectional layer merges its halves",
    )
    parser.add_argument("--units", type=_positive, default=16, help="hidden size H")
    parser.add_argument("--input-size", type=_positive, default=8, help="input features D")
    parser.add_argument("--steps", type=_positive, default=20, help="time steps T")
    parser.add_argument("--batch", type=_positive, default=4, help="batch size B")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def random_stack(args: argparse.Namespace, rng: np.random.Generator) -> RecurrentStack:
    """A one-layer stack with Keras-like random weights (uniform, scaled by fan-in)."""
    gates = len(CANONICAL_ORDER[args.cell]) * args.units
    bias_shape = (2, gates) if args.cell == "gru" else (gates,)

    def direction() -> DirectionWeights:
        return DirectionWeights(
            (rng.uniform(-1, 1, (args.input_size, gates)) / np.sqrt(args.input_size)).astype(
                np.float32
            ),
            (rng.uniform(-1, 1, (args.units, gates)) / np.sqrt(args.units)).astype(np.float32),
            rng.uniform(-0.1, 0.1, bias_shape).astype(np.float32),
        )

    count = 2 if args.direction == "bidirectional" else 1
    layer = RecurrentLayer(
        args.cell,
        args.input_size,
        args.units,
        tuple(direction() for _ in range(count)),
        direction=args.direction,
        merge_mode=args.merge_mode,
        recurrent_activation=None if args.cell == "simple_rnn" else "sigmoid",
        reset_after=True if args.cell == "gru" else None,
    )
    return RecurrentStack((layer,), return_sequences=True, return_state=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ._imports import require

    torch = require("torch")  # before TensorFlow, which can crash when imported first
    keras = require("keras")
    from .adapters.keras import canonical_to_keras, run_keras
    from .adapters.torch import run_torch
    from .converters import keras_to_torch
    from .reference import run_reference

    rng = np.random.default_rng(args.seed)
    stack = random_stack(args, rng)
    layer = canonical_to_keras(stack)
    module = keras_to_torch(layer, verify=False)
    x = rng.standard_normal((args.batch, args.steps, args.input_size)).astype(np.float32)

    runs = {
        "keras": run_keras(layer, x),
        "torch": run_torch(module, x),
        "reference": run_reference(stack, x),
    }
    tolerance = derived_tolerance(stack, x)
    names = output_names(stack)
    print(
        f"{type(layer).__name__}({args.cell}, units={args.units}, direction={args.direction}, "
        f"merge_mode={args.merge_mode}) on x of shape {x.shape}, float32, CPU, seed {args.seed}"
    )
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"keras {keras.__version__} ({keras.backend.backend()})"
    )
    print(f"tolerance {tolerance:.3g} (derived from the float32 rounding noise of this model)")
    passed = True
    for expected, actual in (("reference", "keras"), ("reference", "torch"), ("keras", "torch")):
        result = compare_outputs(
            names, runs[expected], runs[actual], atol=tolerance, label=f"{actual} vs {expected}"
        )
        passed &= bool(result)
        print(result.message())
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
