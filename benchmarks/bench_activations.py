"""int8, per-layer mixed (`--activations auto`) and full int16 activations, side by side.

Usage: python benchmarks/bench_activations.py [--epochs 100] [--workdir runs/bench_activations]
    [--skip-zoo] [--print-only]

Cases: scikit-learn's offline tabular sets with raw (unnormalized) features and a Keras
Normalization layer inside the model, the Keras-recommended way to feed raw features
(breast cancer: 30 features from 0.05 to 4254; wine: 13), model Normalization -> Flatten ->
Dense(32, relu) -> Dense(classes) -> Softmax; and one zoo image model (lenet5 on mnist5k)
where int8 is already fine. Each is converted with `--activations int16` and `--activations
auto` (its default bound, 1 pp on training images; no gate, so every case is tabled), and the table gives float, int8, mixed and int16: test-split accuracy
and drop, layers in int16, file bytes, TFLite Micro arena bytes and estimated Cortex-M4 cycles
from `edgeship profile` where the generated C lowers the model (else the op it cannot lower).
Writes the `activations` section of docs/results.md.
"""

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results_doc import machine_line, publish_section
from edgeship.errors import EdgeshipError
from edgeship.reports import markdown_table
from edgeship.run_dir import ArtifactKind

TABULAR = ("breast_cancer", "wine")
PROFILE_TARGET = "cortex-m4"


def tabular_case(name: str, epochs: int, seed: int = 0):
    """(model, ((x_train, y_train), (x_test, y_test))) for a scikit-learn tabular set: raw
    features as (N, 1, F, 1) images, the normalization learnt inside the model."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    from edgeship.deps import import_tf_keras

    _, keras = import_tf_keras()
    features, labels = getattr(datasets, f"load_{name}")(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features.astype(np.float32), labels, test_size=0.3, random_state=seed, stratify=labels)
    images = x_train[:, None, :, None]
    normalization = keras.layers.Normalization(axis=-2)  # per feature; a static graph (no SHAPE)
    normalization.adapt(images)
    classes = int(labels.max()) + 1
    tf.random.set_seed(seed)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((1, features.shape[1], 1)), normalization, keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"), keras.layers.Dense(classes),
        keras.layers.Softmax()])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images, y_train, epochs=epochs, verbose=0, batch_size=32, shuffle=False)
    return model, ((images, y_train), (x_test[:, None, :, None], y_test))


def measure_case(name: str, model, data, out: Path) -> dict:
    """Convert int16 then auto into one folder; the rows of the table for this case."""
    import edgeship

    rows = {}
    options = {"calibration_samples": min(500, len(data[0][0]))} if isinstance(data, tuple) else {}
    int16 = edgeship.api.convert(model, data=data, out=out / "int16", activations="int16", **options)
    auto = edgeship.api.convert(model, data=data, out=out / "auto", activations="auto", **options)
    choice = auto.report["activations"]
    scores = {row["file"]: row for row in auto.report["artifacts"]}
    scores.update({row["file"]: row for row in int16.report["artifacts"]
                   if row["file"] == ArtifactKind.INT16_TFLITE.file_name})
    folders = {ArtifactKind.FLOAT_TFLITE.file_name: out / "auto",
               ArtifactKind.INT8_TFLITE.file_name: out / "auto",
               ArtifactKind.MIXED_TFLITE.file_name: out / "auto",
               ArtifactKind.INT16_TFLITE.file_name: out / "int16"}
    layers = {ArtifactKind.INT8_TFLITE.file_name: 0,
              ArtifactKind.MIXED_TFLITE.file_name: len(choice["int16_layers"]),
              ArtifactKind.INT16_TFLITE.file_name: len(int16.report["activations"]["int16_layers"])}
    for file, folder in folders.items():
        if file not in scores:
            continue
        path = folder / file
        row = {"case": name, "file": file, "accuracy": scores[file]["accuracy"],
               "drop_pp": scores[file]["drop_pp"], "bytes": path.stat().st_size,
               "int16_layers": layers.get(file, "—")}
        if file != ArtifactKind.FLOAT_TFLITE.file_name:
            row["arena_bytes"] = _arena(path)
            row["cycles"] = _cycles(path)
        rows[file] = row
    return {"case": name, "rows": list(rows.values()), "delivered": choice["delivered"],
            "steps": choice["steps"], "reason": choice["reason"]}


def _arena(path: Path) -> int:
    from edgeship.firmware import measure_tflm_arena

    return int(measure_tflm_arena(path)["total_bytes"])


def _cycles(path: Path) -> str:
    """Estimated Cortex-M4 cycles of the generated C, or why there is none."""
    from edgeship.profile.run import ProfileConfig, profile_model

    try:
        report = profile_model(ProfileConfig(model=str(path), target=PROFILE_TARGET))
    except EdgeshipError as error:
        text = str(error).splitlines()[0]
        unsupported = re.search(r"does not support op\(s\) ([^;]+)", text)
        return f"not lowered: {unsupported.group(1)}" if unsupported else f"failed: {text}"
    return f"{report.cycles / 1e6:.3f} M"


def render_section(cases: list[dict]) -> str:
    lines = ["## activations", "",
             "`--activations auto` (bound 1 pp on training images) against int8 and full int16 (16x8) "
             "(python benchmarks/bench_activations.py). Accuracy and drop on the test split; "
             "auto chose its layers on training images. Arena: TFLite Micro's measured bytes; "
             f"cycles: `edgeship profile --target {PROFILE_TARGET}` estimate of the generated C.",
             "", machine_line(), ""]
    table = []
    for case in cases:
        for row in case["rows"]:
            table.append([case["case"], f"`{row['file']}`", f"{row['accuracy'] * 100:.2f}%",
                          f"{row['drop_pp']:+.2f}", str(row["int16_layers"]),
                          f"{row['bytes']:,}",
                          f"{row['arena_bytes']:,}" if "arena_bytes" in row else "—",
                          row.get("cycles", "—")])
    lines += [markdown_table(["case", "file", "top-1", "drop (pp)", "int16 layers", "bytes",
                              "arena bytes", "M4 cycles (est.)"], table), ""]
    for case in cases:
        lines.append(f"- {case['case']}: {case['reason']}.")
        for number, step in enumerate(case["steps"], 1):
            lines.append(f"  - step {number}: {len(step['int16_layers'])} layer(s) in int16, "
                         f"{step['accuracy'] * 100:.2f}% on training images "
                         f"({step['recovered_pp']:+.2f} pp over int8)")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--workdir", default="runs/bench_activations")
    parser.add_argument("--skip-zoo", action="store_true")
    parser.add_argument("--print-only", action="store_true")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    cases = []
    for name in TABULAR:
        model, data = tabular_case(name, args.epochs)
        cases.append(measure_case(name, model, data, workdir / name))
    if not args.skip_zoo:
        from edgeship.train.datasets import DatasetSpec
        from edgeship.train.fit import TrainConfig, train

        trained = train(TrainConfig(model="lenet5", epochs=2, seed=0,
                                    dataset=DatasetSpec(name="mnist5k"),
                                    out=str(workdir / "lenet5" / "trained")))
        cases.append(measure_case("lenet5 mnist5k", Path(trained.run_dir) / "model.keras",
                                  "mnist5k", workdir / "lenet5"))
    section = render_section(cases)
    if args.print_only:
        print(section)
    else:
        publish_section("activations", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
