"""Firmware sources with TFLite Micro's figures: `edgeship codegen` and `edgeship embed`.

The writers live in convert (edgeship.convert.codegen, edgeship.convert.embed) and know no
runtime; what they embed from TFLite Micro (the expected outputs of the sample images, the
arena size) is measured here, the layer above convert and runtime, and handed to them.
"""

from pathlib import Path

import numpy as np

from edgeship.convert.codegen import CodegenConfig, CodegenResult, lower_graph
from edgeship.convert.codegen import generate_c as write_generated_c
from edgeship.convert.embed import EmbedConfig, EmbedResult
from edgeship.convert.embed import embed_model as write_embedded_model
from edgeship.convert.firmware_sources import Samples, random_inputs, run_directory_dataset
from edgeship.errors import UserInputError
from edgeship.runtime.backends import open_backend
from edgeship.tflite_graph import read_graph

__all__ = ["CodegenConfig", "EmbedConfig", "collect_samples", "embed_model", "generate_c",
           "measure_tflm_arena"]


def collect_samples(model_path: Path, count: int, images: np.ndarray | None = None,
                    labels: np.ndarray | None = None, seed: int = 0) -> Samples:
    """count test images as the model takes them, with TFLite Micro's outputs (the model's
    I/O types: int8, int16 for a 16x8 model, uint8, or float32).

    Images come from the caller, else from the test split of the dataset recorded in the
    run directory's manifest (class-balanced, seeded); a model outside a run directory gets
    seeded random inputs of its input type, labelled -1 (float32 ones over the range its
    input QUANTIZE maps: firmware_sources.random_inputs).
    """
    with open_backend("tflm", model_path) as backend:
        info = backend.inputs()[0]
        if images is not None:
            source = "caller-provided images"
            images = np.asarray(images)[:count]
            labels = (np.asarray(labels)[:count] if labels is not None
                      else np.full(len(images), -1))
        else:
            dataset_entry = run_directory_dataset(model_path)
            if dataset_entry is not None:
                from edgeship.train.datasets import DatasetSpec, class_balanced_indices
                from edgeship.train.stage_data import close_dataset, open_stage_dataset

                # a streamed run: only the chosen images are decoded
                dataset = open_stage_dataset(DatasetSpec.from_dict(dataset_entry["spec"]),
                                             run_dir=Path(model_path).parent,
                                             streamed=bool(dataset_entry.get("streamed")))
                chosen = class_balanced_indices(dataset.y_test, min(count, len(dataset.y_test)),
                                                seed)
                images, labels = dataset.x_test[chosen], dataset.y_test[chosen]
                close_dataset(dataset)
                source = f"test split of {dataset.spec.name}"
            else:
                labels = np.full(count, -1)
                source = f"random {info.dtype} inputs (the model is not in a run directory)"
        dtype = np.dtype(info.dtype)
        if images is None:
            raw = random_inputs(read_graph(Path(model_path).read_bytes()), count, seed)
        elif np.asarray(images).dtype == dtype:
            raw = np.asarray(images, dtype)
        else:
            shape = tuple(info.shape[1:])
            raw = info.quantize(np.asarray(images, np.float32).reshape((len(images),) + shape))
        expected = backend.infer_raw(raw)
    return Samples(inputs=raw, labels=np.asarray(labels, np.int64).reshape(-1),
                   expected=np.asarray(expected).reshape(len(raw), -1), source=source)


def measure_tflm_arena(model_path: Path) -> dict:
    """TFLite Micro's RecordingMicroAllocator figures for the model after one invoke."""
    with open_backend("tflm", model_path) as backend:
        usage = backend.arena_usage()
    if "total_bytes" not in usage:
        raise UserInputError(f"TFLite Micro did not report arena usage for {model_path}")
    return usage


def _samples(config, sample_images, sample_labels) -> Samples | None:
    if not config.samples:
        return None
    model_path = Path(config.model)
    if not model_path.is_file():
        raise UserInputError(f"model {model_path} does not exist")
    return collect_samples(model_path, config.samples, sample_images, sample_labels, config.seed)


def generate_c(config: CodegenConfig, sample_images: np.ndarray | None = None,
               sample_labels: np.ndarray | None = None) -> CodegenResult:
    """`edgeship codegen`: standalone C for an int8 .tflite, with TFLite Micro's sample outputs.

    Args:
        config: the model, output folder, symbol prefix, kernel variant and sample count.
        sample_images: images to embed instead of the run directory's test split (float
            images are quantized with the model's input scale; int8 ones are used as they are).
        sample_labels: their labels, if known.

    Returns:
        The files written and the footprint of the generated code.
    """
    model_path = Path(config.model)
    if config.samples and model_path.is_file():
        lower_graph(read_graph(model_path.read_bytes()))  # refuse the model before running it
    return write_generated_c(config, _samples(config, sample_images, sample_labels))


def embed_model(config: EmbedConfig, sample_images: np.ndarray | None = None,
                sample_labels: np.ndarray | None = None) -> EmbedResult:
    """`edgeship embed`: TFLite Micro firmware sources, with the arena TFLite Micro measured.

    Args:
        config: the model, output folder, name and sample count.
        sample_images: images to embed instead of the run directory's test split.
        sample_labels: their labels, if known.

    Returns:
        The files written and the footprint (model bytes, arena bytes, ops).
    """
    model_path = Path(config.model)
    if not model_path.is_file():
        raise UserInputError(f"model {model_path} does not exist")
    return write_embedded_model(config, measure_tflm_arena(model_path),
                                _samples(config, sample_images, sample_labels))
