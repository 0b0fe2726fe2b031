"""OpenMP's wait policy for the command line's own process.

PyTorch's OpenMP threads spin between parallel regions by default, and a recurrent kernel
opens one region per time step. With TensorFlow's threads in the same process on a machine
of few cores, each region then waits for a thread the spinning ones keep off its core: on 2
cores the first torch run of the default comparison took 0.25–1.5 s against 0.02–0.03 s
with idle threads sleeping, and the torch-onnx export likewise. The policy changes how idle
threads wait, not what any thread computes, so no number a report shows changes. OpenMP
reads it once, when the library loads, so it is set before any framework is imported; a
user who sets ``OMP_WAIT_POLICY`` keeps their choice.
"""

from __future__ import annotations

import os

WAIT_POLICY = "OMP_WAIT_POLICY"


def wait_passively() -> None:
    """Let idle OpenMP threads of this process sleep, unless the user chose a policy."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")
