"""Class probabilities of an artifact through the runtime that scores it in convert's report:
shared by the report, the weight-granularity and activation-type choices and fine-tuning."""

from pathlib import Path

import numpy as np

from edgeship.backend_registry import primary_backend


def predict(artifact_path: Path, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities of an artifact through its format's primary backend (the registry's
    BackendEntry.primary; validate covers the rest)."""
    from edgeship.backend_registry import open_backend

    backend_name = primary_backend(artifact_path)
    outputs = []
    with open_backend(backend_name, artifact_path) as backend:
        for start in range(0, len(images), batch_size):
            outputs.append(backend.infer(images[start:start + batch_size]))
    return np.concatenate(outputs)
