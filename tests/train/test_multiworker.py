"""Two MultiWorkerMirroredStrategy workers on localhost train one model; only the chief writes it.

Each worker is its own process with its own TF_CONFIG, as on two machines; both get the same
--out, as a shared file system would give them.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

WORKER = textwrap.dedent("""
    import json, sys
    from edgeship.train.datasets import DatasetSpec
    from edgeship.train.fit import TrainConfig, train

    spec = DatasetSpec(name="digits", image_size=(16, 16), seed=0)
    config = TrainConfig(model="dscnn", dataset=spec, out=sys.argv[1], epochs=2, batch_size=32,
                         seed=3, strategy="multiworker")
    result = train(config)
    print("RESULT " + json.dumps({"run_dir": str(result.run_dir), "chief": result.chief,
                                  "test_accuracy": result.test_accuracy,
                                  "batch_norm_sha256": result.batch_norm_sha256}), flush=True)
""")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_workers(out, script):
    workers = [f"localhost:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "CUDA_VISIBLE_DEVICES": "",
               "TF_USE_LEGACY_KERAS": "1"}
        processes.append(subprocess.Popen([sys.executable, str(script), str(out)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
    results = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=400)
            assert process.returncode == 0, output[-3000:]
            lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
            assert lines, output[-3000:]
            results.append(json.loads(lines[-1][len("RESULT "):]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return results


@pytest.mark.slow
def test_two_workers_train_one_model_the_chief_writes(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "run"
    chief, other = run_workers(out, script)

    assert chief["chief"] and not other["chief"]
    assert chief["run_dir"] == str(out)
    assert other["run_dir"] != str(out) and not os.path.exists(other["run_dir"])
    assert sorted(path.name for path in out.iterdir()) == [
        "history.json", "manifest.json", "model.keras", "training_curves.png"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["train"]["config"]["strategy"] == "multiworker"

    # Batch-norm statistics: recomputed at each epoch's end on every worker, identical on both,
    # and what the chief saved.
    assert chief["batch_norm_sha256"] == other["batch_norm_sha256"]
    assert manifest["train"]["batch_norm"]["layers"] > 0
    import tf_keras

    from edgeship.train.fit import batch_norm_statistics_sha256

    saved = tf_keras.models.load_model(out / "model.keras")
    assert batch_norm_statistics_sha256(saved) == chief["batch_norm_sha256"]
    assert chief["test_accuracy"] == other["test_accuracy"] > 0.5

    from edgeship.convert.run import ConvertConfig, run_convert

    run_convert(ConvertConfig(source=str(out), int8=True, calibration_samples=100))
    assert (out / "model_int8.tflite").stat().st_size > 0
