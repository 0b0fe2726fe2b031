"""PyTorch as a framework: the converted module on CPU or CUDA, with TF32 and the kernel path
applied per run, and the recurrent kernel that actually ran recorded from the dispatcher."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import RecurrentStack
from .base import Framework, RunSpec


class TorchFramework(Framework):
    name = "torch"
    module = "torch"

    def devices(self) -> list[str]:
        torch = require("torch")
        return ["cpu"] + [f"gpu:{i}" for i in range(torch.cuda.device_count())]

    def dtypes(self, device: str) -> list[str]:
        return ["float32", "float64", "float16", "bfloat16"]

    def paths(self, device: str) -> list[str]:
        torch = require("torch")
        if device == "cpu":
            return ["mkldnn-off"] if torch.backends.mkldnn.is_available() else []
        return ["cudnn-off"]

    def versions(self) -> dict[str, str]:
        torch = require("torch")
        versions = {"torch": torch.__version__}
        if torch.cuda.is_available():
            versions["cuda"] = str(torch.version.cuda)
            versions["cudnn"] = str(torch.backends.cudnn.version())
            versions["gpu"] = torch.cuda.get_device_name(0)
        return versions

    def run(
        self,
        stack: RecurrentStack,
        x: np.ndarray,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        torch = require("torch")
        from ..adapters.torch import canonical_to_torch

        dtype = getattr(torch, spec.dtype)
        device = spec.device.replace("gpu", "cuda")
        module = canonical_to_torch(stack).to(device=device, dtype=dtype).eval()
        with kernel_flags(torch, spec) as settings, torch.no_grad(), RecurrentOps() as ops:
            inputs = torch.as_tensor(x, dtype=dtype, device=device)
            states = None
            if initial_states is not None:
                states = [torch.as_tensor(s, dtype=dtype, device=device) for s in initial_states]
            masks = None if lengths is None else torch.as_tensor(lengths, device=device)
            result = module(inputs, states, masks)
            if device != "cpu":
                torch.cuda.synchronize()
        tensors = result if isinstance(result, tuple) else (result,)
        outputs = tuple(t.detach().to("cpu", torch.float64).numpy() for t in tensors)
        modules = sorted({type(rnn).__name__ for rnn in module.rnns})
        return outputs, {**settings, "modules": ", ".join(modules), "kernel": ops.kernel}


@contextlib.contextmanager
def kernel_flags(torch: Any, spec: RunSpec) -> Iterator[dict[str, object]]:
    """Set TF32 and the kernel path's backend switches for one run; put the old ones back."""
    backends = torch.backends
    cudnn, matmul, mkldnn = backends.cudnn, backends.cuda.matmul, backends.mkldnn
    saved = (cudnn.allow_tf32, matmul.allow_tf32, cudnn.enabled, mkldnn.enabled)
    cudnn.allow_tf32 = matmul.allow_tf32 = spec.tf32
    if spec.path == "cudnn-off":
        cudnn.enabled = False
    if spec.path == "mkldnn-off":
        mkldnn.enabled = False
    try:
        yield {
            "cudnn.allow_tf32": spec.tf32,
            "cuda.matmul.allow_tf32": spec.tf32,
            "cudnn.enabled": bool(cudnn.enabled),
            "mkldnn.enabled": bool(mkldnn.enabled),
            "threads": torch.get_num_threads(),
        }
    finally:
        cudnn.allow_tf32, matmul.allow_tf32, cudnn.enabled, mkldnn.enabled = saved


# ATen operators that are whole recurrent kernels, by the library that provides them. A run
# that calls none of them ran ATen's own loop of matrix products.
_KERNEL_OPS = {
    "aten::mkldnn_rnn_layer": "oneDNN (mkldnn) LSTM",
    "aten::_cudnn_rnn": "cuDNN RNN",
    "aten::miopen_rnn": "MIOpen RNN",
}


class RecurrentOps:
    """Records which recurrent kernel a run dispatched to, as the dispatcher saw it.

    The backend switches say what may run; only the dispatcher knows what did (oneDNN
    serves LSTMs only, and packed sequences never). Python dispatch modes are
    ``torch.utils._python_dispatch``; where that is missing, the kernel reads "unknown".
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._mode: Any = None

    @property
    def kernel(self) -> str:
        if self._mode is None:
            return "unknown"
        found = [name for op, name in _KERNEL_OPS.items() if op in self.seen]
        return ", ".join(found) or "ATen loop (matrix products per step)"

    def __enter__(self) -> RecurrentOps:
        try:
            from torch.utils._python_dispatch import TorchDispatchMode
        except ImportError:
            return self
        seen = self.seen

        class Recorder(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                seen.add(func.name())
                return func(*args, **(kwargs or {}))

        self._mode = Recorder()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._mode is not None:
            self._mode.__exit__(*exc)
