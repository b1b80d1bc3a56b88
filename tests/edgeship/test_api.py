"""The Python API: the README's example runs as written and gives the CLI's numbers."""

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeship
import edgeship.api as api
from edgeship.commands import notebook_data
from edgeship.errors import CheckFailedError, UserInputError
from edgeship.tables import Table

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fashion_mnist_mlp.py"
README = Path(__file__).resolve().parents[2] / "README.md"


def _fashion_mnist_available() -> bool:
    try:
        api.dataset_class_names("fashion_mnist")
    except UserInputError:
        return False
    return True


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """The example script, run as written on a 3,000/1,000-image slice of Fashion-MNIST."""
    if not _fashion_mnist_available():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    folder = tmp_path_factory.mktemp("example")
    original = api.load_data

    def sliced(name, **options):
        (x_train, y_train), (x_test, y_test) = original(name, **options)
        return (x_train[:3000], y_train[:3000]), (x_test[:1000], y_test[:1000])

    patch = pytest.MonkeyPatch()
    patch.setattr(api, "load_data", sliced)
    patch.chdir(folder)
    try:
        namespace = runpy.run_path(str(EXAMPLE), run_name="__main__")
    finally:
        patch.undo()
    return folder, namespace["result"]


def test_readme_shows_the_example_file():
    """The README's "From Python" code is the example file, line for line."""
    readme = README.read_text()
    code = EXAMPLE.read_text().split('"""', 2)[2].strip()
    assert code in readme


def test_example_matches_the_cli(example_run):
    folder, result = example_run
    run_dir = folder / "runs" / "fashion_mlp"
    assert (run_dir / "model_int8.tflite").is_file()
    assert result.drop_pp is not None and abs(result.drop_pp) < 3.0
    rows = {row["file"]: row for row in result.table.records()}
    assert rows["model.keras"]["accuracy"] > 0.7  # 3,000 images, 10 epochs
    assert set(rows) == {"model.keras", "model_float.tflite", "model_int8.tflite"}

    from edgeship.cli import main

    cli_out = folder / "cli"
    code = main(["convert", str(run_dir / "model.keras"), "--int8",
                 "--dataset", f"npz:{run_dir / 'dataset.npz'}", "--out", str(cli_out)])
    assert code == 0
    cli_report = json.loads((cli_out / "convert_report.json").read_text())
    cli_rows = {row["file"]: row for row in cli_report["artifacts"]}
    for name in ("model_float.tflite", "model_int8.tflite"):
        assert cli_rows[name]["accuracy"] == rows[name]["accuracy"]
        assert cli_rows[name]["drop_pp"] == rows[name]["drop_pp"]
        assert cli_rows[name]["bytes"] == rows[name]["bytes"]
    assert (cli_out / "model_int8.tflite").read_bytes() == (run_dir / "model_int8.tflite").read_bytes()


def test_arrays_are_taken_exactly_as_given(example_run):
    """The notebook's preprocessing is kept: no /255 on arrays the user already scaled (they
    read back bit for bit, stored as 8-bit levels), a 2,000-image training sample of them."""
    folder, _ = example_run
    with np.load(folder / "runs" / "fashion_mlp" / "dataset.npz") as stored:
        assert stored["x_test"].dtype == np.uint8 and float(stored["raw_max"]) == 255.0
        assert list(stored["class_names"])[:2] == ["T-shirt/top", "Trouser"]
    from edgeship.train.datasets import load_dataset

    loaded = load_dataset(f"npz:{folder / 'runs' / 'fashion_mlp' / 'dataset.npz'}")
    (x_train, _), (x_test, _) = api.load_data("fashion_mnist")
    assert loaded.x_test.tobytes() == x_test[:1000].tobytes()
    rows = {row.tobytes() for row in x_train[:3000]}
    assert len(loaded.x_train) == 2000
    assert all(row.tobytes() in rows for row in loaded.x_train)


def test_validate_and_codegen_from_python(example_run):
    folder, _ = example_run
    run_dir = folder / "runs" / "fashion_mlp"
    result = edgeship.validate(run_dir, backends="keras,litert,litert-ref", limit=200)
    backends = set(result.table.column("backend"))
    assert {"keras", "litert", "litert-ref"} <= backends
    assert result.paths["parity.json"].is_file()
    generated = edgeship.codegen(run_dir / "model_int8.tflite", folder / "c", name="mlp")
    assert generated.report["arena_bytes"] > 0
    assert (folder / "c" / "mlp.c").is_file()
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (scripts/setup.sh installs it as root)")
    profiled = api.profile(run_dir / "model_int8.tflite", target="cortex-m4",
                           kernels="dsp")
    total = profiled.table.records()[-1]
    assert total["op"] == "total" and total["macs"] == 28 * 28 * 128 + 128 * 10
    assert 0.5 < total["cycles_per_mac"] < 10
    assert profiled.report["output"]  # the emulated output, checked against TFLite Micro there


def test_tf_data_equals_arrays():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    images = rng.random((10, 8, 8, 1), dtype=np.float32)
    labels = rng.integers(0, 3, 10)
    for dataset in (tf.data.Dataset.from_tensor_slices((images, labels)),
                    tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)):
        got_images, got_labels = notebook_data._arrays(dataset, "data")
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_labels, labels)
    got_images, got_labels = notebook_data._arrays(tf.data.Dataset.from_tensor_slices(images[..., 0]), "x")
    np.testing.assert_array_equal(got_images, images)
    assert got_labels is None


def test_errors_are_typed_and_never_exit(tmp_path):
    with pytest.raises(UserInputError, match="unknown option 'qatt' for convert"):
        api.convert("x", qatt=1)
    with pytest.raises(UserInputError, match="out= is required"):
        api.convert(object(), data="mnist5k")
    with pytest.raises(UserInputError, match="must be a Keras model"):
        api.convert(object(), data="mnist5k", out=tmp_path / "x")
    with pytest.raises(UserInputError, match="codegen\\(\\) needs out"):
        api.codegen("model.tflite")
    with pytest.raises(UserInputError, match="takes 1 positional"):
        api.validate(tmp_path, "extra")
    with pytest.raises(UserInputError):
        edgeship.validate(tmp_path)
    with pytest.raises(UserInputError, match="calibration"):
        notebook_data.write_dataset(tmp_path, (np.zeros((2, 4, 4)), np.zeros(2)), None, None)
    assert issubclass(CheckFailedError, edgeship.EdgeshipError)


def test_table_prints_and_converts():
    table = Table.from_records("t", [{"file": "a.tflite", "accuracy": 0.91234, "bytes": 12345},
                                     {"file": "b.onnx", "accuracy": None, "bytes": 7}],
                               ("file", "accuracy", "bytes"))
    text = str(table).splitlines()
    assert text[0] == "t" and text[1].split() == ["file", "accuracy", "bytes"]
    assert text[3].split() == ["a.tflite", "0.9123", "12,345"]
    assert text[4].split() == ["b.onnx", "-", "7"]
    assert "<table>" in table._repr_html_()
    pandas = pytest.importorskip("pandas")
    frame = table.to_pandas()
    assert isinstance(frame, pandas.DataFrame) and list(frame["bytes"]) == [12345, 7]


def test_import_stays_light():
    """`edgeship.convert` is the convert package, not also a function (no module whose class
    is swapped); the API is edgeship.api, and importing it loads no framework."""
    code = ("import sys, types, edgeship, edgeship.convert, edgeship.train, edgeship.inspect; "
            "edgeship.validate; print('tensorflow' in sys.modules, callable(edgeship.api.convert),"
            " type(edgeship.convert) is types.ModuleType, callable(edgeship.convert))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True", "False"]


def test_convert_keeps_no_copy_of_the_users_data_beyond_what_later_stages_read(tmp_path):
    """Fashion-MNIST arrays through the API: the run's dataset.npz holds the test split and a
    2,000-image training sample, exactly as given (uint8 for 8-bit pixels / 255), under 20 MB
    (the whole float32 set was 220 MB); with QAT the whole training split is kept."""
    import numpy as np

    import edgeship
    from edgeship.commands.notebook_data import KEPT_TRAINING_IMAGES
    from edgeship.commands.notebook_data import write_dataset as _write_dataset
    from edgeship.train.datasets import load_dataset

    (x_train, y_train), (x_test, y_test) = edgeship.load_data("fashion_mnist")
    spec = _write_dataset(tmp_path / "plain", ((x_train, y_train), (x_test, y_test)), None,
                          None, fine_tune=False)
    path = tmp_path / "plain" / "dataset.npz"
    assert path.stat().st_size <= 20_000_000
    stored = load_dataset(spec)
    assert stored.x_test.tobytes() == x_test.tobytes()
    assert np.array_equal(stored.y_test, y_test)
    assert len(stored.y_train) == KEPT_TRAINING_IMAGES
    assert set(np.unique(stored.y_train)) == set(np.unique(y_train))  # class-balanced
    rows = {row.tobytes() for row in x_train}
    assert all(row.tobytes() in rows for row in stored.x_train)  # original rows, unchanged
    noisy = x_test[:100] + np.float32(1e-3)  # not 8-bit levels: kept as float32, unchanged
    spec = _write_dataset(tmp_path / "noisy", ((noisy, y_test[:100]), (noisy, y_test[:100])),
                          None, None)
    assert load_dataset(spec).x_test.tobytes() == noisy.tobytes()
    spec = _write_dataset(tmp_path / "qat", ((x_train[:5000], y_train[:5000]),
                                             (x_test[:10], y_test[:10])), None, None,
                          fine_tune=True)
    assert len(load_dataset(spec).y_train) == 5000
