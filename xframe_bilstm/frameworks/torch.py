"""PyTorch as a framework: the converted module on CPU or CUDA, with TF32 and the kernel path
applied per run, and the recurrent kernel that actually ran recorded from the dispatcher."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..graph import ModelGraph
from ..inputs import as_list
from ..reference import Reading
from ..stack_graph import as_graph
from .base import Framework, RunSpec


class TorchFramework(Framework):
    name = "torch"
    differentiates = True
    differentiates_graphs = True
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

    def supports(self, reading: Reading) -> str | None:
        return None  # a graph runs as its port (models.to_torch)

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        from ..models.torch_port import module_arguments

        torch = require("torch")
        graph = as_graph(stack)
        dtype = getattr(torch, spec.dtype)
        device = spec.device.replace("gpu", "cuda")
        module = self._module(graph, dtype, device)
        with kernel_flags(torch, spec) as settings, torch.no_grad(), RecurrentOps() as ops:
            tensors = _tensors(torch, x, dtype, device, initial_states, lengths)
            result = self._call(module, module_arguments(graph, *tensors))
            if device != "cpu":
                torch.cuda.synchronize()
        from ..adapters.torch import flatten

        outputs = tuple(t.detach().to("cpu", torch.float64).numpy() for t in flatten(result))
        return outputs, {**settings, **self._describe(module), "kernel": ops.kernel}

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
        """Autograd on the module that runs (see :mod:`.torch_gradients`)."""
        torch = require("torch")
        from .torch_gradients import torch_gradients

        graph = as_graph(stack)
        dtype = getattr(torch, spec.dtype)
        device = spec.device.replace("gpu", "cuda")
        module = self._module(graph, dtype, device)
        with kernel_flags(torch, spec):
            tensors = _tensors(torch, x, dtype, device, initial_states, lengths)
            return torch_gradients(torch, module, self._call, graph, *tensors, cotangents)

    def _module(self, graph: ModelGraph, dtype: Any, device: str) -> Any:
        """The module to run: our port of the graph (a stack's own module for a stack's
        graph, :mod:`~xframe_bilstm.models.torch_port`), in the run's dtype and on its
        device."""
        from ..models.torch_port import port_of

        return port_of(graph).to(device=device, dtype=dtype).eval()

    def _call(self, module: Any, arguments: list[Any]) -> Any:
        return module(*arguments)

    def _describe(self, module: Any) -> dict[str, object]:
        rnns = [rnn for part in module.modules() for rnn in getattr(part, "rnns", ())]
        return {"modules": ", ".join(sorted({type(rnn).__name__ for rnn in rnns}))}


class TorchModuleFramework(TorchFramework):
    """A torch module of the user's, run by its own ``forward``: a torch source itself
    (``@original``) or the port it is compared with (``compare(against=module)``).

    A native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` returns what it returns, ``output`` (batch
    first), then ``h_n`` (and ``c_n``); lengths go in as a packed sequence and initial states
    (every layer's, in Keras order) as ``(h_0, c_0)``. A module made by
    :func:`~xframe_bilstm.keras_to_torch` takes them as the Keras layer does, and a stateful
    one starts from zero states like every other run (its copy is reset; the user's module
    keeps what it carries). The stack a run is given is ignored: only this module's own
    computation is compared.
    """

    def __init__(self, module: Any) -> None:
        self.own = module  # ``module`` names the package, as in every framework

    def run(self, stack: Reading, x: Any, spec: RunSpec, **given: Any) -> Any:
        from ..adapters.torch import evaluating
        from ..models.torch_forward import sequences_passed_on

        with evaluating(self.own), sequences_passed_on(self.own):
            return super().run(stack, x, spec, **given)

    def gradients(self, stack: Reading, x: Any, spec: RunSpec, *args: Any, **given: Any) -> Any:
        from ..adapters.torch import evaluating
        from ..models.torch_forward import sequences_passed_on

        with evaluating(self.own), sequences_passed_on(self.own):
            return super().gradients(stack, x, spec, *args, **given)

    def _module(self, graph: ModelGraph, dtype: Any, device: str) -> Any:
        # The user's module itself where it already computes in the run's dtype and device
        # (it sees the very inputs); else a copy, so that the caller's module stays as it was.
        module = self.own
        parameter = next(iter(module.parameters()), None)
        stateful = getattr(module, "stateful", False)
        where = None if parameter is None else (parameter.dtype, str(parameter.device))
        if stateful or where not in (None, (dtype, device)):
            module = copy.deepcopy(module).to(device=device, dtype=dtype)
        if stateful:
            module.reset_states()  # from zero states (or those given), as every other run
        return module.eval()

    def _call(self, module: Any, arguments: list[Any]) -> Any:
        if isinstance(module, require("torch").nn.RNNBase):
            return _run_native(module, *arguments)
        return module(*arguments)

    def _describe(self, module: Any) -> dict[str, object]:
        return {"module": type(self.own).__name__}


def _run_native(
    module: Any, inputs: Any, states: list[Any] | None = None, lengths: Any = None
) -> tuple[Any, ...]:
    """``output`` (B, T, F) then ``h_n`` (and ``c_n``), as the module returns them."""
    torch = require("torch")
    utils = torch.nn.utils.rnn
    steps = inputs.shape[1]
    if not module.batch_first:
        inputs = inputs.transpose(0, 1)
    hx = None if states is None else _native_states(torch, module, states)
    if lengths is None:
        output, finals = module(inputs, hx)
    else:
        packed = utils.pack_padded_sequence(
            inputs,
            lengths.to("cpu", torch.int64),
            batch_first=module.batch_first,
            enforce_sorted=False,
        )
        output, finals = module(packed, hx)
        output, _ = utils.pad_packed_sequence(
            output, batch_first=module.batch_first, total_length=steps
        )
    if not module.batch_first:
        output = output.transpose(0, 1)
    return (output, *(finals if isinstance(finals, tuple) else (finals,)))


def _native_states(torch: Any, module: Any, states: list[Any]) -> Any:
    """Keras-order states (per layer: ``h, c`` of each direction) as a native module's
    ``h_0`` (and ``c_0``), each (layers·directions, B, H)."""
    if module.mode != "LSTM":
        return torch.stack(states)
    return torch.stack(states[0::2]), torch.stack(states[1::2])


def _tensors(
    torch: Any,
    x: Any,
    dtype: Any,
    device: str,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> tuple[list[Any], list[Any] | None, Any]:
    """A run's inputs (one tensor per graph input), initial states and lengths as tensors
    on its device: token ids stay integers, features and states take the run's dtype."""
    inputs = [
        torch.as_tensor(a, dtype=torch.int64 if a.dtype.kind in "iu" else dtype).to(device)
        for a in as_list(x)
    ]
    states = None
    if initial_states is not None:
        states = [torch.as_tensor(s, dtype=dtype, device=device) for s in initial_states]
    steps = None if lengths is None else torch.as_tensor(lengths, device=device)
    return inputs, states, steps


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
            @classmethod
            def _should_skip_dynamo(cls) -> bool:
                # Else torch wraps this method in ``torch._dynamo.disable``, whose import
                # (the compiler stack, about a second) would dwarf a cold run.
                return False

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                seen.add(func.name())
                return func(*args, **(kwargs or {}))

        self._mode = Recorder()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._mode is not None:
            self._mode.__exit__(*exc)
