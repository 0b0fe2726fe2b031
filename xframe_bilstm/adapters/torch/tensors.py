"""numpy arrays to torch tensors and back, bfloat16 (``ml_dtypes``) included."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ...errors import UnsupportedFeatureError


def _bfloat16_numpy() -> np.dtype:
    """numpy's bfloat16 (``ml_dtypes``, which TensorFlow, Keras and JAX depend on)."""
    try:
        import ml_dtypes
    except ImportError as error:
        raise UnsupportedFeatureError(
            "bfloat16 weights or inputs need the ml_dtypes package for a numpy bfloat16 "
            "(pip install ml_dtypes); or convert the module to float32 first "
            "(module.float())"
        ) from error
    return np.dtype(ml_dtypes.bfloat16)


def torch_dtype(dtype: Any) -> torch.dtype:
    """The torch dtype of a numpy float dtype, ``ml_dtypes.bfloat16`` included.

    Example:
        >>> torch_dtype(np.float16)
        torch.float16
    """
    if np.dtype(dtype).name == "bfloat16":
        return torch.bfloat16
    return torch.from_numpy(np.zeros(0, dtype)).dtype


def numpy_to_tensor(array: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A tensor of a numpy array (bfloat16 arrays bit for bit), cast to ``dtype`` if given.

    Read-only arrays are copied rather than shared: torch cannot protect them.
    """
    array = np.asarray(array)
    if array.dtype.name == "bfloat16":
        # torch reads no ml_dtypes array: move the same 16 bits through int16.
        tensor = torch.from_numpy(np.ascontiguousarray(array).view(np.int16).copy())
        tensor = tensor.view(torch.bfloat16)
    elif array.flags.writeable:
        tensor = torch.as_tensor(array)
    else:
        tensor = torch.from_numpy(array.copy())
    return tensor if dtype is None else tensor.to(dtype)


def owned_tensor(array: Any) -> torch.Tensor:
    """A tensor with its own copy of ``array``: exactly one copy, made at numpy's speed.

    ``torch.tensor(array)`` copies a read-only array (as weights read from a file are)
    element by element, tens of times slower than this copy; a transposed array is copied
    band by band (:func:`~xframe_bilstm.copies.contiguous_copy`).

    Example:
        >>> source = np.arange(6.0).reshape(2, 3)
        >>> source.setflags(write=False)
        >>> owned_tensor(source.T).tolist()
        [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    """
    from ...copies import contiguous_copy

    array = np.asarray(array)
    if array.dtype.name == "bfloat16":
        return numpy_to_tensor(array)  # copies: torch reads no ml_dtypes array directly
    if not array.dtype.isnative:
        return torch.from_numpy(array.astype(array.dtype.newbyteorder("=")))
    return torch.from_numpy(contiguous_copy(array))


def tensor_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A numpy array of a tensor on any device; bfloat16 becomes ``ml_dtypes.bfloat16``.

    Example:
        >>> tensor_to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype.name
        'bfloat16'
    """
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(_bfloat16_numpy())
    return tensor.numpy()


def flatten(result: Any) -> list[torch.Tensor]:
    """The tensors a module returned, in order: ``(output, (h_n, c_n))`` gives three.

    Example:
        >>> [t.shape[0] for t in flatten((torch.zeros(1), (torch.zeros(2), torch.zeros(3))))]
        [1, 2, 3]
    """
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (tuple, list)) and not isinstance(
        result, torch.nn.utils.rnn.PackedSequence
    ):
        return [tensor for item in result for tensor in flatten(item)]
    raise UnsupportedFeatureError(
        f"a module must return a tensor or (nested) tuples of tensors; got {type(result).__name__}"
    )


@contextlib.contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``module`` in inference mode (no dropout), then every submodule's own mode back.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Dropout()).train()
        >>> model[1].eval()
        Dropout(p=0.5, inplace=False)
        >>> with evaluating(model):
        ...     model.training
        False
        >>> model.training, model[1].training
        (True, False)
    """
    modes = {part: part.training for part in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for part, training in modes.items():
            part.train(training)


def float_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype of the first floating parameter or buffer ``module`` holds (a port of
    pools or of a ``Normalization``'s statistics holds buffers only), float32 for none.

    Example:
        >>> statistics = torch.nn.BatchNorm1d(2, affine=False).double()
        >>> float_dtype(statistics), float_dtype(torch.nn.ReLU())
        (torch.float64, torch.float32)
    """
    held = (*module.parameters(), *module.buffers())
    return next((t.dtype for t in held if t.is_floating_point()), torch.float32)


def run_module(module: torch.nn.Module, inputs: Any) -> tuple[np.ndarray, ...]:
    """``module(*inputs)`` on numpy arrays, in inference mode and without gradients.

    Token ids (integer arrays) go in as int64, features in the dtype of the module's
    parameters and on their device; every submodule's training mode is put back afterwards.
    Every tensor it returns comes back as numpy, in order (nested tuples flattened).

    Example:
        >>> run_module(torch.nn.Linear(2, 1, bias=False).double(), [np.zeros((3, 2))])[0].shape
        (3, 1)
    """
    parameter = next(iter(module.parameters()), None)
    dtype = torch.float32 if parameter is None else parameter.dtype
    device = None if parameter is None else parameter.device
    arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    tensors = [
        numpy_to_tensor(array, torch.int64 if np.asarray(array).dtype.kind in "iu" else dtype)
        for array in arrays
    ]
    with evaluating(module), torch.no_grad():
        result = module(*(tensor.to(device) for tensor in tensors))
    return tuple(tensor_to_numpy(tensor) for tensor in flatten(result))
