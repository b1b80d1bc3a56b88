"""The float tf_keras model: the reference every other backend is compared with."""

from pathlib import Path

import numpy as np

from edgeship.deps import import_tf_keras
from edgeship.errors import UserInputError
from edgeship.runtime.backends import Backend, TensorInfo, check_options

_OPTIONS = ("threads", "device", "batch_size")


def open_backend(artifact_path: Path, **options) -> "KerasBackend":
    check_options("keras", options, _OPTIONS)
    return KerasBackend(Path(artifact_path), threads=options.get("threads", 1),
                        device=options.get("device", "cpu"),
                        batch_size=options.get("batch_size", 256))


class KerasBackend(Backend):
    def __init__(self, artifact_path: Path, threads: int = 1, device: str = "cpu",
                 batch_size: int = 256):
        tf, tf_keras = import_tf_keras()
        gpus = tf.config.list_physical_devices("GPU")
        if device == "gpu" and not gpus:
            raise UserInputError("--device gpu: TensorFlow sees no GPU on this machine")
        self.artifact_path = artifact_path
        self.batch_size = batch_size
        self.device_name = "/GPU:0" if device == "gpu" else "/CPU:0"
        self._tf = tf
        try:
            # Thread pools can only be set before TensorFlow first runs an op.
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass
        try:
            self._model = tf_keras.models.load_model(artifact_path, compile=False)
        except Exception as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise UserInputError(f"cannot load Keras model {artifact_path} with tf_keras: "
                                 f"{first_line}") from error
        if len(self._model.inputs) != 1 or len(self._model.outputs) != 1:
            raise UserInputError(f"{artifact_path.name}: keras backend supports classifiers "
                                 "with one input and one output")
        self._inputs = [_tensor_info(self._model.inputs[0])]
        self._outputs = [_tensor_info(self._model.outputs[0])]
        self._call = tf.function(lambda batch: self._model(batch, training=False),
                                 reduce_retracing=True)

    def infer_raw(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        with self._tf.device(self.device_name):
            for start in range(0, len(batch), self.batch_size):
                chunk = self._tf.convert_to_tensor(batch[start:start + self.batch_size])
                outputs.append(self._call(chunk).numpy())
        return np.concatenate(outputs).astype(np.float32)

    def details(self) -> dict:
        return {"device": self.device_name}

    def close(self) -> None:
        self._model = None
        self._call = None


def _tensor_info(tensor) -> TensorInfo:
    shape = tuple(-1 if side is None else int(side) for side in tensor.shape)
    return TensorInfo(name=tensor.name, shape=shape, dtype=tensor.dtype.name)
