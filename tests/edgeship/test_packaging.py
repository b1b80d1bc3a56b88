"""train/, convert/ and runtime/ install as edgeship.* in a wheel too, not only editable."""

import os
import subprocess
import sys
import zipfile

from tests.conftest import REPO


def test_wheel_maps_the_stage_folders_and_ships_the_c_kernels(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("edgeship-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("edgeship/train/models.py", "edgeship/convert/run.py",
                   "edgeship/runtime/backends/tflm.py", "edgeship/convert/codegen_c/kernels.c"):
        assert module in names, module
    assert not any(name.startswith(("train/", "convert/", "runtime/", "tests/")) for name in names)
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    probe = subprocess.run(
        [sys.executable, "-c", "import edgeship, edgeship.train.models as m, "
         "edgeship.convert.codegen, edgeship.runtime.backends.c; print(m.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() == str(tmp_path / "site" / "edgeship" / "train" / "models.py")
