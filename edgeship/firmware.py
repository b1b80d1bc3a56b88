"""Firmware sources with TFLite Micro's figures: `edgeship codegen` and `edgeship embed`.

The writers live in convert (edgeship.convert.codegen, edgeship.convert.embed) and know no
runtime; what they embed from TFLite Micro (the expected outputs of the sample images, the
arena size, and with `embed --offline-plan` the arena with edgeship's plan and the check that
the plan changes no output) is measured here, the layer above convert and runtime, and handed
to them.
"""

import tempfile
from pathlib import Path

import numpy as np

from edgeship.convert.codegen import CodegenConfig, CodegenResult, lower_graph
from edgeship.convert.codegen import generate_c as write_generated_c
from edgeship.convert.embed import EmbedConfig, EmbedResult
from edgeship.convert.embed import embed_model as write_embedded_model
from edgeship.convert.firmware_sources import Samples, random_inputs, run_directory_dataset
from edgeship.convert.offline_plan import (
    OfflinePlan,
    PlannedModel,
    plan_candidates,
    read_offline_plan,
    with_offline_plan,
)
from edgeship.errors import ToolFailureError, UserInputError
from edgeship.runtime.backends import open_backend
from edgeship.tflite_graph import read_graph

__all__ = ["CodegenConfig", "EmbedConfig", "collect_samples", "embed_model", "generate_c",
           "measure_offline_plan", "measure_tflm_arena"]

OFFLINE_PLAN_CHECKS = 4  # random inputs run with and without the offline plan


def collect_samples(model_path: Path, count: int, images: np.ndarray | None = None,
                    labels: np.ndarray | None = None, seed: int = 0) -> Samples:
    """count test images as the model takes them, with TFLite Micro's outputs (the model's
    I/O types: int8, int16 for a 16x8 model, uint8, or float32).

    Images come from the caller, else from the test split of the dataset recorded in the
    run directory's manifest (class-balanced, seeded); a model outside a run directory gets
    seeded random inputs of its input type, labelled -1 (float32 ones over the range its
    input QUANTIZE maps: firmware_sources.random_inputs).
    """
    graph = read_graph(Path(model_path).read_bytes())
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
                from edgeship.train.datasets import class_balanced_indices
                from edgeship.train.stage_data import close_dataset, open_stage_dataset

                # a streamed run: only the chosen images are decoded
                dataset = open_stage_dataset(dataset_entry.spec, run_dir=Path(model_path).parent,
                                             streamed=dataset_entry.streamed)
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
            raw = random_inputs(graph, count, seed)
        elif np.asarray(images).dtype == dtype:
            raw = np.asarray(images, dtype)
        else:
            shape = tuple(info.shape[1:])
            raw = info.quantize(np.asarray(images, np.float32).reshape((len(images),) + shape))
        expected = run_packed(backend, graph, raw)
    return Samples(inputs=raw, labels=np.asarray(labels, np.int64).reshape(-1),
                   expected=np.asarray(expected).reshape(len(raw), -1), source=source)


def measure_tflm_arena(model_path: Path) -> dict:
    """TFLite Micro's RecordingMicroAllocator figures for the model after one invoke."""
    with open_backend("tflm", model_path) as backend:
        usage = backend.arena_usage()
    if "total_bytes" not in usage:
        raise UserInputError(f"TFLite Micro did not report arena usage for {model_path}")
    return usage


def measure_offline_plan(model_path: Path, checks: int = OFFLINE_PLAN_CHECKS,
                         seed: int = 0) -> PlannedModel:
    """The model with edgeship's offline memory plan, TFLite Micro's arena with it, and the
    check that TFLite Micro computes the same outputs with it as without.

    The smallest plan comes first; where TFLite Micro's head with it is larger than the plan
    (kernels' scratch buffers, placed online, did not fit in its gaps), the other candidate
    layouts are measured too and the smallest arena TFLite Micro reports is kept.

    Args:
        model_path: the .tflite (one TFLite Micro has already loaded).
        checks: seeded random inputs to compare outputs on, bit for bit.
        seed: their seed.

    Raises:
        UserInputError: the file is not a .tflite edgeship can rewrite.
        ToolFailureError: a plan is invalid, TFLite Micro refuses the planned model, or
            its outputs differ with the plan (edgeship's fault, exit 3).
    """
    model_path = Path(model_path)
    data = model_path.read_bytes()
    graph = read_graph(data)
    inputs = random_inputs(graph, checks, seed)
    with open_backend("tflm", model_path) as backend:
        expected = np.asarray(run_packed(backend, graph, inputs))
    best = None
    with tempfile.TemporaryDirectory(prefix="edgeship-offline-plan-") as folder:
        for plan in plan_candidates(data):
            planned = _run_planned(model_path, data, graph, plan, inputs, expected,
                                   Path(folder))
            if (best is None or planned.arena_with_plan["total_bytes"]
                    < best.arena_with_plan["total_bytes"]):
                best = planned
            if planned.arena_with_plan.get("head_bytes") == plan.plan_bytes:
                break  # nothing went after this plan; the later ones are no smaller
    return best


def run_packed(backend, graph, batch: np.ndarray) -> np.ndarray:
    """TFLite Micro's outputs for raw inputs: infer_raw for one input and one output with a
    batch of 1; otherwise each row packs every input (every output) flat, in order, as
    codegen's NAME_run takes and gives them."""
    first = graph.tensors[graph.inputs[0]].shape
    if len(graph.inputs) == 1 and len(graph.outputs) == 1 and (len(first) < 2 or first[0] == 1):
        return backend.infer_raw(batch)
    # Several inputs or outputs, or a fixed batch above 1 (a sample is the whole tensor).
    return backend.infer_packed(batch, [graph.tensors[index].shape for index in graph.inputs],
                                len(graph.outputs))


def _run_planned(model_path: Path, data: bytes, graph, plan: OfflinePlan, inputs: np.ndarray,
                 expected: np.ndarray, folder: Path) -> PlannedModel:
    """One plan written into the model and run by TFLite Micro: its arena, outputs checked."""
    if plan.overlaps():
        raise ToolFailureError(f"edgeship's offline plan for {model_path} puts tensors live "
                               f"at the same time on the same bytes: {plan.overlaps()[:3]}")
    planned = with_offline_plan(data, plan)
    if read_offline_plan(planned) != list(plan.offsets):
        raise ToolFailureError(f"the offline plan written into {model_path.name} does not "
                               "read back")
    planned_path = folder / model_path.name
    planned_path.write_bytes(planned)
    try:
        with open_backend("tflm", planned_path) as backend:
            got = np.asarray(run_packed(backend, graph, inputs))
            usage = backend.arena_usage()
    except UserInputError as error:  # the file is edgeship's, not the user's
        raise ToolFailureError(f"TFLite Micro refused {model_path.name} with edgeship's "
                               f"offline plan: {error}") from error
    if got.shape != expected.shape or not np.array_equal(got.view(np.uint8),
                                                         expected.view(np.uint8)):
        differ = int(np.sum(got != expected)) if got.shape == expected.shape else got.size
        raise ToolFailureError(f"TFLite Micro's outputs for {model_path.name} change with "
                               f"edgeship's offline plan ({differ} of {expected.size} values "
                               f"differ on {len(inputs)} random inputs); not embedding it")
    if "total_bytes" not in usage:
        raise ToolFailureError(f"TFLite Micro did not report arena usage for {model_path.name} "
                               "with the offline plan")
    return PlannedModel(plan=plan, model_data=planned, arena_with_plan=usage,
                        checked_inputs=len(inputs))


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
        config: the model, output folder, name, sample count and offline_plan.
        sample_images: images to embed instead of the run directory's test split.
        sample_labels: their labels, if known.

    Returns:
        The files written and the footprint (model bytes, arena bytes, ops; with
        config.offline_plan, the arenas with and without edgeship's plan).
    """
    model_path = Path(config.model)
    if not model_path.is_file():
        raise UserInputError(f"model {model_path} does not exist")
    if config.samples:
        graph = read_graph(model_path.read_bytes())
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise UserInputError(
                f"embed --samples takes a model with one input and one output; this one has "
                f"{len(graph.inputs)} and {len(graph.outputs)} (embed it without --samples, or "
                "`edgeship codegen --samples`, which packs several into one buffer)")
    arena_usage = measure_tflm_arena(model_path)
    planned = measure_offline_plan(model_path, seed=config.seed) if config.offline_plan else None
    return write_embedded_model(config, arena_usage,
                                _samples(config, sample_images, sample_labels), planned)
