"""Every kernel variant (portable, dsp, cmsis-nn) bit-exact with TFLite Micro on emulated
Cortex-M boards (QEMU, firmware_examples/cortex_m_qemu): the zoo models and the four MLPerf
Tiny models on the Cortex-M4 (MPS2 AN386), and a smaller matrix (mobilenet_v2, which adds ADD
and a 3-channel input, and the MLPerf KWS model) on the Cortex-M33 (AN505), M7 (AN500) and
M55 (AN547). On the host, the same C of the MLPerf Tiny models (dsp's plain-C build, CMSIS-NN's
plain C) is checked on their logits, where a final softmax cannot hide a differing quantum.

Each model x variant is generated once and built for every board it runs on; samples are the
zoo models' test images, or seeded random int8 inputs for the MLPerf models, with TFLite
Micro's outputs embedded. The MLPerf models live outside the repository
($EDGESHIP_MLPERF_TINY or ../shared/models/mlperf_tiny) and CMSIS-NN too ($EDGESHIP_CMSIS_NN or
../shared/third_party/cmsis-nn): their tests skip, saying so, without them.
"""

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeship.firmware import CodegenConfig, collect_samples, generate_c
from edgeship.tflite_graph import read_graph
from tests.convert.conftest import CODEGEN_MODEL_NAMES, without_final_softmax
from tests.convert.test_codegen_cmsis_nn import CMSIS_NN, needs_cmsis_nn
from tests.helpers import REPO

QEMU_EXAMPLE = REPO / "firmware_examples" / "cortex_m_qemu"
MLPERF_TINY = Path(os.environ.get("EDGESHIP_MLPERF_TINY",
                                  REPO.parent / "shared" / "models" / "mlperf_tiny"))
MLPERF_MODELS = {"kws": "kws_ref_model.tflite", "vww": "vww_96_int8.tflite",
                 "resnet8": "pretrainedResnet_quant.tflite", "ad": "ad01_int8.tflite"}
# BOARD= of the example -> the core named in the program's banner.
BOARD_CORES = {"an386": "Cortex-M4", "an505": "Cortex-M33", "an500": "Cortex-M7",
               "an547": "Cortex-M55"}
SMALL_MATRIX_MODELS = ("mobilenet_v2", "kws")
SAMPLES = 3
HOST_SAMPLES = 8
# The names each variant gives its kernels in CodegenResult.op_records.
KERNEL_PREFIXES = {"portable": "", "dsp": "dsp_", "cmsis-nn": "cmsis_"}

needs_arm = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("arm-none-eabi-gcc", "arm-none-eabi-objdump",
                                            "qemu-system-arm", "make")),
    reason="needs arm-none-eabi-gcc, qemu-system-arm and make (scripts/setup.sh installs them)")
needs_host_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no host gcc")


def _needs_mlperf(name: str) -> list:
    path = MLPERF_TINY / MLPERF_MODELS[name]
    return [pytest.mark.skipif(not path.is_file(),
                               reason=f"no MLPerf Tiny model at {path} (set EDGESHIP_MLPERF_TINY)")]


def _model_params(names) -> list:
    return [pytest.param(name, marks=_needs_mlperf(name) if name in MLPERF_MODELS else [])
            for name in names]


VARIANTS = [pytest.param("portable"), pytest.param("dsp"),
            pytest.param("cmsis-nn", marks=needs_cmsis_nn)]
M4_MODELS = _model_params((*CODEGEN_MODEL_NAMES, *MLPERF_MODELS))
SMALL_MATRIX = _model_params(SMALL_MATRIX_MODELS)


class GeneratedModels:
    """Generates each model x variant once per module: samples with TFLite Micro's outputs,
    the C, and a CMSIS-NN object folder per board shared by every build on that board."""

    def __init__(self, request, folder: Path):
        self._request = request
        self.folder = folder
        self._samples = {}
        self._generated = {}

    def samples(self, name: str):
        if name not in self._samples:
            if name in MLPERF_MODELS:
                path, images, labels = MLPERF_TINY / MLPERF_MODELS[name], None, None
            else:
                model = self._request.getfixturevalue("codegen_models")[name]
                path, images, labels = model.path, model.images, model.labels
            samples = collect_samples(path, SAMPLES, images, labels, seed=0)
            # Different inputs must give different outputs, or a match proves little.
            assert len({row.tobytes() for row in samples.expected}) > 1, name
            self._samples[name] = (path, samples)
        return self._samples[name]

    def generate(self, name: str, kernels: str):
        """(folder of the generated C, CodegenResult) for the model with that variant."""
        key = (name, kernels)
        if key not in self._generated:
            path, samples = self.samples(name)
            out = self.folder / f"{name}_{kernels}"
            result = generate_c(
                CodegenConfig(model=str(path), out=str(out), kernels=kernels, samples=SAMPLES,
                              cmsis_nn=str(CMSIS_NN) if kernels == "cmsis-nn" else None),
                sample_images=samples.inputs, sample_labels=samples.labels)
            used = [record.kernel for record in result.op_records]
            assert any(kernel.startswith(KERNEL_PREFIXES[kernels]) for kernel in used), used
            self._generated[key] = (out, result)
        return self._generated[key]


@pytest.fixture(scope="module")
def generated_models(request, tmp_path_factory) -> GeneratedModels:
    return GeneratedModels(request, tmp_path_factory.mktemp("codegen_qemu"))


def _run_on_board(generated: Path, board: str, build: Path,
                  library_build: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-j2", "-C", str(QEMU_EXAMPLE), "run", f"BOARD={board}",
         f"GENERATED={generated}", f"BUILD={build}", f"CMSIS_NN={CMSIS_NN}",
         f"CMSIS_NN_BUILD={library_build}"],
        check=False, capture_output=True, text=True, timeout=300)


def _assert_bit_exact_on_board(generated_models, name: str, kernels: str, board: str) -> None:
    generated, _ = generated_models.generate(name, kernels)
    build = generated_models.folder / "build" / f"{name}_{kernels}_{board}"
    completed = _run_on_board(generated, board, build,
                              generated_models.folder / "build" / f"cmsis-nn_{board}")
    differing = [line for line in completed.stdout.splitlines() if "OUTPUTS DIFFER" in line]
    assert completed.returncode == 0 and not differing, (
        f"{name} {kernels} on {board}: exit {completed.returncode}\n{differing}\n"
        f"{completed.stdout[-2000:]}{completed.stderr[-3000:]}")
    assert f"edgeship codegen on {BOARD_CORES[board]} (QEMU " in completed.stdout
    assert f"matches: {SAMPLES}/{SAMPLES}" in completed.stdout
    assert completed.stdout.count("outputs match") == SAMPLES
    if kernels == "dsp":  # the ACLE build, not the plain-C fallback, is what ran
        disassembly = subprocess.run(["arm-none-eabi-objdump", "-d", str(build / "model.o")],
                                     check=True, capture_output=True, text=True).stdout
        assert re.search(r"\s(smlad|sxtb16)\s", disassembly), f"{name}: no SIMD instruction"


@needs_arm
@pytest.mark.parametrize("kernels", VARIANTS)
@pytest.mark.parametrize("name", M4_MODELS)
def test_variant_is_bit_exact_on_cortex_m4(generated_models, name, kernels):
    _assert_bit_exact_on_board(generated_models, name, kernels, "an386")


@needs_arm
@pytest.mark.parametrize("board", ("an505", "an500", "an547"))
@pytest.mark.parametrize("kernels", VARIANTS)
@pytest.mark.parametrize("name", SMALL_MATRIX)
def test_variant_is_bit_exact_on_cortex_m33_m7_and_m55(generated_models, name, kernels, board):
    _assert_bit_exact_on_board(generated_models, name, kernels, board)


@needs_arm
def test_unknown_board_is_one_line_naming_the_boards(tmp_path):
    completed = _run_on_board(tmp_path, "an999", tmp_path / "build", tmp_path / "lib")
    assert completed.returncode != 0
    assert "unknown BOARD=an999; choose an386 (Cortex-M4)" in completed.stderr
    assert not (tmp_path / "build").exists()


def _logits_model(name: str, folder: Path) -> Path:
    """The MLPerf model, up to its logits when it ends in a softmax."""
    path = MLPERF_TINY / MLPERF_MODELS[name]
    if read_graph(path.read_bytes()).operators[-1].name != "SOFTMAX":
        return path
    return without_final_softmax(path, folder / f"{name}_logits.tflite")


@needs_host_gcc
@pytest.mark.parametrize("kernels", VARIANTS)
@pytest.mark.parametrize("name", _model_params(MLPERF_MODELS))
def test_mlperf_tiny_logits_are_bit_exact_on_the_host(name, kernels, tmp_path):
    """dsp compiles its plain-C arithmetic here and CMSIS-NN its plain-C paths."""
    model = _logits_model(name, tmp_path)
    samples = collect_samples(model, HOST_SAMPLES, seed=1)
    result = generate_c(CodegenConfig(
        model=str(model), out=str(tmp_path / "c"), kernels=kernels,
        cmsis_nn=str(CMSIS_NN) if kernels == "cmsis-nn" else None))
    library = tmp_path / "libmodel.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-std=c99", "-Wall", "-Werror",
                    *(f"-I{folder}" for folder in result.include_dirs),
                    str(tmp_path / "c" / "model.c"), *map(str, result.c_sources),
                    "-o", str(library)], check=True)
    run = ctypes.CDLL(str(library)).model_run
    run.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
    inputs = np.ascontiguousarray(samples.inputs.reshape(HOST_SAMPLES, -1))
    outputs = np.zeros_like(samples.expected)
    for image, output in zip(inputs, outputs, strict=True):
        assert run(image.ctypes.data, output.ctypes.data) == 0
    np.testing.assert_array_equal(outputs, samples.expected)
    assert len({row.tobytes() for row in samples.expected}) > HOST_SAMPLES // 2
