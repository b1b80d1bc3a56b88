"""The phone demo: the site build, `edgeship serve-demo`, and the page in a real browser.

The browser test opens the page in headless Chromium (playwright-core from node), feeds 20
real test images through window.edgeship.classify (the function the drawing pad and the
test-image picker call) and compares the page's outputs with Python's onnxruntime on the
same model file and the same images.
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
from tests.conftest import REPO, run_cli

DRIVER = Path(__file__).with_name("phone_web_driver.mjs")
SCREENSHOT_COPY = REPO / "firmware_examples" / "phone_web" / "build" / "browser_test_screenshot.png"
BROWSER_TIMEOUT_S = 180
PAGE_IMAGES = 20


def _read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def test_site_holds_the_run_model_its_preprocessing_and_real_test_images(
        phone_site, converted_run, mnist5k):
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
    model_bytes = (site / config["model"]["file"]).read_bytes()
    assert model_bytes == (converted_run.out_dir / "model_int8.onnx").read_bytes()
    assert config["model"]["bytes"] == len(model_bytes)
    assert 0 < config["model"]["output_quantization"]["scale"] < 0.1
    for path in (config["runtime"]["module"], config["runtime"]["wasm_dir"]
                 + "ort-wasm-simd-threaded.wasm", "index.html", "app.js", "classifier.js",
                 "manifest.webmanifest", "service-worker.js", "icon-192.png", "icon-512.png"):
        assert (site / path).is_file(), path

    images = _read_json(site / config["test_images"])["images"]
    assert len(images) == PAGE_IMAGES == phone_site.test_images
    assert sorted(image["label"] for image in images) == sorted(list(range(10)) * 2)
    scale = np.float32(config["preprocessing"]["scale"])
    for image in images:
        raw = np.asarray(image["raw"], np.float32).reshape(mnist5k.x_test.shape[1:])
        assert image["label"] == mnist5k.y_test[image["index"]]
        np.testing.assert_array_equal(raw * scale, mnist5k.x_test[image["index"]])


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


def test_page_predictions_equal_python_in_headless_chromium(
        phone_site, converted_run, mnist5k, browser_tools, tmp_path):
    from edgeship.runtime.backends import open_backend
    from edgeship.runtime.serve_demo import start_server

    node, chromium = browser_tools
    site = phone_site.site_dir
    config = _read_json(site / "config.json")
    images = _read_json(site / "test_images.json")["images"]
    indices = [image["index"] for image in images]
    screenshot = tmp_path / "phone_web.png"
    with start_server(site, host="127.0.0.1", port=0) as server:
        job = {"phoneWebDir": str(REPO / "firmware_examples" / "phone_web"),
               "chromium": chromium, "url": f"http://127.0.0.1:{server.port}/",
               "userDataDir": str(tmp_path / "chromium-profile"),
               "screenshot": str(screenshot), "images": [image["raw"] for image in images],
               "draw": True, "tapTestImage": 3}
        job_path = tmp_path / "job.json"
        job_path.write_text(json.dumps(job))
        process = subprocess.run([node, str(DRIVER), str(job_path)], capture_output=True,
                                 text=True, timeout=BROWSER_TIMEOUT_S, check=False)
    assert process.returncode == 0, process.stderr[-4000:]
    report = json.loads(process.stdout.strip().splitlines()[-1])
    assert report["external"] == [], "the page fetched from outside localhost"
    assert report["pageErrors"] == [] and report["consoleErrors"] == []
    assert report["status"].startswith("ready")

    x = mnist5k.x_test[indices]
    page_inputs = np.asarray([result["input"] for result in report["results"]], np.float32)
    np.testing.assert_array_equal(page_inputs, x.reshape(len(x), -1))
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
    with open_backend("litert", converted_run.out_dir / "model_int8.tflite") as backend:
        tflite_classes = backend.infer(x).argmax(axis=1)
    assert np.mean(page_classes == tflite_classes) >= 0.95
    assert np.mean(page_classes == mnist5k.y_test[indices]) >= 0.8
    assert all(result["latencyMs"] > 0 for result in report["results"])

    assert report["tapped"] == {"shown": config["class_names"][page_classes[3]], "selected": 1}
    assert report["drawing"]["predicted"] == config["class_names"].index("1")
    assert report["drawing"]["shown"] == "1"
    assert "onnxruntime-web" in report["facts"]["runtime"]
    assert "model_int8.onnx" in report["facts"]["model-file"]
    assert str(config["model"]["bytes"]) in report["facts"]["model-size"]
    assert "ms" in report["facts"]["latency"]

    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.width == 412 and image.height > 900
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 20, "the screenshot looks blank"
    SCREENSHOT_COPY.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, SCREENSHOT_COPY)
    print(f"phone demo screenshot: {SCREENSHOT_COPY}")


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
        assert served["model"]["name"] == "model_int8.onnx"
        assert served["test_image_count"] == 2
        wasm_url = url + served["runtime"]["wasm_dir"] + "ort-wasm-simd-threaded.wasm"
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


def test_serve_demo_without_an_int8_onnx_model_exits_2(trained_run, tmp_path):
    run_dir = shutil.copytree(trained_run.run_dir, tmp_path / "run")
    result = run_cli("serve-demo", run_dir, "--build-only")
    assert result.returncode == 2
    assert "no model_int8.onnx" in result.stderr and "edgeship convert" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (run_dir / "phone_web").exists()


def test_serve_demo_on_a_busy_port_exits_2(phone_site, converted_run):
    from edgeship.runtime.serve_demo import start_server

    with start_server(phone_site.site_dir, port=0) as server:
        result = run_cli("serve-demo", converted_run.out_dir, "--out", phone_site.site_dir,
                         "--port", server.port)
    assert result.returncode == 2
    assert f"port {server.port}" in result.stderr and "in use" in result.stderr


def test_missing_npm_packages_are_one_clear_error(converted_run, tmp_path):
    from edgeship.runtime.serve_demo import PHONE_WEB_DIR, ServeDemoConfig, build_site

    from edgeship.errors import MissingDependencyError

    web_dir = tmp_path / "phone_web"
    shutil.copytree(PHONE_WEB_DIR / "www", web_dir / "www")
    with pytest.raises(MissingDependencyError, match="npm ci"):
        build_site(ServeDemoConfig(run_dir=str(converted_run.out_dir), out=str(tmp_path / "site"),
                                   web_dir=str(web_dir)))
