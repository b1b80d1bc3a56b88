from tests.conftest import run_cli


def test_train_unknown_model_exits_2_and_lists_models(tmp_path):
    result = run_cli("train", "--model", "nope", "--dataset", "mnist5k", "--out", tmp_path / "r")
    assert result.returncode == 2
    assert "valid models: simple_cnn, keras_cnn, lenet5, mlp, dscnn, mobilenet_v2" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_train_unknown_dataset_exits_2(tmp_path):
    result = run_cli("train", "--model", "lenet5", "--dataset", "cifar", "--out", tmp_path / "r")
    assert result.returncode == 2
    assert "unknown dataset 'cifar'" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_input_too_small_exits_2(tmp_path):
    result = run_cli("train", "--model", "lenet5", "--dataset", "digits", "--out", tmp_path / "r")
    assert result.returncode == 2
    assert "too small for lenet5" in result.stderr.strip().splitlines()[-1]


def test_train_bad_flag_value_exits_2(tmp_path):
    result = run_cli("train", "--model", "lenet5", "--dataset", "digits", "--epochs", "0",
                     "--out", tmp_path / "r")
    assert result.returncode == 2
    assert "epochs must be >= 1" in result.stderr


def test_train_success_through_subprocess(tmp_path):
    result = run_cli("train", "--model", "simple_cnn", "--dataset", "digits", "--epochs", "2",
                     "--out", tmp_path / "r")
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.6
    assert "Epoch 1/2" in result.stdout
    for name in ("model.keras", "history.json", "training_curves.png", "manifest.json"):
        assert (tmp_path / "r" / name).stat().st_size > 0
