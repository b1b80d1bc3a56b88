"""Class probabilities of an artifact through the runtime that scores it in convert's report:
shared by the report, the weight-granularity and activation-type choices and fine-tuning."""

from pathlib import Path

import numpy as np

# Which runtime evaluates each artifact format for the report (validate covers the rest).
REPORT_BACKENDS = {".keras": "keras", ".h5": "keras", ".tflite": "litert", ".onnx": "onnxruntime"}


def predict(artifact_path: Path, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities of an artifact through its report backend."""
    from edgeship.backend_registry import open_backend

    backend_name = REPORT_BACKENDS[artifact_path.suffix.lower()]
    outputs = []
    with open_backend(backend_name, artifact_path) as backend:
        for start in range(0, len(images), batch_size):
            outputs.append(backend.infer(images[start:start + batch_size]))
    return np.concatenate(outputs)
