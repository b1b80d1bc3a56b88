"""Accept models saved by Keras 3: the direct SavedModel path, and a verified tf_keras rebuild.

tensorflow-model-optimization (pruning, QAT) only takes tf_keras models, and tf_keras cannot
load a .keras file written by Keras 3. So a child process (keras3_child.py, without the
legacy-Keras setting) loads the file with Keras 3 and writes its architecture, its weights per
layer, its outputs on real test images and a SavedModel. Post-training int8 converts that
SavedModel directly; pruning, QAT and ONNX need a tf_keras model, which this module rebuilds
layer by layer from the architecture, fills with the same weights, and accepts only when its
outputs equal the original's (max |difference| <= REBUILD_ATOL).
"""

import contextlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeship.deps import import_tf_keras
from edgeship.errors import MissingDependencyError, UserInputError
from edgeship.run_dir import ArtifactKind

REBUILD_ATOL = 1e-5
CHECK_IMAGES = 256
REBUILT_MODEL_NAME = ArtifactKind.REBUILT_KERAS_MODEL.file_name
CHILD_TIMEOUT_S = 900

# Keras 3 layer classes the rebuild maps onto the tf_keras class of the same name.
REBUILDABLE_LAYERS = (
    "InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization",
    "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "ZeroPadding2D", "ReLU", "Activation", "Softmax", "Add", "Concatenate", "Dropout", "Flatten",
    "Reshape", "Rescaling", "Normalization",
)
# Keras 3 weight names that tf_keras spells differently.
WEIGHT_NAME_ALIASES = {"DepthwiseConv2D": {"kernel": "depthwise_kernel"}}
# Options every tf_keras layer accepts through Layer(**kwargs).
_BASE_LAYER_OPTIONS = {"name", "trainable", "dtype", "dynamic", "input_dim", "input_shape",
                       "batch_input_shape", "batch_size", "weights", "activity_regularizer",
                       "autocast"}


def saved_keras_version(model_path: str | os.PathLike) -> str | None:
    """The Keras version recorded in a .keras archive's metadata (or an .h5 file's attributes)."""
    model_path = Path(model_path)
    if zipfile.is_zipfile(model_path):
        try:
            with zipfile.ZipFile(model_path) as archive:
                metadata = json.loads(archive.read("metadata.json"))
        except (KeyError, ValueError, zipfile.BadZipFile):
            return None
        return str(metadata.get("keras_version")) if metadata.get("keras_version") else None
    if model_path.suffix.lower() == ".h5":
        try:
            import h5py

            with h5py.File(model_path, "r") as handle:
                version = handle.attrs.get("keras_version")
        except (ImportError, OSError):
            return None
        return version.decode() if isinstance(version, bytes) else (str(version) if version else None)
    return None


def is_keras3_file(model_path: str | os.PathLike) -> bool:
    """True when the file was written by Keras 3 (tf_keras cannot load it)."""
    version = saved_keras_version(model_path)
    try:
        return version is not None and int(version.split(".")[0]) >= 3
    except ValueError:
        return False


@dataclass(frozen=True)
class Keras3Export:
    """What the Keras 3 child wrote, read back in the tf_keras process.

    Attributes:
        source: the Keras 3 model file.
        keras_version: the Keras version that loaded it in the child.
        model_class: "Sequential", "Functional" or a subclass name.
        input_shapes: each model input's shape (batch dimension None).
        output_shapes: each model output's shape.
        config: the serialized architecture.
        layers: per layer, its name, class and weights (name, array) in Keras 3's order.
        check_images: the real test images the child ran the model on.
        reference_outputs: the Keras 3 model's outputs on check_images (None: shapes differ).
        saved_model_dir: the Keras 3 SavedModel export (the direct post-training path).
    """

    source: Path
    keras_version: str
    model_class: str
    input_shapes: tuple[tuple, ...]
    output_shapes: tuple[tuple, ...]
    config: dict
    layers: tuple[dict, ...]
    check_images: np.ndarray
    reference_outputs: np.ndarray | None
    saved_model_dir: Path
    _work: tempfile.TemporaryDirectory = field(repr=False, compare=False)

    def export_tflite(self, representative_samples: np.ndarray | None = None,
                      io_type: str = "int8", per_tensor_weights: bool = False) -> bytes:
        """TFLite straight from the Keras 3 SavedModel, with export_tflite's int8 settings."""
        from edgeship.convert.tflite import convert_tflite

        tf, _ = import_tf_keras()
        converter = tf.lite.TFLiteConverter.from_saved_model(str(self.saved_model_dir))
        return convert_tflite(converter, representative_samples, io_type, per_tensor_weights)


def export_with_keras3(model_path: str | os.PathLike, check_images: np.ndarray) -> Keras3Export:
    """Run the Keras 3 child on a model file and read what it wrote.

    Args:
        model_path: a .keras (or .h5) file saved by Keras 3.
        check_images: real float32 NHWC test images; the child records the model's outputs
            on them, which the rebuilt model must reproduce.

    Returns:
        The Keras3Export; its temporary folder lives as long as the object.

    Raises:
        MissingDependencyError: the keras 3 package is not installed.
        UserInputError: Keras 3 cannot load or export the model.
    """
    if importlib.util.find_spec("keras") is None:
        raise MissingDependencyError("converting a Keras 3 model needs the keras 3 package; "
                                     "install it with: pip install 'keras>=3'")
    model_path = Path(model_path)
    work = tempfile.TemporaryDirectory(prefix="edgeship-keras3-")
    work_dir = Path(work.name)
    images = np.ascontiguousarray(check_images, dtype=np.float32)
    np.save(work_dir / "images.npy", images)
    environment = {key: value for key, value in os.environ.items() if key != "TF_USE_LEGACY_KERAS"}
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [sys.executable, "-m", "edgeship.convert.keras3_child", str(model_path.resolve()),
               str(work_dir / "images.npy"), str(work_dir / "export")]
    try:
        completed = subprocess.run(command, check=False, capture_output=True, text=True,
                                   env=environment, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise UserInputError(f"loading {model_path.name} with Keras 3 took over "
                             f"{CHILD_TIMEOUT_S} s") from error
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.strip().splitlines() if line.strip()]
        raise UserInputError(lines[-1] if lines else
                             f"the Keras 3 loader exited with {completed.returncode}")
    export_dir = work_dir / "export"
    info = json.loads((export_dir / "info.json").read_text())
    with np.load(export_dir / "weights.npz") as arrays:
        layers = tuple(
            {"name": layer["name"], "class_name": layer["class_name"],
             "weights": [(weight["name"], arrays[f"{layer_index}/{weight_index}"])
                         for weight_index, weight in enumerate(layer["weights"])]}
            for layer_index, layer in enumerate(info["layers"]))
    outputs_path = export_dir / "outputs.npy"
    return Keras3Export(
        source=model_path, keras_version=info["keras_version"], model_class=info["class_name"],
        input_shapes=tuple(tuple(shape) for shape in info["inputs"]),
        output_shapes=tuple(tuple(shape) for shape in info["outputs"]),
        config=json.loads((export_dir / "config.json").read_text()), layers=layers,
        check_images=images,
        reference_outputs=np.load(outputs_path) if outputs_path.is_file() else None,
        saved_model_dir=export_dir / "saved_model", _work=work)


@dataclass(frozen=True)
class Rebuild:
    """The outcome of rebuilding a Keras 3 model in tf_keras.

    Attributes:
        model: the verified tf_keras model, or None when the rebuild failed.
        max_abs_difference: max |rebuilt - original| over the check images' outputs.
        error: why the rebuild failed (None when it succeeded).
    """

    model: object | None
    max_abs_difference: float | None
    error: str | None


def rebuild_verified(export: Keras3Export, required: bool) -> Rebuild:
    """Rebuild in tf_keras, copy the weights, and check outputs against the Keras 3 model.

    Args:
        export: what the Keras 3 child wrote.
        required: raise when the rebuild fails (pruning, QAT and ONNX need it); otherwise
            return the failure so post-training int8 goes the direct SavedModel way.

    Returns:
        The Rebuild (model None and an error message when it failed and was not required).

    Raises:
        UserInputError: the rebuild failed or differs from the original, and was required.
    """
    try:
        model = rebuild_model(export)
        difference = max_output_difference(model, export)
        if difference > REBUILD_ATOL:
            raise UserInputError(
                f"the tf_keras rebuild of {export.source.name} differs from the Keras 3 model by "
                f"up to {difference:.3g} on {len(export.check_images)} test images (allowed "
                f"{REBUILD_ATOL:g})")
    except UserInputError as error:
        if required:
            raise UserInputError(f"{error} (pruning, QAT and ONNX need a tf_keras model; "
                                 "plain --int8 works without the rebuild)") from error
        return Rebuild(model=None, max_abs_difference=None, error=str(error))
    return Rebuild(model=model, max_abs_difference=difference, error=None)


def max_output_difference(model, export: Keras3Export) -> float:
    """Max |difference| between the rebuilt model's outputs and the Keras 3 outputs."""
    if export.reference_outputs is None:
        raise UserInputError(f"{export.source.name} takes {export.input_shapes[0]} inputs; the "
                             f"dataset's images are {export.check_images.shape[1:]}")
    outputs = np.asarray(model(export.check_images, training=False), dtype=np.float64)
    if outputs.shape != export.reference_outputs.shape:
        raise UserInputError(f"the tf_keras rebuild outputs {outputs.shape}, the Keras 3 model "
                             f"{export.reference_outputs.shape}")
    return float(np.max(np.abs(outputs - export.reference_outputs.astype(np.float64))))


def rebuild_model(export: Keras3Export):
    """A tf_keras Sequential or Functional model with the Keras 3 architecture and weights.

    Raises:
        UserInputError: a model class or layer that cannot be rebuilt (named), or weights
            that do not fit.
    """
    _, tf_keras = import_tf_keras()
    config = export.config.get("config", {})
    if export.model_class == "Sequential":
        model = _rebuild_sequential(tf_keras, config, export.source.name)
    elif export.model_class == "Functional":
        model = _rebuild_functional(tf_keras, config, export.source.name)
    else:
        raise UserInputError(f"{export.source.name} is a {export.model_class} model; only "
                             "Sequential and Functional Keras 3 models can be rebuilt in tf_keras")
    _copy_weights(model, export)
    return model


def _rebuild_sequential(tf_keras, config: dict, file_name: str):
    entries = list(config.get("layers", []))
    if entries and entries[0].get("class_name") == "InputLayer":
        input_entry = entries.pop(0)
        batch_shape = input_entry["config"].get("batch_shape")
        input_name = input_entry["config"].get("name")
    else:
        batch_shape = config.get("build_input_shape")
        input_name = None
    if not batch_shape:
        raise UserInputError(f"{file_name}: the Sequential model has no input shape; build it "
                             "with keras.Input(shape=...) before saving")
    model = tf_keras.Sequential(name=config.get("name"))
    model.add(tf_keras.Input(batch_shape=tuple(batch_shape), name=input_name))
    for entry in entries:
        layer = _make_layer(tf_keras, entry, file_name)
        with _naming_layer(entry, file_name):
            model.add(layer)
    return model


def _rebuild_functional(tf_keras, config: dict, file_name: str):
    """Wire the layers along Keras 3's inbound nodes ({"args", "kwargs"} with keras tensors)."""
    produced: dict[tuple[str, int], list] = {}
    pending = list(config.get("layers", []))
    while pending:
        waiting = []
        for entry in pending:
            name = entry.get("name") or entry["config"]["name"]
            if entry.get("class_name") == "InputLayer":
                layer_config = entry["config"]
                produced[(name, 0)] = [tf_keras.Input(
                    batch_shape=tuple(layer_config["batch_shape"]), name=name,
                    dtype=layer_config.get("dtype", "float32"))]
                continue
            nodes = entry.get("inbound_nodes", [])
            if not all(_tensors_ready(node, produced) for node in nodes):
                waiting.append(entry)
                continue
            layer = _make_layer(tf_keras, entry, file_name)
            for node_index, node in enumerate(nodes):
                args = _resolve(node.get("args", []), produced)
                kwargs = {key: value for key, value in _resolve(node.get("kwargs", {}),
                                                                 produced).items()
                          if value is not None}
                with _naming_layer(entry, file_name):
                    outputs = layer(*args, **kwargs)
                produced[(name, node_index)] = list(outputs) if isinstance(
                    outputs, (list, tuple)) else [outputs]
        if len(waiting) == len(pending):
            names = ", ".join(entry.get("name", "?") for entry in waiting)
            raise UserInputError(f"{file_name}: cannot wire the layers {names} (their inputs are "
                                 "never produced)")
        pending = waiting
    inputs = [_history_tensor(history, produced) for history in _histories(config["input_layers"])]
    outputs = [_history_tensor(history, produced)
               for history in _histories(config["output_layers"])]
    return tf_keras.Model(inputs=inputs if len(inputs) > 1 else inputs[0],
                          outputs=outputs if len(outputs) > 1 else outputs[0],
                          name=config.get("name"))


@contextlib.contextmanager
def _naming_layer(entry: dict, file_name: str):
    """Turn a tf_keras failure to call a rebuilt layer into an error naming that layer."""
    try:
        yield
    except (TypeError, ValueError) as error:
        raise UserInputError(
            f"{file_name}: layer {entry.get('name') or entry['config'].get('name')!r} of class "
            f"{entry.get('class_name')} cannot be rebuilt in tf_keras: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else error!r}") from error


def _histories(layers_field: list) -> list:
    """input_layers/output_layers: one [name, node, index] or a list of them."""
    return [layers_field] if layers_field and isinstance(layers_field[0], str) else layers_field


def _history_tensor(history, produced: dict):
    name, node_index, tensor_index = history
    return produced[(name, node_index)][tensor_index]


def _is_keras_tensor(value) -> bool:
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _tensors_ready(value, produced: dict) -> bool:
    if _is_keras_tensor(value):
        name, node_index, _ = value["config"]["keras_history"]
        return (name, node_index) in produced
    if isinstance(value, list):
        return all(_tensors_ready(item, produced) for item in value)
    if isinstance(value, dict):
        return all(_tensors_ready(item, produced) for item in value.values())
    return True


def _resolve(value, produced: dict):
    """Replace Keras 3's serialized keras tensors with the tf_keras tensors already built."""
    if _is_keras_tensor(value):
        return _history_tensor(value["config"]["keras_history"], produced)
    if isinstance(value, list):
        return [_resolve(item, produced) for item in value]
    if isinstance(value, dict):
        return {key: _resolve(item, produced) for key, item in value.items()}
    return value


def _make_layer(tf_keras, entry: dict, file_name: str):
    """One tf_keras layer from a Keras 3 layer entry, with the config translated."""
    class_name = entry.get("class_name")
    name = entry.get("config", {}).get("name") or entry.get("name")
    module = str(entry.get("module") or "")
    if (class_name not in REBUILDABLE_LAYERS or entry.get("registered_name")
            or not module.startswith("keras")):
        raise UserInputError(
            f"{file_name}: layer {name!r} of class {class_name} cannot be rebuilt in tf_keras "
            f"(rebuildable: {', '.join(REBUILDABLE_LAYERS)})")
    layer_class = getattr(tf_keras.layers, class_name)
    layer_config = _translate_config(tf_keras, layer_class, dict(entry["config"]), name, class_name)
    try:
        return layer_class(**layer_config)
    except (TypeError, ValueError) as error:
        raise UserInputError(f"{file_name}: layer {name!r} of class {class_name} cannot be "
                             f"rebuilt in tf_keras: {error}") from error


def _translate_config(tf_keras, layer_class, config: dict, name: str, class_name: str) -> dict:
    """Keras 3 options -> tf_keras ones: dtype policy, initializers, regularizers, unknown keys."""
    accepted = _accepted_options(layer_class)
    translated = {}
    for key, value in config.items():
        where = f"layer {name!r} of class {class_name}"
        if key == "dtype":
            policy = value["config"]["name"] if isinstance(value, dict) else value
            if policy not in (None, "float32"):
                raise UserInputError(f"{where} uses the dtype policy {policy!r}; edgeship rebuilds "
                                     "float32 models")
            translated["dtype"] = "float32"
        elif key.endswith("_initializer"):
            continue  # the weights are copied over, so initial values never matter
        elif key.endswith(("_regularizer", "_constraint")) and value is not None:
            translated[key] = _deserialize_option(tf_keras, key, value, where)
        elif key == "activation" and isinstance(value, dict):
            raise UserInputError(f"{where} has a custom activation {value.get('class_name')!r}")
        elif key in accepted:
            translated[key] = value
        elif value not in (None, False, 0, {}, []):
            raise UserInputError(f"{where}: option {key}={value!r} has no tf_keras equivalent")
    return translated


def _deserialize_option(tf_keras, key: str, value: dict, where: str):
    module = tf_keras.regularizers if key.endswith("_regularizer") else tf_keras.constraints
    try:
        return module.deserialize({"class_name": value["class_name"],
                                   "config": value.get("config", {})})
    except (KeyError, TypeError, ValueError) as error:
        raise UserInputError(f"{where}: {key} {value.get('class_name')!r} has no tf_keras "
                             "equivalent") from error


def _accepted_options(layer_class) -> set[str]:
    """Constructor options along the class's MRO (subclasses pass **kwargs upward)."""
    accepted = set(_BASE_LAYER_OPTIONS)
    for klass in layer_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters
        accepted.update(name for name, parameter in parameters.items()
                        if parameter.kind not in (inspect.Parameter.VAR_KEYWORD,
                                                  inspect.Parameter.VAR_POSITIONAL))
        if not any(parameter.kind == inspect.Parameter.VAR_KEYWORD
                   for parameter in parameters.values()):
            break
    accepted.discard("self")
    return accepted


def _copy_weights(model, export: Keras3Export) -> None:
    """Set each tf_keras layer's weights from the Keras 3 layer of the same name, by weight name."""
    by_name = {layer.name: layer for layer in model.layers}
    for source_layer in export.layers:
        if not source_layer["weights"]:
            continue
        where = f"layer {source_layer['name']!r} of class {source_layer['class_name']}"
        target = by_name.get(source_layer["name"])
        if target is None:
            raise UserInputError(f"{where} has weights but no tf_keras counterpart")
        aliases = WEIGHT_NAME_ALIASES.get(source_layer["class_name"], {})
        source = {aliases.get(weight_name, weight_name): array
                  for weight_name, array in source_layer["weights"]}
        values = []
        for variable in target.weights:
            weight_name = variable.name.split("/")[-1].split(":")[0]
            array = source.pop(weight_name, None)
            if array is None or tuple(array.shape) != tuple(variable.shape):
                raise UserInputError(
                    f"{where}: tf_keras weight {weight_name} {tuple(variable.shape)} has no "
                    f"matching Keras 3 weight (Keras 3 has "
                    f"{[(n, tuple(a.shape)) for n, a in source_layer['weights']]})")
            values.append(array)
        if source:
            raise UserInputError(f"{where}: Keras 3 weights {sorted(source)} have no place in "
                                 "the tf_keras layer")
        target.set_weights(values)


def save_rebuilt(model, path: Path) -> Path:
    """Save the verified rebuild atomically (the keras backend opens it as the reference)."""
    from edgeship.artifacts import save_keras

    return save_keras(model, path)


def describe(export: Keras3Export, rebuild: Rebuild, fine_tuned: bool, onnx: bool) -> dict:
    """The manifest/report entry: which path made which artifact, and the rebuild check."""
    rebuilt = rebuild.model is not None
    return {
        "source": export.source.name, "keras_version": export.keras_version,
        "model_class": export.model_class,
        "tflite_from": "Keras 3 SavedModel export (direct, no rebuild)",
        "fine_tuned_from": "rebuilt tf_keras model" if fine_tuned else None,
        "onnx_from": "rebuilt tf_keras model" if onnx else None,
        "rebuilt_model": REBUILT_MODEL_NAME if rebuilt else None,
        "rebuild_check": {"images": len(export.check_images), "atol": REBUILD_ATOL,
                          "max_abs_difference": rebuild.max_abs_difference, "passed": rebuilt},
        "rebuild_error": rebuild.error,
    }


def render_markdown(entry: dict) -> str:
    """The report's section on a Keras 3 source."""
    check = entry["rebuild_check"]
    lines = ["## Keras 3 source", "",
             (f"`{entry['source']}` was saved by Keras {entry['keras_version']} "
              f"({entry['model_class']}). Float and post-training int8 TFLite come from "
              "its Keras 3 SavedModel export.")]
    if check["passed"]:
        lines.append(f"The tf_keras rebuild `{entry['rebuilt_model']}` matches it on "
                     f"{check['images']} test images (max |difference| "
                     f"{check['max_abs_difference']:.3g} <= {check['atol']:g}); it is the report's "
                     "reference" + (", and pruning/QAT" if entry["fine_tuned_from"] else "")
                     + (" and ONNX" if entry["onnx_from"] else "") + " start from it.")
    else:
        lines.append(f"No tf_keras rebuild ({entry['rebuild_error']}); the reference is the "
                     "float TFLite from the SavedModel.")
    return "\n".join(lines) + "\n"

