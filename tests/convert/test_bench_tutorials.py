"""benchmarks/bench_tutorials.py on a small slice: one tutorial trained, converted and tabled."""

import numpy as np

from benchmarks.bench_tutorials import TUTORIALS, render_section, run_tutorial
from edgeship.train.datasets import DatasetSpec


def test_mlp_tutorial_on_a_slice_trains_converts_and_tables(tmp_path, mnist5k):
    slice_path = tmp_path / "slice.npz"
    raw = np.rint(mnist5k.x_train[:600, ..., 0] * 255).astype(np.uint8)
    raw_test = np.rint(mnist5k.x_test[:200, ..., 0] * 255).astype(np.uint8)
    np.savez(slice_path, x_train=raw, y_train=mnist5k.y_train[:600], x_test=raw_test,
             y_test=mnist5k.y_test[:200])
    tutorial = next(tutorial for tutorial in TUTORIALS if tutorial.model == "mlp")
    result = run_tutorial(tutorial, DatasetSpec(name=f"npz:{slice_path}"), tmp_path / "run")
    assert result["epochs"] == 10 and result["test_images"] == 200
    assert result["float_accuracy"] > 0.75  # 600 digits, 10 epochs: a trained model, not chance
    assert abs(result["int8_drop_pp"]) < 3.0
    assert result["int8_tflite_bytes"] < 0.4 * result["float_tflite_bytes"]
    section = render_section([result], {})
    assert "Keras Fashion-MNIST MLP" in section and f"{result['int8_drop_pp']:+.2f}" in section
    missed = render_section([dict(result, int8_drop_pp=0.9)], {})
    assert "Targets missed: mlp on npz:" in missed
