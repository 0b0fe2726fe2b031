"""PyTorch → Keras: a recurrent module, a module with children or a state_dict file, checked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .._imports import require
from ..comparison import check_port
from ..errors import UnsupportedFeatureError
from .keras_model import keras_model_to_keras
from .verification import (
    VERIFY_BATCH,
    require_keras_adapter,
    require_torch_adapter,
    verification_input,
)
from .whole_module import whole_module_to_keras

if TYPE_CHECKING:
    from ..models.input_shape import InputShape


def torch_to_keras(
    obj: Any,
    *,
    verify: bool = True,
    seed: int = 0,
    submodule: str | None = None,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None = None,
    input_shape: InputShape | None = None,
) -> Any:
    """Convert an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (or a converted module) to Keras 3.

    Native modules of any ``num_layers``, ``bidirectional``, ``batch_first`` and ``bias``
    become one Keras layer (``num_layers=1``) or a ``keras.Sequential`` of layers with
    ``return_sequences=True``; bidirectional ones become ``Bidirectional(merge_mode="concat")``.
    The Keras model takes batch-first input and returns the torch module's ``output`` in
    batch-first layout. Keras's last layer returns no states; the torch ``h_n[2*l + d]``
    (layer ``l``, direction ``d``) is the final state of Keras layer ``l``'s forward
    (``d=0``) or backward (``d=1``) half. ``bias_ih + bias_hh`` become Keras's one bias (the
    only step that is not bit-exact: one float addition). A ``dropout`` between stacked
    layers becomes ``keras.layers.Dropout`` layers between them. ``proj_size`` raises
    :class:`~xframe_bilstm.errors.UnsupportedFeatureError`. A stateful module made by
    :func:`keras_to_torch` becomes a stateful layer for the same batch size, carrying on
    from the module's current states.

    ``obj`` may also be:

    - a whole-model port made by :func:`keras_to_torch` (a
      :class:`~xframe_bilstm.models.to_torch.KerasModel`), which becomes the functional
      ``keras.Model`` of the graph it was built from, with the weights it holds now (trained
      or loaded since, too), checked against ``module(*inputs)`` on inputs with padded rows.
    - a module with children (an ``nn.Sequential``, or a module whose ``forward`` applies
      ``nn.Embedding``, recurrent modules, ``nn.Linear``, ``nn.Dropout`` and activations
      one after another, each recurrent one passing on ``rnn(x)[0]``), which is read as a
      model graph (:mod:`xframe_bilstm.models.torch_graph`) and rebuilt as a functional
      ``keras.Model``, as ``compare()`` rebuilds any whole model. ``forward`` is read
      first (:func:`~xframe_bilstm.models.torch_forward.check_forward`), even with
      ``verify=False``: anything else it does (a function between children, a sum over
      time, a child skipped) is refused by name, as is a ``forward`` that cannot be read.
    - the path of a state_dict file of one recurrent module (``torch.save`` of its
      ``state_dict()``, read with ``weights_only=True``, or ``.safetensors``; the
      configuration is inferred from the names and shapes), or of a training checkpoint
      holding one under ``"model_state_dict"``, ``"state_dict"`` or ``"model"`` (the
      result's ``checkpoint_key`` says which). Every key must be the recurrent module's: a
      whole model's state_dict is refused with the keys left out, and ``submodule`` picks
      the recurrent part. TorchScript archives are refused without being loaded.

    With ``verify=True`` the result runs on a seeded input next to the original's own
    computation: the module's ``forward``, ``module(x)``, in inference mode.

    Args:
        obj: the module, or the path of its state_dict file.
        verify: run both on a seeded input and raise
            :class:`~xframe_bilstm.errors.ToleranceExceededError` if they disagree.
        seed: seed of that input.
        submodule: convert only this part: ``obj.get_submodule(submodule)`` of a module,
            or the keys under ``submodule + "."`` of a file. The Keras result is then named
            after the part, and its ``converted_part`` attribute holds ``submodule``.
        custom_modules: for children of a module with children that are not among the
            supported modules, and for a whole-model port's custom layers: their class (or
            its name) -> ``factory(child)``, returning a Keras layer that computes what the
            child computes now, weights included, in the same layout. A port's custom layer
            whose module changed since it was ported (trained, loaded) needs one. The
            result is checked against ``module(x)``.
        input_shape: for a module with children, the shape of its input without the batch
            axis, ``None`` for the time axis, as ``keras.Input(shape=...)`` takes it
            (``(1, 32, None)`` for a CRNN reading 32-pixel-high images); by default it
            is read from the first child, and any other free axis is given the size 7.
            The Keras model takes inputs of that shape; a shape ``forward`` does not take,
            or one that changes a size the first child fixes, is refused. A ``forward``
            of several inputs takes one shape per data input, ``[(None,), (None, 12)]``.

    Returns:
        A Keras layer, ``keras.Sequential`` or (for a module with children) ``keras.Model``.

    Example:
        >>> import torch
        >>> layer = torch_to_keras(torch.nn.GRU(2, 3, batch_first=True))
        >>> type(layer).__name__, layer.reset_after
        ('GRU', True)
        >>> class Tagger(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lstm = torch.nn.LSTM(3, 4, batch_first=True)
        ...         self.fc = torch.nn.Linear(4, 2)
        ...     def forward(self, x):
        ...         return self.fc(torch.relu(self.lstm(x)[0]))
        >>> [layer.name for layer in torch_to_keras(Tagger()).layers]  # forward captured
        ['input', 'lstm', 'relu', 'fc']
        >>> part = torch_to_keras(Tagger(), submodule="lstm")
        >>> part.name, part.converted_part
        ('lstm', 'lstm')
    """
    require("torch")
    from ..keras_files import is_model_path
    from ..models import from_torch

    if input_shape is not None:
        _refuse_input_shape(obj, submodule, input_shape)
    if is_model_path(obj):
        module = from_torch.load_state_dict_module(obj, submodule=submodule)
        result = _module_to_keras(module, verify=verify, seed=seed, name=submodule)
        if module.checkpoint_key is not None:
            result.checkpoint_key = module.checkpoint_key
    elif submodule is not None:
        part = _part_of(obj, submodule)
        result = _module_to_keras(
            part,
            verify=verify,
            seed=seed,
            name=submodule,
            custom_modules=custom_modules,
            input_shape=input_shape,
        )
    else:
        return _module_to_keras(
            obj, verify=verify, seed=seed, custom_modules=custom_modules, input_shape=input_shape
        )
    if submodule is not None:
        result.converted_part = submodule
    return result


def _refuse_input_shape(obj: Any, submodule: str | None, input_shape: Any) -> None:
    """Refuse ``input_shape`` where no module with children reads it."""
    from ..keras_files import is_model_path
    from ..models.to_torch import KerasModel
    from ..models.torch_graph import is_whole_module

    module = obj
    if not is_model_path(obj) and submodule is not None:
        module = _part_of(obj, submodule)
    if is_model_path(obj) or isinstance(module, KerasModel) or not is_whole_module(module):
        what = "a state_dict file" if is_model_path(obj) else type(module).__name__
        raise UnsupportedFeatureError(
            f"input_shape={input_shape!r} is read for modules with children only; {what} "
            "fixes its own input shape (a recurrent module reads (batch, time, input_size), "
            "a port from keras_to_torch its Keras model's inputs): leave input_shape out"
        )


def _part_of(module: Any, submodule: str) -> Any:
    """``module.get_submodule(submodule)``, or a refusal naming the children there are."""
    torch = require("torch")
    if not isinstance(module, torch.nn.Module):
        raise UnsupportedFeatureError(
            f"submodule={submodule!r} needs a torch module or a state_dict file; got "
            f"{type(module).__name__}"
        )
    try:
        return module.get_submodule(submodule)
    except AttributeError as error:
        children = ", ".join(repr(name) for name, _ in module.named_children()) or "none"
        raise UnsupportedFeatureError(
            f"{type(module).__name__} has no submodule {submodule!r} ({error}); its children: "
            f"{children}"
        ) from error


def _module_to_keras(
    obj: Any,
    *,
    verify: bool,
    seed: int,
    name: str | None = None,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None = None,
    input_shape: InputShape | None = None,
) -> Any:
    """Convert a live module; see :func:`torch_to_keras`."""
    torch = require("torch")
    from ..models.to_torch import KerasModel
    from ..models.torch_graph import is_whole_module

    torch_adapter = require_torch_adapter()
    if isinstance(obj, KerasModel):  # a whole-model port: back through the graph it keeps
        return keras_model_to_keras(
            obj, verify=verify, seed=seed, name=name, custom_modules=custom_modules
        )
    if is_whole_module(obj):
        return whole_module_to_keras(
            obj,
            verify=verify,
            seed=seed,
            name=name,
            custom_modules=custom_modules,
            input_shape=input_shape,
        )
    keras_adapter = require_keras_adapter()
    # Views of the parameters: the Keras layer copies them into its variables right away.
    stack = torch_adapter.torch_to_canonical(obj, borrow=True)
    # A stateful module keeps its batch size and may be mid-sequence: the layer carries on.
    states = obj.carried_states() if isinstance(obj, torch_adapter.KerasRecurrent) else []
    batch = (getattr(obj, "batch_size", None) or VERIFY_BATCH) if stack.stateful else None
    layer = keras_adapter.canonical_to_keras(
        stack,
        name=name,
        batch_size=batch,
        # torch's dropout acts between stacked layers in training; Keras Dropout layers do too.
        dropout=float(getattr(obj, "dropout", 0.0)),
    )
    if states:
        keras_adapter.restore_states(layer, states)
    if verify:
        x = verification_input(stack, seed=seed, batch=batch)
        expected = _run_torch_source(torch, torch_adapter, obj, x, states)
        try:
            actual = keras_adapter.run_keras(layer, x)
        finally:
            if states:
                keras_adapter.restore_states(layer, states)
            else:
                keras_adapter.reset_keras_states(layer)
        label = f"torch {type(obj).__name__} vs its Keras layer"
        check_port(stack, x, expected, actual, label=label, dtype=x.dtype)
    return layer


def _run_torch_source(
    torch: Any, torch_adapter: Any, module: Any, x: np.ndarray, states: list[np.ndarray]
) -> tuple[np.ndarray, ...]:
    """The module's own outputs for ``x``, in inference mode; its states are put back."""
    with torch_adapter.evaluating(module):
        if not isinstance(module, torch_adapter.KerasRecurrent):
            return (_run_native(torch, module, x),)
        try:
            return tuple(torch_adapter.run_torch(module, x))
        finally:
            if states:
                module.load_states(states)
            else:
                module.reset_states()


def _run_native(torch: Any, module: Any, x: np.ndarray) -> np.ndarray:
    from ..adapters.torch import numpy_to_tensor, tensor_to_numpy

    dtype = next(module.parameters()).dtype
    inputs = numpy_to_tensor(x, dtype)  # bfloat16 too, which torch.as_tensor cannot read
    with torch.no_grad():
        output, _ = module(inputs if module.batch_first else inputs.transpose(0, 1))
    output = output if module.batch_first else output.transpose(0, 1)
    return tensor_to_numpy(output)
