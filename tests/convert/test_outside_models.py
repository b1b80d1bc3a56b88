"""Codegen on the outside set: .tflite files nobody here wrote, as shipped, bit-exact with
TFLite Micro in QEMU through the judged commands (`edgeship codegen MODEL --out DIR --kernels
auto --target cortex-m7 --samples 4`, then `make -C firmware_examples/cortex_m_qemu run
BOARD=an500 GENERATED=DIR`).

The set is tests/data/outside_models/manifest.json; the files live outside the repository
($EDGESHIP_OUTSIDE_MODELS, tests/data/outside_models/, ../shared/models/outside_models/ or, for
the MLPerf Tiny four, ../shared/models/mlperf_tiny/), each checked against its sha256; a test
skips, saying where the file comes from, when it is absent. Every model is expected to go
through: a model codegen refuses fails here with codegen's own error line. The default suite
takes the files under 100 KiB on the Cortex-M7; the rest, and every model on the M4 and M33,
are `slow`. The CLI runs in a child process, so a runtime that aborts fails one test, not the
suite.
"""

import shutil

import pytest

from benchmarks.bench_coverage import (
    BOARDS,
    SAMPLES,
    codegen,
    error_line,
    exit_text,
    load_manifest,
    locate,
    run_in_qemu,
)

# The default suite stays well under a minute on a 2-core machine with these.
DEFAULT_SUITE_BYTES = 100 * 1024
JUDGED_BOARD = "an500"
# Models codegen refuses by name (exit 2, one line), with the text that line must hold:
# an Arm Ethos-U NPU's custom op has no Cortex-M kernel anywhere (its command stream runs on
# the NPU).
REFUSED = {"tflm_person_detect_vela": "ethos-u"}

needs_arm = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "make")),
    reason="needs arm-none-eabi-gcc, qemu-system-arm and make (scripts/setup.sh installs them)")

MODELS = {model.name: model for model in load_manifest()}


def _params(small: bool) -> list:
    params = []
    for model in MODELS.values():
        if model.name in REFUSED or (model.bytes <= DEFAULT_SUITE_BYTES) != small:
            continue
        path, why = locate(model)
        marks = [pytest.mark.skipif(path is None, reason=f"{model.name}: {why}")]
        params.append(pytest.param(model.name, marks=marks if small else
                                   [*marks, pytest.mark.slow]))
    return params


class Generated:
    """Each model's C, generated once per module by the CLI (a failure is kept, not retried)."""

    def __init__(self, folder):
        self.folder = folder
        self._done = {}

    def get(self, name: str):
        """The folder of the model's C; fails with codegen's error line (or signal) if none."""
        if name not in self._done:
            path, why = locate(MODELS[name])
            assert path is not None, why
            out = self.folder / name
            completed = codegen(path, out)
            self._done[name] = (out, completed)
        out, completed = self._done[name]
        if completed.returncode != 0:
            pytest.fail(f"edgeship codegen refuses {name} ({exit_text(completed)}): "
                        f"{error_line(completed)}")
        return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Generated:
    return Generated(tmp_path_factory.mktemp("outside_models"))


def _assert_matches_in_qemu(generated: Generated, name: str, board: str) -> None:
    out = generated.get(name)
    completed = run_in_qemu(out, board, generated.folder / "build" / f"{name}_{board}")
    assert completed.returncode == 0 and f"matches: {SAMPLES}/{SAMPLES}" in completed.stdout, (
        f"{name} on {board}: {exit_text(completed)}\n{completed.stdout[-2000:]}"
        f"{completed.stderr[-2000:]}")
    assert completed.stdout.count("outputs match") == SAMPLES


def test_manifest_names_each_file_once_with_its_source_and_licence():
    models = load_manifest()
    assert len({model.name for model in models}) == len(models) >= 15
    for model in models:
        assert model.file == f"{model.name}.tflite"
        assert len(model.sha256) == 64 and len(model.commit) == 40 and model.bytes > 0
        assert model.licence in ("Apache-2.0", "MIT"), model


@needs_arm
@pytest.mark.parametrize("name", _params(small=True))
def test_small_outside_model_is_bit_exact_on_cortex_m7(generated, name):
    _assert_matches_in_qemu(generated, name, JUDGED_BOARD)


@needs_arm
@pytest.mark.parametrize("name", _params(small=False))
def test_larger_outside_model_is_bit_exact_on_cortex_m7(generated, name):
    _assert_matches_in_qemu(generated, name, JUDGED_BOARD)


@needs_arm
@pytest.mark.slow
@pytest.mark.parametrize("board", [board for board in BOARDS if board != JUDGED_BOARD])
@pytest.mark.parametrize("name", [*_params(small=True), *_params(small=False)])
def test_outside_model_is_bit_exact_on_cortex_m4_and_m33(generated, name, board):
    _assert_matches_in_qemu(generated, name, board)


@pytest.mark.parametrize("name", list(REFUSED))
def test_model_beyond_codegen_is_refused_by_name(name, tmp_path):
    """An op or a form codegen has no code for: one line naming it (exit 2), never a crash."""
    path, why = locate(MODELS[name])
    if path is None:
        pytest.skip(f"{name}: {why}")
    completed = codegen(path, tmp_path / "out")
    assert completed.returncode == 2, exit_text(completed)
    assert REFUSED[name].lower() in error_line(completed).lower(), error_line(completed)
