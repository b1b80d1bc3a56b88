"""A test-only backend: LiteRT's reference kernels with one op made wrong by 3 quanta.

The op is named by the EDGESHIP_TEST_PERTURB_OP environment variable (its output tensor's
name); on a one-op model of that op every output is moved by 3 quanta (saturating). A whole
model runs unchanged, so only the per-op comparison can see the fault, as with a kernel bug
that the network's later layers hide.
"""

import os
from pathlib import Path

import numpy as np

from edgeship.runtime.backends.litert import LiteRTBackend

PERTURB_QUANTA = 3


def open_backend(artifact_path: Path, **options) -> "PerturbedBackend":
    return PerturbedBackend(Path(artifact_path))


class PerturbedBackend(LiteRTBackend):
    def __init__(self, artifact_path: Path):
        super().__init__(artifact_path, reference_kernels=True, multi_input=True)
        target = os.environ.get("EDGESHIP_TEST_PERTURB_OP", "")
        details = self._interpreter.get_output_details()
        self._perturb = bool(target) and details[0]["name"] == target and (
            len(self._interpreter._get_ops_details()) == 1)

    def _moved(self, raw: np.ndarray) -> np.ndarray:
        if not self._perturb:
            return raw
        limits = np.iinfo(raw.dtype)
        return np.clip(raw.astype(np.int32) + PERTURB_QUANTA, limits.min, limits.max
                       ).astype(raw.dtype)

    def infer_raw(self, batch: np.ndarray) -> np.ndarray:
        return self._moved(super().infer_raw(batch))

    def infer_raw_inputs(self, inputs: list[np.ndarray]) -> np.ndarray:
        return self._moved(super().infer_raw_inputs(inputs))
