"""What every framework offers a comparison: devices, dtypes, versions and one run."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..canonical import RecurrentStack

# Unit roundoff that TF32 matrix products keep (a 10-bit mantissa), for tolerances.
TF32_EPSILON = 2.0**-10


@dataclass(frozen=True)
class RunSpec:
    """One column of a comparison: a framework on a device in a dtype."""

    framework: str
    device: str
    dtype: str
    tf32: bool = False
    # Which model runs: "" for the source, "against" for the model it is compared with.
    subject: str = ""

    @property
    def label(self) -> str:
        """e.g. ``torch[cpu,float32]``, ``keras[gpu:0,float32,tf32]``, ``…@against``."""
        parts = [self.device, self.dtype] + (["tf32"] if self.tf32 and self.device != "cpu" else [])
        return f"{self.framework}[{','.join(parts)}]" + (f"@{self.subject}" if self.subject else "")

    @property
    def epsilon(self) -> float:
        """The relative precision this run computes with."""
        if self.dtype == "bfloat16":
            return 2.0**-7
        if self.tf32 and self.device != "cpu" and self.dtype == "float32":
            return TF32_EPSILON
        return float(np.finfo(np.dtype(self.dtype)).eps)


class Framework:
    """One framework. Subclasses import it inside their methods only."""

    name = ""
    module = ""  # the importable package that must be installed

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec(cls.module) is not None

    def devices(self) -> list[str]:
        return ["cpu"]

    def dtypes(self, device: str) -> list[str]:
        """The dtypes this framework computes recurrent layers in on ``device``."""
        return ["float32", "float64"]

    def versions(self) -> dict[str, str]:
        return {}

    def run(
        self,
        stack: RecurrentStack,
        x: np.ndarray,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        """Run ``stack`` on ``x``; return float64 outputs and the numerics settings used."""
        raise NotImplementedError
