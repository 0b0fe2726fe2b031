"""Hypothesis profiles of the fuzz suite.

- ``ci`` (the default): few, derandomized examples, so the suite runs in seconds and the
  same way on every machine.
- ``long``: many random examples; ``HYPOTHESIS_PROFILE=long python -m pytest tests/fuzz``.

The profile is applied to the fuzz tests themselves (:data:`PROFILE`), not loaded
globally, so other tests keep Hypothesis's defaults.
"""

from __future__ import annotations

import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=400,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE_NAME = os.environ.get("HYPOTHESIS_PROFILE", "ci")
PROFILE = settings.get_profile(PROFILE_NAME)
