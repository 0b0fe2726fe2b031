"""numpy arrays to torch tensors and back, bfloat16 (``ml_dtypes``) included."""

from __future__ import annotations

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
