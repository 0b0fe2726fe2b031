"""Compiling a Keras call with ``tf.function``, without AutoGraph unless the call needs it.

AutoGraph rewrites the Python source of every function a trace enters (Keras's layer,
cell and backend code included) so that Python ``if``/``for``/``while`` on tensors become
graph control flow. Keras 3's own layers have no such statements (they run under JAX's
``jit`` as well), and rewriting them takes about half a second in a fresh process, more
than the trace itself. So a call is first traced as written. A call that does branch or
loop on a tensor cannot be traced that way: TensorFlow refuses it while tracing (a symbolic
tensor has no Python truth value and cannot be iterated), it never computes something
else. Only then is it traced again with AutoGraph, which is what it always was before, so
the graph, its outputs and its errors are those AutoGraph would give.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..._imports import require


class Traced:
    """``tf.function(call)``: traced without AutoGraph, and with it if that fails.

    Args:
        call: what to compile; its own object, since TensorFlow counts retracing per
            Python code object.

    Example:
        >>> import tensorflow as tf
        >>> def halve_positive(x):
        ...     if tf.reduce_sum(x) > 0:  # Python control flow on a tensor
        ...         return x / 2
        ...     return x
        >>> traced = Traced(halve_positive)
        >>> float(traced(tf.constant([4.0]))[0]), traced.autograph
        (2.0, True)
        >>> plain = Traced(lambda x: x * 3)
        >>> float(plain(tf.constant([1.0]))[0]), plain.autograph
        (3.0, False)
    """

    def __init__(self, call: Callable[..., Any]) -> None:
        tf = require("tensorflow")
        self._call = call
        self._function = tf.function(call, reduce_retracing=True, autograph=False)
        self.autograph = False

    def __call__(self, *args: Any) -> Any:
        if self.autograph:
            return self._function(*args)
        try:
            return self._function(*args)
        except Exception:
            # A new shape may take another path, so any failure falls back: what AutoGraph
            # compiles, or the error it raises, as before.
            tf = require("tensorflow")
            self._function = tf.function(self._call, reduce_retracing=True)
            self.autograph = True
            return self._function(*args)

    def experimental_get_tracing_count(self) -> int:
        """How many times the function in use has been traced, as ``tf.function`` counts."""
        return int(self._function.experimental_get_tracing_count())


__all__ = ["Traced"]
