"""edgeship: a Keras CNN from training to a validated int8 model on an MCU or a phone.

tensorflow-model-optimization only works with Keras 2, so the one import-time side effect
allowed in this package is asking TensorFlow to use tf_keras before it is first imported.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"

# The Python API (edgeship/api.py), loaded on first use so `import edgeship` stays light.
# `edgeship.train`, `edgeship.convert`, `edgeship.inspect` and `edgeship.profile` are the
# packages/modules of those stages, so their functions are only `edgeship.api.<name>`; the
# other commands' functions are here too under their own names.
_API = ("validate", "bench", "codegen", "embed", "pipeline", "serve_demo", "tune", "load_data",
        "dataset_class_names", "Result", "ConvertResult", "api")


def __getattr__(name: str):
    import importlib

    if name == "api":
        return importlib.import_module("edgeship.api")
    if name in _API:
        return getattr(importlib.import_module("edgeship.api"), name)
    if name in ("UserInputError", "CheckFailedError", "ToolFailureError", "EdgeshipError"):
        return getattr(importlib.import_module("edgeship.errors"), name)
    raise AttributeError(f"module 'edgeship' has no attribute {name!r}")
