"""The Keras 3 side of accepting Keras 3 models; runs only in its own child process.

`python -m edgeship.convert.keras3_child MODEL IMAGES.npy WORK_DIR` loads MODEL with Keras 3
(the `keras` package TensorFlow installs) and writes to WORK_DIR what the tf_keras parent
needs, so the Keras 3 loader and the legacy-Keras setting never meet in one interpreter:

- info.json: Keras version, model class, input/output shapes, each layer's class and the
  names and shapes of its weights (in Keras 3's order);
- config.json: the serialized architecture (the .keras archive's config format);
- weights.npz: every layer's weights, keyed "<layer index>/<weight index>";
- outputs.npy: the model's outputs on IMAGES.npy (only when the shapes fit);
- saved_model/: a TF SavedModel exported by Keras 3 (the direct post-training int8 path).

A failure prints one line on stderr and exits 3.
"""

import argparse
import json
import os
import sys
from pathlib import Path

FAILURE_EXIT_CODE = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeship.convert.keras3_child")
    parser.add_argument("model")
    parser.add_argument("images")
    parser.add_argument("work_dir")
    parser.add_argument("--no-saved-model", action="store_true")
    args = parser.parse_args(argv)
    # `import edgeship` asked TensorFlow for tf_keras; this process must get Keras 3, and
    # TensorFlow is not imported yet, so undoing the request here is enough.
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    try:
        export_keras3_model(Path(args.model), Path(args.images), Path(args.work_dir),
                            saved_model=not args.no_saved_model)
    except Keras3ChildError as error:
        print(str(error), file=sys.stderr)
        return FAILURE_EXIT_CODE
    return 0


class Keras3ChildError(Exception):
    """A failure the parent reports to the user as one line."""


def export_keras3_model(model_path: Path, images_path: Path, work_dir: Path,
                        saved_model: bool = True) -> None:
    """Load a model with Keras 3 and write its architecture, weights, outputs and SavedModel."""
    import keras
    import numpy as np

    if int(keras.__version__.split(".")[0]) < 3:
        raise Keras3ChildError(f"the keras package here is {keras.__version__}, not Keras 3")
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as error:  # corrupt archives, custom objects, unknown layers
        raise Keras3ChildError(f"Keras {keras.__version__} cannot load {model_path}: "
                               f"{_first_line(error)}") from error
    work_dir.mkdir(parents=True, exist_ok=True)
    layers = []
    arrays = {}
    for layer_index, layer in enumerate(model.layers):
        weights = []
        for weight_index, variable in enumerate(layer.weights):
            arrays[f"{layer_index}/{weight_index}"] = keras.ops.convert_to_numpy(variable)
            weights.append({"name": variable.name, "shape": list(variable.shape)})
        layers.append({"name": layer.name, "class_name": type(layer).__name__,
                       "weights": weights})
    info = {
        "keras_version": keras.__version__,
        "class_name": type(model).__name__,
        "inputs": [_shape(tensor.shape) for tensor in model.inputs],
        "outputs": [_shape(tensor.shape) for tensor in model.outputs],
        "layers": layers,
    }
    config = keras.saving.serialize_keras_object(model)
    (work_dir / "config.json").write_text(json.dumps(config, default=_plain))
    np.savez(work_dir / "weights.npz", **arrays)
    images = np.load(images_path)
    if len(model.inputs) == 1 and info["inputs"][0][1:] == list(images.shape[1:]):
        outputs = model(images, training=False)
        np.save(work_dir / "outputs.npy", keras.ops.convert_to_numpy(outputs).astype(np.float32))
        if saved_model:
            try:
                model.export(str(work_dir / "saved_model"), format="tf_saved_model",
                             verbose=False)
            except Exception as error:  # export traces the model: unsupported ops land here
                raise Keras3ChildError(f"Keras {keras.__version__} cannot export {model_path.name} "
                                       f"as a SavedModel: {_first_line(error)}") from error
    (work_dir / "info.json").write_text(json.dumps(info))


def _shape(shape) -> list:
    return [None if side is None else int(side) for side in shape]


def _plain(value):
    """JSON fallback for what Keras configs hold besides JSON types (numpy values, tuples)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__} in a Keras config")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
