"""edgeship: a Keras CNN from training to a validated int8 model on an MCU or a phone.

tensorflow-model-optimization only works with Keras 2, so the one import-time side effect
allowed in this package is asking TensorFlow to use tf_keras before it is first imported.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"

# The Python API (edgeship/api.py), loaded on first use so `import edgeship` stays light.
# `edgeship.train`, `edgeship.convert`, `edgeship.inspect` and `edgeship.profile` are also the packages/modules of
# those stages; calling them runs the API function of the same name (see `callable_module`).
_API = ("validate", "bench", "codegen", "tune", "load_data", "dataset_class_names", "Result",
        "ConvertResult")
_CALLABLE_MODULES = ("train", "convert", "inspect", "profile")


def __getattr__(name: str):
    import importlib

    if name in _API:
        return getattr(importlib.import_module("edgeship.api"), name)
    if name in _CALLABLE_MODULES:
        return importlib.import_module(f"edgeship.{name}")
    if name in ("UserInputError", "CheckFailedError", "ToolFailureError", "EdgeshipError"):
        return getattr(importlib.import_module("edgeship.errors"), name)
    raise AttributeError(f"module 'edgeship' has no attribute {name!r}")


class _StageModule(__import__("types").ModuleType):
    """A stage's module that, called, runs the API function named in `_edgeship_api`."""

    def __call__(self, *args, **kwargs):
        import importlib

        return getattr(importlib.import_module("edgeship.api"), self._edgeship_api)(*args, **kwargs)


def callable_module(module_name: str, function_name: str) -> None:
    """Makes a stage's module callable as the API function `edgeship.api.<function_name>`.

    `edgeship.convert` is both the convert package and, called, `edgeship.api.convert`:
    Python binds a package's submodules as attributes of their parent, so a plain function of
    the same name could not live beside it.
    """
    import sys

    module = sys.modules[module_name]
    module.__class__ = _StageModule
    module._edgeship_api = function_name
