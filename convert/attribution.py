"""Which layers cost the accuracy: restore one layer at a time to float and measure.

The Keras model is calibrated once (the converter's calibrate-only mode records every
tensor's range); TFLite's MLIR quantizer then quantizes that calibrated model with chosen ops
left in float (`denylisted_nodes`, what TFLite's QuantizationDebugger uses for selective
quantization). Accuracy and output error of "everything int8" against "everything int8 but
this op" on real images is the accuracy that op's quantization costs, measured, not guessed.
The same calibrated model also answers "would per-channel weights help" in one more
quantization. Float input and output are kept, so every variant is scored the same way.
"""

from dataclasses import asdict, dataclass

import numpy as np

from edgeship.deps import import_tf_keras


@dataclass(frozen=True)
class VariantScore:
    """One selectively quantized variant of the model on the evaluation images.

    Attributes:
        variant: "all int8", "per-channel weights", "per-tensor weights" or "float: <op>".
        accuracy: top-1 accuracy.
        recovered_pp: accuracy gained against "all int8" (points; negative: lost).
        output_error: mean total-variation distance of its class probabilities from the
            float model's.
    """

    variant: str
    accuracy: float
    recovered_pp: float
    output_error: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Attribution:
    """The measurement: the all-int8 baseline, one row per restored op, the granularity swap."""

    images: int
    float_accuracy: float
    baseline: VariantScore
    restored: tuple[VariantScore, ...]
    granularity: VariantScore

    def to_dict(self) -> dict:
        return {"images": self.images, "float_accuracy": self.float_accuracy,
                "baseline": self.baseline.to_dict(),
                "restored": [score.to_dict() for score in self.restored],
                "granularity": self.granularity.to_dict()}


def attribute_layers(model, calibration: np.ndarray, images: np.ndarray, labels: np.ndarray,
                     ops: list[str], per_tensor_weights: bool) -> Attribution:
    """Restore each named op to float alone and measure what it recovers.

    Args:
        model: the float tf_keras model.
        calibration: the calibration images convert used.
        images: evaluation images (the test split) with the recorded preprocessing.
        labels: their labels.
        ops: output tensor names of the ops to restore, one at a time (see quantizable_ops).
        per_tensor_weights: the granularity of the delivered file (the baseline's).

    Returns:
        The Attribution.
    """
    import_tf_keras()  # the TF_USE_LEGACY_KERAS guard before TensorFlow loads
    from tensorflow.lite.python import convert as tflite_convert

    from edgeship.convert.granularity import class_probabilities, output_error

    calibrated = calibrate(model, calibration)
    float_outputs = _run(_float_model(model), images)
    probabilities_out = bool(np.allclose(float_outputs.sum(axis=1), 1, atol=1e-3))
    reference = class_probabilities(float_outputs, probabilities_out)
    float_accuracy = float(np.mean(reference.argmax(1) == labels))

    def score(variant: str, disable_per_channel: bool, denylisted: list[str] | None,
              baseline_accuracy: float | None) -> VariantScore:
        data = tflite_convert.mlir_quantize(
            calibrated, disable_per_channel=disable_per_channel, fully_quantize=False,
            denylisted_nodes=denylisted)
        probabilities = class_probabilities(_run(data, images), probabilities_out)
        accuracy = float(np.mean(probabilities.argmax(1) == labels))
        recovered = 0.0 if baseline_accuracy is None else (accuracy - baseline_accuracy) * 100
        return VariantScore(variant=variant, accuracy=accuracy, recovered_pp=round(recovered, 4),
                            output_error=round(output_error(probabilities, reference), 7))

    baseline = score("all int8", per_tensor_weights, None, None)
    restored = tuple(score(f"float: {name}", per_tensor_weights, [name], baseline.accuracy)
                     for name in ops)
    other = "per-channel weights" if per_tensor_weights else "per-tensor weights"
    granularity = score(other, not per_tensor_weights, None, baseline.accuracy)
    return Attribution(images=len(images), float_accuracy=float_accuracy, baseline=baseline,
                       restored=tuple(sorted(restored, key=lambda s: (-s.recovered_pp,
                                                                      s.output_error))),
                       granularity=granularity)


def calibrate(model, calibration: np.ndarray) -> bytes:
    """The float model with every tensor's calibrated range, ready for mlir_quantize."""
    tf, _ = import_tf_keras()
    samples = np.asarray(calibration, np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample[np.newaxis]] for sample in samples)
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # what QuantizationDebugger sets
    return bytes(converter.convert())


def quantizable_ops(calibrated: bytes) -> list:
    """The calibrated model's ops (edgeship.tflite_graph.GraphOp), QUANTIZE/DEQUANTIZE left out;
    an op's `output` name is what attribute_layers restores."""
    from edgeship.tflite_graph import graph_ops

    return graph_ops(calibrated)


def _float_model(model) -> bytes:
    from edgeship.convert.tflite import export_tflite

    return export_tflite(model)


def _run(tflite_bytes: bytes, images: np.ndarray) -> np.ndarray:
    """Float-in, float-out model outputs, one image at a time (reference kernels)."""
    from edgeship.convert.tflite import open_interpreter

    interpreter = open_interpreter(tflite_bytes, reference_kernels=True)
    detail_in, detail_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for image in np.asarray(images, np.float32):
        interpreter.set_tensor(detail_in["index"], image[np.newaxis])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(detail_out["index"])[0].astype(np.float64))
    return np.asarray(rows)
