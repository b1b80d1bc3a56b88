"""The phone demo: the site build, `edgeship serve-demo`, and the page in a real browser.

The browser tests open the page in headless Chromium (playwright-core from node), feed the
site's 20 real test images through window.edgeship.classify (the function the drawing pad and
the test-image picker call) and compare the page's outputs with Python on the same model file
and the same images: LiteRT (what `edgeship validate` runs) for the default LiteRT.js page,
onnxruntime for the `--runtime onnx` page.
"""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgeship.onnx_saturation import saturating_ops
from edgeship.quantization import quantize_values
from tests.helpers import REPO, run_cli

DRIVER = Path(__file__).with_name("phone_web_driver.mjs")
SCREENSHOT_COPY = REPO / "firmware_examples" / "phone_web" / "build" / "browser_test_screenshot.png"
BROWSER_TIMEOUT_S = 180
PAGE_IMAGES = 20


def _read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _drive_page(site: Path, browser_tools, tmp_path: Path, images: list, **job) -> dict:
    """Serve site, run phone_web_driver.mjs on it and return its report (no page errors)."""
    from edgeship.runtime.serve_demo import start_server

    node, chromium = browser_tools
    with start_server(site, host="127.0.0.1", port=0) as server:
        job = {"phoneWebDir": str(REPO / "firmware_examples" / "phone_web"),
               "chromium": chromium, "url": f"http://127.0.0.1:{server.port}/",
               "userDataDir": str(tmp_path / "chromium-profile"), "images": images, **job}
        job_path = tmp_path / "job.json"
        job_path.write_text(json.dumps(job))
        process = subprocess.run([node, str(DRIVER), str(job_path)], capture_output=True,
                                 text=True, timeout=BROWSER_TIMEOUT_S, check=False)
    assert process.returncode == 0, process.stderr[-4000:]
    report = json.loads(process.stdout.strip().splitlines()[-1])
    assert report["external"] == [], "the page fetched from outside localhost"
    assert report["pageErrors"] == [] and report["consoleErrors"] == []
    assert report["status"].startswith("ready")
    return report


def test_site_holds_the_run_tflite_its_preprocessing_and_real_test_images(
        phone_site, converted_run, mnist5k):
    from edgeship.runtime.web_runtimes import with_static_batch

    site = phone_site.site_dir
    config = _read_json(site / "config.json")
    manifest = _read_json(converted_run.out_dir / "manifest.json")
    dataset = manifest["train"]["dataset"]
    assert config["class_names"] == dataset["class_names"]
    assert config["preprocessing"]["scale"] == dataset["preprocessing"]["scale"]
    assert config["preprocessing"]["offset"] == dataset["preprocessing"]["offset"]
    assert config["preprocessing"]["image_size"] == dataset["preprocessing"]["image_size"]
    assert config["preprocessing"]["channels"] == dataset["preprocessing"]["channels"]
    assert config["int8_io"] == manifest["convert"]["int8_io"]
    assert config["runtime"]["kind"] == "litert" and config["runtime"]["name"] == "@litertjs/core"
    assert phone_site.model_file == config["model"]["name"] == "model_int8_xnnpack.tflite"
    for key, name in (("model", "model_int8_xnnpack.tflite"),
                      ("reference_model", "model_float.tflite")):
        run_bytes = (converted_run.out_dir / name).read_bytes()
        assert config[key]["name"] == name and config[key]["bytes"] == len(run_bytes)
        assert (site / config[key]["file"]).read_bytes() == with_static_batch(run_bytes)
    io = config["model"]["io"]
    assert io["input"]["dtype"] == "int8" and io["input"]["scale"] == pytest.approx(1 / 255)
    assert io["output"]["dtype"] == "int8" and 0 < io["output"]["scale"] < 0.1
    core = (site / config["runtime"]["module"]).read_text()
    assert core.count('dtype: "int8"') == 1, "the int8 tensor row is missing"
    for path in (config["runtime"]["wasm_dir"] + "litert_wasm_internal.wasm",
                 config["runtime"]["wasm_dir"] + "litert_wasm_compat_internal.wasm",
                 "vendor/litertjs/wasm-utils.js", "index.html", "app.js", "classifier.js",
                 "manifest.webmanifest", "service-worker.js", "icon-192.png", "icon-512.png"):
        assert (site / path).is_file(), path
    assert not (site / "vendor" / "onnxruntime-web").exists()

    images = _read_json(site / config["test_images"])["images"]
    assert len(images) == PAGE_IMAGES == phone_site.test_images
    assert sorted(image["label"] for image in images) == sorted(list(range(10)) * 2)
    scale = np.float32(config["preprocessing"]["scale"])
    for image in images:
        raw = np.asarray(image["raw"], np.float32).reshape(mnist5k.x_test.shape[1:])
        assert image["label"] == mnist5k.y_test[image["index"]]
        np.testing.assert_array_equal(raw * scale, mnist5k.x_test[image["index"]])


def test_static_batch_copy_changes_nothing_but_the_shape_signatures(converted_run):
    from edgeship.errors import UserInputError
    from edgeship.runtime.web_runtimes import with_static_batch
    from edgeship.tflite_graph import read_graph, read_model, write_model

    original = (converted_run.out_dir / "model_int8_xnnpack.tflite").read_bytes()
    fixed = with_static_batch(original)
    assert read_model(original).subgraphs[0].tensors[0].shapeSignature[0] == -1
    assert all(tensor.shapeSignature is None for tensor in read_model(fixed).subgraphs[0].tensors)
    before, after = read_graph(original), read_graph(fixed)
    assert (before.inputs, before.outputs, before.op_names()) == (
        after.inputs, after.outputs, after.op_names())
    for old, new in zip(before.tensors, after.tensors, strict=True):
        assert (old.name, old.shape, old.dtype) == (new.name, new.shape, new.dtype)
        np.testing.assert_array_equal(old.scales, new.scales)
        np.testing.assert_array_equal(old.zero_points, new.zero_points)
        assert (old.data is None) == (new.data is None)
        if old.data is not None:
            np.testing.assert_array_equal(old.data, new.data)
    model = read_model(original)
    model.subgraphs[0].tensors[0].shapeSignature[1] = -1  # an open height cannot be fixed
    with pytest.raises(UserInputError, match="batch of 1"):
        with_static_batch(write_model(model))


def test_litert_module_gets_the_int8_row_or_a_clear_error(ort_installed):
    from edgeship.errors import MissingDependencyError
    from edgeship.runtime.serve_demo import PHONE_WEB_DIR
    from edgeship.runtime.web_runtimes import add_int8_tensors

    source = (PHONE_WEB_DIR / "node_modules" / "@litertjs" / "core" / "dist" / "index.js"
              ).read_bytes()
    patched = add_int8_tensors(source).decode()
    assert 'Element type ${' in patched and patched.count("Int8Array") > source.count(b"Int8Array")
    assert len(patched) - len(source) < 200
    with pytest.raises(MissingDependencyError, match="npm ci"):
        add_int8_tensors(patched.encode())


def test_onnx_site_holds_the_int8_onnx_and_onnxruntime_web(onnx_phone_site, converted_run):
    site = onnx_phone_site.site_dir
    config = _read_json(site / "config.json")
    assert config["runtime"]["kind"] == "onnx" and config["runtime"]["name"] == "onnxruntime-web"
    for key, name in (("model", "model_int8.onnx"), ("reference_model", "model.onnx")):
        model_bytes = (site / config[key]["file"]).read_bytes()
        assert model_bytes == (converted_run.out_dir / name).read_bytes()
        assert config[key]["bytes"] == len(model_bytes)
    assert 0 < config["model"]["output_quantization"]["scale"] < 0.1
    assert (site / config["runtime"]["wasm_dir"] / "ort-wasm-simd-threaded.wasm").is_file()
    assert not (site / "vendor" / "litertjs").exists()


def test_page_sources_fetch_nothing_from_outside():
    www = REPO / "firmware_examples" / "phone_web" / "www"
    for path in www.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text, path.name
        assert "cdn" not in text.lower(), path.name


def test_an_up_to_date_site_is_not_rebuilt(phone_site, converted_run):
    from edgeship.runtime.serve_demo import ServeDemoConfig, build_site

    config = ServeDemoConfig(run_dir=str(converted_run.out_dir), out=str(phone_site.site_dir))
    again = build_site(config)
    assert not again.rebuilt and again.test_images == PAGE_IMAGES
    assert build_site(ServeDemoConfig(**{**config.__dict__, "rebuild": True})).rebuilt


def test_page_runs_the_tflite_in_litert_js_with_python_litert_outputs(
        phone_site, converted_run, mnist5k, browser_tools, tmp_path):
    from edgeship.runtime.backends import open_backend

    site = phone_site.site_dir
    config = _read_json(site / "config.json")
    images = _read_json(site / "test_images.json")["images"]
    indices = [image["index"] for image in images]
    screenshot = tmp_path / "phone_web.png"
    report = _drive_page(site, browser_tools, tmp_path, [image["raw"] for image in images],
                         screenshot=str(screenshot), draw=True, tapTestImage=3)

    assert any("XNNPACK" in line for line in report["runtimeLog"]), report["runtimeLog"]
    x = mnist5k.x_test[indices]
    results = report["results"]
    page_inputs = np.asarray([result["input"] for result in results], np.float32)
    np.testing.assert_array_equal(page_inputs, x.reshape(len(x), -1))
    page_raw = np.asarray([result["rawOutput"] for result in results], np.int32)
    page_classes = np.asarray([result["predicted"] for result in results])
    # `edgeship validate` runs the phone file on LiteRT's default (XNNPACK) kernels, natively.
    io = config["model"]["io"]
    quantized = quantize_values(x, io["input"]["scale"], io["input"]["zero_point"], "int8")
    with open_backend("litert", converted_run.out_dir / "model_int8_xnnpack.tflite") as backend:
        python_raw = np.concatenate([backend.infer_raw(image[None]) for image in quantized])
    np.testing.assert_array_equal(page_classes, python_raw.argmax(axis=1))
    quanta = np.abs(page_raw - python_raw.astype(np.int32))
    print(f"LiteRT.js (XNNPACK WebAssembly) vs native LiteRT on {len(x)} images: "
          f"{int((quanta == 0).all(axis=1).sum())} bit-identical, largest difference "
          f"{int(quanta.max())} quanta")
    # Measured bit-identical on lenet5: XNNPACK's int8 kernels requantize with the same
    # integer arithmetic in WebAssembly as on x86/ARM; anything else is a real difference.
    assert quanta.max() == 0, f"outputs differ by up to {quanta.max()} quanta"
    scores = (page_raw - io["output"]["zero_point"]) * np.float32(io["output"]["scale"])
    np.testing.assert_allclose([result["scores"] for result in results], scores, rtol=1e-6)
    assert np.mean(page_classes == mnist5k.y_test[indices]) >= 0.8
    # performance.now() is coarsened (100 us in Chromium without cross-origin isolation): a
    # tiny model's single inference may read 0, their sum may not
    assert all(result["latencyMs"] >= 0 for result in results)
    assert sum(result["latencyMs"] for result in results) > 0

    with open_backend("litert", converted_run.out_dir / "model_float.tflite") as backend:
        float_classes = backend.infer(x).argmax(axis=1)
    page_float_classes = np.asarray([result["reference"]["predicted"] for result in results])
    np.testing.assert_array_equal(page_float_classes, float_classes)
    assert all(result["reference"]["latencyMs"] >= 0 for result in results)
    assert sum(result["reference"]["latencyMs"] for result in results) > 0

    assert report["tapped"] == {"shown": config["class_names"][page_classes[3]], "selected": 1}
    assert report["drawing"]["predicted"] == config["class_names"].index("1")
    assert report["drawing"]["shown"] == "1"
    facts = report["facts"]
    assert "@litertjs/core 2.5" in facts["runtime"] and "XNNPACK" in facts["runtime"]
    assert "model_int8_xnnpack.tflite" in facts["model-file"]
    assert str(config["model"]["bytes"]) in facts["model-size"]
    assert "model_float.tflite" in facts["reference-file"]
    assert "ms" in facts["latency"] and "ms" in facts["reference-latency"]

    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.width == 412 and image.height > 900
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 20, "the screenshot looks blank"
    SCREENSHOT_COPY.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, SCREENSHOT_COPY)
    print(f"phone demo screenshot: {SCREENSHOT_COPY}")


def test_onnx_page_predictions_equal_python_onnxruntime(
        onnx_phone_site, converted_run, mnist5k, browser_tools, tmp_path):
    from edgeship.runtime.backends import open_backend

    site = onnx_phone_site.site_dir
    config = _read_json(site / "config.json")
    images = _read_json(site / "test_images.json")["images"]
    indices = [image["index"] for image in images]
    report = _drive_page(site, browser_tools, tmp_path, [image["raw"] for image in images])
    x = mnist5k.x_test[indices]
    page_scores = np.asarray([result["scores"] for result in report["results"]], np.float32)
    page_classes = np.asarray([result["predicted"] for result in report["results"]])
    with open_backend("onnxruntime", converted_run.out_dir / "model_int8.onnx") as backend:
        python_scores = backend.infer(x)
    np.testing.assert_array_equal(page_classes, python_scores.argmax(axis=1))
    quantum = config["model"]["output_quantization"]["scale"]
    # WASM and Python's ORT compute the file's integers exactly on any CPU only because no
    # 16-bit pair sum can saturate (on x86-64 without VNNI, 8-bit weights differed by 36 quanta).
    assert saturating_ops(converted_run.out_dir / "model_int8.onnx") == ()
    assert np.abs(page_scores - python_scores).max() <= quantum * 1.01
    assert all(result["reference"]["latencyMs"] > 0 for result in report["results"])
    assert "onnxruntime-web" in report["facts"]["runtime"]
    assert "model_int8.onnx" in report["facts"]["model-file"]
    assert "model.onnx" in report["facts"]["reference-file"]


def test_serve_demo_cli_serves_the_site_until_interrupted(converted_run, ort_installed,
                                                           tmp_path):
    site = tmp_path / "site"
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeship.cli", "serve-demo", str(converted_run.out_dir),
         "--port", "0", "--out", str(site), "--test-images", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout],
                     daemon=True).start()
    try:
        url, seen, deadline = None, [], time.monotonic() + 120
        while url is None and time.monotonic() < deadline and process.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            if line.startswith("serving the phone demo at "):
                url = line.split(" at ", 1)[1].split()[0]
        assert url is not None, "".join(seen)
        assert url.startswith("http://localhost:")
        url = url.replace("localhost", "127.0.0.1")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"edgeship phone demo" in response.read()
        with urllib.request.urlopen(url + "config.json", timeout=10) as response:
            served = json.loads(response.read())
        assert served["model"]["name"] == "model_int8_xnnpack.tflite"
        assert served["runtime"]["kind"] == "litert"
        assert served["test_image_count"] == 2
        wasm_url = url + served["runtime"]["wasm_dir"] + "litert_wasm_internal.wasm"
        with urllib.request.urlopen(wasm_url, timeout=10) as response:
            assert response.headers["Content-Type"] == "application/wasm"
            assert response.read(4) == b"\0asm"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, process.stderr.read()


def test_serve_demo_without_the_runtime_model_exits_2(trained_run, tmp_path):
    run_dir = shutil.copytree(trained_run.run_dir, tmp_path / "run")
    for runtime, missing in (("litert", "no model_int8_xnnpack.tflite or model_int8.tflite"),
                             ("onnx", "no model_int8.onnx")):
        result = run_cli("serve-demo", run_dir, "--build-only", "--runtime", runtime)
        assert result.returncode == 2
        assert missing in result.stderr and "edgeship convert" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (run_dir / "phone_web").exists()
    result = run_cli("serve-demo", run_dir, "--build-only", "--runtime", "tfjs")
    assert result.returncode == 2 and "litert" in result.stderr


def test_serve_demo_on_a_busy_port_exits_2(phone_site, converted_run):
    from edgeship.runtime.serve_demo import start_server

    with start_server(phone_site.site_dir, port=0) as server:
        result = run_cli("serve-demo", converted_run.out_dir, "--out", phone_site.site_dir,
                         "--port", server.port)
    assert result.returncode == 2
    assert f"port {server.port}" in result.stderr and "in use" in result.stderr


def test_missing_npm_packages_are_one_clear_error(converted_run, tmp_path):
    from edgeship.errors import MissingDependencyError
    from edgeship.runtime.serve_demo import PHONE_WEB_DIR, ServeDemoConfig, build_site

    web_dir = tmp_path / "phone_web"
    shutil.copytree(PHONE_WEB_DIR / "www", web_dir / "www")
    with pytest.raises(MissingDependencyError, match="npm ci"):
        build_site(ServeDemoConfig(run_dir=str(converted_run.out_dir), out=str(tmp_path / "site"),
                                   web_dir=str(web_dir)))
