"""PyTorch as a framework: the converted module on CPU or CUDA, TF32 applied per run."""

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
        with _tf32(torch, spec.tf32) as settings, torch.no_grad():
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
        kernels = sorted({type(rnn).__name__ for rnn in module.rnns})
        return outputs, {**settings, "modules": ", ".join(kernels)}


@contextlib.contextmanager
def _tf32(torch: Any, enabled: bool) -> Iterator[dict[str, object]]:
    """Set TF32 for cuDNN RNNs and matmuls for one run, and put the old values back."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = enabled
    try:
        yield {
            "cudnn.allow_tf32": enabled,
            "cuda.matmul.allow_tf32": enabled,
            "cudnn.enabled": bool(cudnn.enabled),
            "mkldnn.enabled": bool(torch.backends.mkldnn.enabled),
            "threads": torch.get_num_threads(),
        }
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved
