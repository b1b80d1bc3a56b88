"""train/, convert/ and runtime/ install as edgeship.* in a wheel too, not only editable."""

import os
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import REPO


def test_wheel_maps_the_stage_folders_and_ships_the_c_kernels(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("edgeship-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("edgeship/train/models.py", "edgeship/convert/run.py",
                   "edgeship/runtime/backends/tflm.py", "edgeship/convert/codegen/kernels/portable/conv_2d.c"):
        assert module in names, module
    assert not any(name.startswith(("train/", "convert/", "runtime/", "tests/")) for name in names)
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    probe = subprocess.run(
        [sys.executable, "-c", "import edgeship, edgeship.train.models as m, "
         "edgeship.convert.codegen, edgeship.c_backend, edgeship.api, edgeship.cli; "
         "print(m.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() == str(tmp_path / "site" / "edgeship" / "train" / "models.py")


def test_serve_demo_builds_its_page_from_the_installed_wheel(tmp_path, converted_run):
    """The page's sources ship in the wheel (edgeship/phone_web); node_modules comes from
    --node-modules or $EDGESHIP_NODE_MODULES, so serve-demo needs no checkout."""
    from edgeship.runtime.serve_demo import ORT_FILES, ORT_PACKAGE

    node_modules = REPO / "firmware_examples" / "phone_web" / "node_modules"
    if not all((node_modules / ORT_PACKAGE / "dist" / name).is_file() for name in ORT_FILES):
        pytest.skip(f"{ORT_PACKAGE} is not installed: run `npm ci` in firmware_examples/phone_web")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True,
                           timeout=300, check=False)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("edgeship-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"edgeship/phone_web/www/index.html", "edgeship/phone_web/www/app.js",
            "edgeship/phone_web/package-lock.json"} <= names
    assert not any("node_modules" in name for name in names)
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    command = [sys.executable, "-c", "import sys; from edgeship.cli import console_main; "
               "sys.exit(console_main())", "serve-demo", str(converted_run.out_dir),
               "--build-only", "--out", str(tmp_path / "page")]
    env = {key: value for key, value in os.environ.items()
           if key not in ("EDGESHIP_NODE_MODULES", "EDGESHIP_PHONE_WEB_DIR")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    missing = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path,
                             timeout=300, check=False)
    assert missing.returncode == 2, missing.stderr[-2000:]
    assert "--node-modules" in missing.stderr and "Traceback" not in missing.stderr
    built = subprocess.run(command + ["--node-modules", str(node_modules)], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    page = tmp_path / "page"
    installed_www = tmp_path / "site" / "edgeship" / "phone_web" / "www"
    assert (page / "index.html").read_bytes() == (installed_www / "index.html").read_bytes()
    assert list((page / "model").glob("model_int8*.tflite"))  # LiteRT.js, the default
    onnx_command = [*command[:-1], str(tmp_path / "onnx_page"), "--runtime", "onnx",
                    "--node-modules", str(node_modules)]
    built = subprocess.run(onnx_command, capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    onnx_page = tmp_path / "onnx_page"
    assert (onnx_page / "model" / "model_int8.onnx").is_file()
    assert all((onnx_page / "vendor" / ORT_PACKAGE / name).is_file() for name in ORT_FILES)
