"""The options of ``compare``, and the argument types both commands share."""

from __future__ import annotations

import argparse

from ..frameworks.base import KERNEL_PATHS
from ..gates import CANONICAL_ORDER

DTYPES = ("float32", "float64", "float16", "bfloat16")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compare.py",
        description="Run one recurrent model in Keras, PyTorch and the float64 reference, "
        "and report how far apart they are and where.",
    )
    models = parser.add_argument_group("models (default: a random Keras Bidirectional LSTM)")
    models.add_argument("--keras", metavar="FILE", help="a Keras 3 .keras or .h5 model file")
    models.add_argument(
        "--torch",
        metavar="FILE",
        help="a state_dict of an nn.LSTM/nn.GRU/nn.RNN (torch.save or .safetensors); "
        "with --keras, it is compared against the Keras model",
    )
    models.add_argument(
        "--onnx",
        metavar="FILE",
        help="an ONNX model (.onnx); with --keras or --torch, it is compared against that "
        "model (an export of it)",
    )
    models.add_argument(
        "--nonlinearity", choices=("tanh", "relu"), default="tanh", help="of a --torch nn.RNN"
    )
    models.add_argument(
        "--torch-submodule",
        metavar="NAME",
        help="with --torch: the recurrent submodule of a whole model's state_dict to use "
        "(its keys under 'NAME.', e.g. lstm)",
    )
    random = parser.add_argument_group("the random model")
    random.add_argument("--cell", choices=sorted(CANONICAL_ORDER), default="lstm")
    random.add_argument("--units", type=positive, default=16, help="hidden size H")
    random.add_argument("--input-size", type=positive, default=10, help="input features D")
    random.add_argument("--layers", type=positive, default=1, help="stacked layers")
    random.add_argument(
        "--direction", choices=("forward", "backward", "bidirectional"), default="bidirectional"
    )
    random.add_argument(
        "--merge-mode",
        choices=("concat", "sum", "mul", "ave"),
        default="concat",
        help="how the last bidirectional layer merges its halves",
    )
    runs = parser.add_argument_group("runs")
    runs.add_argument("--batch", type=positive, default=4, help="batch size B of the input")
    runs.add_argument(
        "--steps",
        type=positive,
        help="time steps T of the input (default 20, or a model's fixed length)",
    )
    runs.add_argument("--frameworks", type=_names, default="auto", help="e.g. torch,keras")
    runs.add_argument("--devices", type=_names, default="auto", help="e.g. cpu,gpu:0")
    runs.add_argument("--dtypes", type=_dtypes, default=["float32"], help="e.g. float32,float64")
    runs.add_argument("--tf32", action="store_true", help="allow TF32 on GPUs")
    runs.add_argument(
        "--gradients",
        action="store_true",
        help="also compare the gradients (input, initial states, every weight) for a seeded "
        "random cotangent on every output; recurrent layers only",
    )
    runs.add_argument(
        "--paths",
        type=_paths,
        default=(),
        help="kernel paths to run besides each framework's default: 'all' or some of "
        f"{','.join(KERNEL_PATHS)}, each optionally as FRAMEWORK:PATH",
    )
    runs.add_argument("--seed", type=int, default=0, help="seed of the weights and the input")
    runs.add_argument("--rtol", type=float, help="relative tolerance (with --atol)")
    runs.add_argument("--atol", type=float, help="absolute tolerance (with --rtol)")
    runs.add_argument(
        "--quantization-budget",
        type=float,
        metavar="ERROR",
        help="with an int8 --onnx graph: the largest error its run may have at any step "
        "against its dequantized float model (default: derived from its quantization steps)",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write the report as JSON")
    out.add_argument("--markdown", metavar="FILE", help="write the report as Markdown")
    out.add_argument("--junit", metavar="FILE", help="write the pairs as JUnit XML")
    out.add_argument("--plot", metavar="FILE", help="plot error against time step (PNG)")
    out.add_argument(
        "--diagnose", action="store_true", help="explain a disagreement between the models"
    )
    out.add_argument(
        "--lint",
        action="store_true",
        help="list the traps in the --keras model and what the port does about each, "
        "then exit (no runs)",
    )
    return parser


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _names(text: str) -> str | list[str]:
    return "auto" if text == "auto" else [name.strip() for name in text.split(",") if name]


def _paths(text: str) -> str | list[str]:
    if text == "all":
        return text
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name.rpartition(":")[2] not in KERNEL_PATHS:
            raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(KERNEL_PATHS)}")
    return names


def _dtypes(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in DTYPES:
            raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(DTYPES)}")
    return names
