"""TFLite Micro's Python interpreter: the kernels a microcontroller runs, on the host.

The interpreter holds one image at a time (batch 1, as on the device), so a batch is looped
over. Its RecordingMicroAllocator reports how many arena bytes the model really used, the
figure to size `tensor_arena` with on the board.
"""

import dataclasses
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from edgeship.runtime.backends import Backend, check_options
from edgeship.runtime.backends.litert import tensor_info

from edgeship.deps import require
from edgeship.errors import UserInputError

_OPTIONS = ("threads", "device", "arena_size")


def open_backend(artifact_path: Path, **options) -> "TFLMBackend":
    check_options("tflm", options, _OPTIONS)
    if options.get("device", "cpu") != "cpu":
        raise UserInputError("tflm runs on the CPU (it emulates a microcontroller); use --device cpu")
    if options.get("threads", 1) != 1:
        raise UserInputError("tflm is single-threaded, as on a microcontroller; use --threads 1")
    return TFLMBackend(Path(artifact_path), arena_size=options.get("arena_size"))


class TFLMBackend(Backend):
    def __init__(self, artifact_path: Path, arena_size: int | None = None):
        runtime = require("tflite_micro").runtime
        self.artifact_path = artifact_path
        model_data = artifact_path.read_bytes()
        # The arena must hold every activation; 10x the model (TFLM's default) is too
        # little for conv nets whose activations outweigh their weights.
        self.arena_size = arena_size or max(len(model_data) * 10, 4 << 20)
        try:
            self._interpreter = runtime.Interpreter.from_bytes(
                model_data, arena_size=self.arena_size)
        except (ValueError, RuntimeError) as error:
            raise UserInputError(f"TFLite Micro cannot load {artifact_path}: {error}") from error
        # The interpreter holds one image; infer_raw loops, so the batch is free (-1).
        self._inputs = [_any_batch(tensor_info(self._interpreter.get_input_details(0)))]
        self._outputs = [_any_batch(tensor_info(self._interpreter.get_output_details(0)))]
        self._arena_report: dict | None = None
        self._invoked = False

    def infer_raw(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        for sample in batch:
            self._interpreter.set_input(sample[np.newaxis], 0)
            self._interpreter.invoke()
            outputs.append(np.array(self._interpreter.get_output(0)).reshape(-1))
        self._invoked = True
        return np.stack(outputs).reshape((len(batch),) + tuple(self._outputs[0].shape[1:]))

    def infer_raw_inputs(self, inputs: list[np.ndarray]) -> np.ndarray:
        for position, value in enumerate(inputs):
            self._interpreter.set_input(value, position)
        self._interpreter.invoke()
        self._invoked = True
        return np.array(self._interpreter.get_output(0))

    def arena_usage(self) -> dict:
        """The RecordingMicroAllocator's figures (bytes), read after the first invoke."""
        if self._arena_report is None:
            if not self._invoked:
                self.infer_raw(np.zeros((1,) + tuple(self._inputs[0].shape[1:]),
                                        dtype=self._inputs[0].dtype))
            self._arena_report = parse_allocations(capture_stderr(self._interpreter.print_allocations))
        return self._arena_report

    def details(self) -> dict:
        return {"kernels": "TFLite Micro", "arena_size": self.arena_size,
                "arena": self.arena_usage()}

    def close(self) -> None:
        self._interpreter = None


def _any_batch(info):
    return dataclasses.replace(info, shape=(-1,) + info.shape[1:])


def capture_stderr(function) -> str:
    """Run function and return what it (C++ included) wrote to file descriptor 2."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            function()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        return captured.read().decode("utf-8", errors="replace")


def parse_allocations(text: str) -> dict:
    """Turn PrintAllocations' lines into numbers.

    The lines read like "[RecordingMicroAllocator] Arena allocation total 2604 bytes" and
    "[RecordingMicroAllocator] 'TfLiteEvalTensor data' used 240 bytes with alignment overhead
    (requested 240 bytes for 20 allocations)".
    """
    report: dict = {}
    for key, pattern in (("total_bytes", r"Arena allocation total (\d+) bytes"),
                         ("head_bytes", r"Arena allocation head (\d+) bytes"),
                         ("tail_bytes", r"Arena allocation tail (\d+) bytes")):
        match = re.search(pattern, text)
        if match:
            report[key] = int(match.group(1))
    for name, used in re.findall(r"'([^']+)' used (\d+) bytes", text):
        report.setdefault("by_kind", {})[name] = int(used)
    return report
