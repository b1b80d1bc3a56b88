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


# TensorFlow threads per op while training and fine-tuning (`--threads`). Fixed, not the
# machine's core count: TensorFlow splits a kernel's work by its thread count, so with op
# determinism on, one seed trains the same weights only at one thread count (lenet5 on
# mnist5k, measured: 1, 2, 3, 4, 8 and 16 threads each gave different weights, and 2 threads
# on one core the same as on two).
TRAINING_THREADS = 2


def pin_training_threads(threads: int) -> int:
    """Set TensorFlow's per-op thread count before it first runs; return the count in force.

    Args:
        threads: threads per op; 0 leaves TensorFlow's default (every core).

    Returns:
        The intra-op thread count TensorFlow will use (0: its default). It differs from
        `threads` when TensorFlow already ran in this process with another setting (a
        notebook, the API after a user's own model), which cannot be changed any more.
    """
    tf, _ = import_tf_keras()
    if threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already initialised with another count
            pass
    return int(tf.config.threading.get_intra_op_parallelism_threads())
