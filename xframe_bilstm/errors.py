"""Exceptions raised by xframe_bilstm.

Every exception subclasses both :class:`XFrameError` and the nearest builtin, so callers
can catch either::

    Exception
    └── XFrameError
        ├── UnsupportedFeatureError   (also NotImplementedError)
        ├── WeightShapeError          (also ValueError)
        ├── FrameworkUnavailableError (also ImportError)
        └── ToleranceExceededError    (also AssertionError)
"""

from __future__ import annotations


class XFrameError(Exception):
    """Base class of every error this package raises on purpose."""


class UnsupportedFeatureError(XFrameError, NotImplementedError):
    """An option or layer that cannot be converted or computed exactly."""


class WeightShapeError(XFrameError, ValueError):
    """An array or size does not fit the recurrent layer it belongs to."""


class FrameworkUnavailableError(XFrameError, ImportError):
    """A framework needed for this call is not installed."""


class ToleranceExceededError(XFrameError, AssertionError):
    """Two implementations that should agree differ by more than allowed."""
