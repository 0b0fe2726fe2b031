"""What every framework offers a comparison: devices, dtypes, versions and one run."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..reference import Reading
from ..stack_graph import as_graph, stack_of

# Why a whole model's gradients are not compared.
GRAPH_GRADIENTS = (
    "this framework's gradients are compared for recurrent layers; compare the recurrent "
    "layers alone, or the whole model's gradients in the reference, PyTorch and Keras on "
    "TensorFlow"
)

# Unit roundoff that TF32 matrix products keep (a 10-bit mantissa), for tolerances.
TF32_EPSILON = 2.0**-10

# The alternative kernels a run may select besides its framework's default, and what each
# changes. The default path always runs too, so the two can be compared.
KERNEL_PATHS: dict[str, str] = {
    "mkldnn-off": "PyTorch on CPU with its oneDNN (mkldnn) RNN kernel disabled: "
    "the LSTM runs ATen's own loop of matrix products",
    "cudnn-off": "on a GPU, the cuDNN RNN kernels disabled (PyTorch: cudnn.enabled=False; "
    "Keras: use_cudnn=False): the framework's own loop runs",
    "onednn-off": "TensorFlow with TF_ENABLE_ONEDNN_OPTS=0 (read at import: runs in a "
    "separate process unless this one already has that setting)",
    "onednn-on": "TensorFlow with TF_ENABLE_ONEDNN_OPTS=1 (as onednn-off)",
    "unroll": "Keras with unroll=True: the recurrence as straight-line operations, "
    "not a while loop",
    "dynamic-range-int8": "TFLite's dynamic-range quantized model (Optimize.DEFAULT): int8 "
    "weights, activations quantized per call; judged against a quantization budget",
}


@dataclass(frozen=True)
class RunSpec:
    """One column of a comparison: a framework on a device in a dtype."""

    framework: str
    device: str
    dtype: str
    tf32: bool = False
    # Which model runs: "" for the source, "against" for the model it is compared with.
    subject: str = ""
    # Which kernel path: "" for the framework's default, else a name from KERNEL_PATHS.
    path: str = ""

    @property
    def label(self) -> str:
        """e.g. ``torch[cpu,float32]``, ``keras[gpu:0,float32,tf32]``,
        ``torch[cpu,float32,mkldnn-off]``, ``…@against``."""
        parts = [self.device, self.dtype] + (["tf32"] if self.tf32 and self.device != "cpu" else [])
        parts += [self.path] if self.path else []
        return f"{self.framework}[{','.join(parts)}]" + (f"@{self.subject}" if self.subject else "")

    @property
    def epsilon(self) -> float:
        """The relative precision this run computes with."""
        if self.dtype == "bfloat16":
            return 2.0**-7
        if self.tf32 and self.device != "cpu" and self.dtype == "float32":
            return TF32_EPSILON
        return float(np.finfo(np.dtype(self.dtype)).eps)


class Framework:
    """One framework. Subclasses import it inside their methods only."""

    name = ""
    module = ""  # the importable package that must be installed
    differentiates = False  # whether its runs also give gradients (autograd, a tape, BPTT)
    differentiates_graphs = False  # whether it also gives those of whole models
    # Whether it runs only when asked for by name, not under frameworks="auto": the
    # deployment runtimes each start a process or convert the model, seconds per compare().
    on_request = False

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec(cls.module) is not None

    def devices(self) -> list[str]:
        return ["cpu"]

    def dtypes(self, device: str) -> list[str]:
        """The dtypes this framework computes recurrent layers in on ``device``."""
        return ["float32", "float64"]

    def versions(self) -> dict[str, str]:
        return {}

    def paths(self, device: str) -> list[str]:
        """The alternative kernel paths (names in KERNEL_PATHS) offered on ``device``."""
        return []

    def supports(self, reading: Reading) -> str | None:
        """Why this framework cannot run ``reading``, or None when it can. Frameworks run
        recurrent stacks (graphs that are one); those that run model graphs too say so."""
        graph = as_graph(reading)
        if stack_of(graph) is not None:
            return None
        return f"{self.name} runs recurrent layers only, not {', '.join(other_kinds(graph))}"

    def lengths_refusal(self, reading: Reading) -> str | None:
        """Why this framework cannot run ``reading`` given per-row lengths, or None when it
        can."""
        return None

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        """Run a stack on ``x`` (B, T, D), or a graph on its inputs (one array, or a tuple of
        one per model input); return float64 outputs and the numerics settings used."""
        raise NotImplementedError

    def gradient_refusal(self, reading: Reading) -> str | None:
        """Why this framework gives no gradients of ``reading``, or None when it does: those
        that differentiate (``differentiates``) do for recurrent stacks, and those that
        differentiate graphs (``differentiates_graphs``) for graphs the reference can."""
        if not self.differentiates:
            return f"{self.name} computes no gradients (forward outputs only)"
        graph = as_graph(reading)
        if stack_of(graph) is not None:
            return None
        if not self.differentiates_graphs:
            return GRAPH_GRADIENTS
        from ..reference.graph_backward import backward_refusal

        return backward_refusal(graph)

    def gradients(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        cotangents: Sequence[np.ndarray],
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> Any:
        """The :class:`~xframe_bilstm.gradient_arrays.GradientArrays` of ``Σ cotangent ⊙
        output`` with respect to the input, the initial states given and every weight."""
        raise NotImplementedError(self.gradient_refusal(stack))


def other_kinds(graph: Any) -> list[str]:
    """The class names of a graph's layers beside its inputs and recurrent layers."""
    kinds = [r.class_name for r in graph.layers if r.kind not in ("input", "recurrent")]
    return list(dict.fromkeys(kinds)) or ["a graph"]
