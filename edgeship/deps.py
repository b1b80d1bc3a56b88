"""Import heavy or optional frameworks inside the functions that need them."""

import importlib

from edgeship.errors import MissingDependencyError

_PIP_NAMES = {
    "tensorflow": "tensorflow==2.21.*",
    "tf_keras": "tf-keras==2.21.*",
    "tensorflow_model_optimization": "tensorflow-model-optimization==0.8.1",
    "tf2onnx": "tf2onnx",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "ai_edge_litert": "ai-edge-litert",
    "tflite_micro": "tflite-micro",
    "mlxtend": "mlxtend",
    "sklearn": "scikit-learn",
    "matplotlib": "matplotlib",
    "PIL": "pillow",
    "elftools": "pyelftools",
}


def require(module_name: str):
    """Import a module or raise one actionable error naming the pip package.

    Args:
        module_name: the importable name, e.g. "onnxruntime".

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        top = module_name.split(".")[0]
        package = _PIP_NAMES.get(top, top)
        raise MissingDependencyError(
            f"{module_name} is needed for this step but cannot be imported ({error}); "
            f"install it with: pip install '{package}'"
        ) from error


def import_tf_keras():
    """Return (tensorflow, tf_keras) with TensorFlow's Keras pinned to tf_keras."""
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    tensorflow = require("tensorflow")
    tf_keras = require("tf_keras")
    return tensorflow, tf_keras
