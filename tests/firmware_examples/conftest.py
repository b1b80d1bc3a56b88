"""The phone demo's site, built once per session from the session's converted run.

Tests that need Node.js, the page's npm packages or Chromium skip with the reason when one is
missing (scripts/setup.sh installs them), never pass without running.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from edgeship.errors import MissingDependencyError
from edgeship.runtime.serve_demo import PHONE_WEB_DIR
from edgeship.runtime.web_runtimes import RUNTIMES

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
MIN_NODE_MAJOR = 20  # playwright-core's engines field


def _npm_package_installed(name: str) -> bool:
    return (PHONE_WEB_DIR / "node_modules" / name / "package.json").is_file()


@pytest.fixture(scope="session")
def ort_installed():
    """Skip unless both web runtimes' files (LiteRT.js, onnxruntime-web) are in
    firmware_examples/phone_web/node_modules."""
    for runtime in RUNTIMES.values():
        try:
            runtime.checked_vendor_files(PHONE_WEB_DIR / "node_modules")
        except MissingDependencyError as error:
            pytest.skip(f"{error} (scripts/setup.sh runs npm ci when node and npm exist)")


@pytest.fixture(scope="session")
def browser_tools(ort_installed):
    """(node, chromium) paths; skip with the reason when either or playwright-core is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the browser test drives Chromium with "
                    "playwright-core from node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30,
                             check=False).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < MIN_NODE_MAJOR:
        pytest.skip(f"Node.js {version} is too old: playwright-core needs {MIN_NODE_MAJOR}+")
    if not _npm_package_installed("playwright-core"):
        pytest.skip(f"playwright-core is not installed: run `npm ci` in {PHONE_WEB_DIR}")
    chromium = next((path for path in CHROMIUM_PATHS if Path(path).is_file()), None)
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; scripts/setup.sh "
                    "does as root)")
    return node, chromium


@pytest.fixture(scope="session")
def phone_site(tmp_path_factory, converted_run, ort_installed):
    """The site built for the session's converted run (a SiteBuild), default runtime (LiteRT.js)."""
    from edgeship.runtime.serve_demo import ServeDemoConfig, build_site

    site_dir = tmp_path_factory.mktemp("phone_web") / "site"
    return build_site(ServeDemoConfig(run_dir=str(converted_run.out_dir), out=str(site_dir)))


@pytest.fixture(scope="session")
def onnx_phone_site(tmp_path_factory, converted_run, ort_installed):
    """The site built for the session's converted run with `--runtime onnx` (a SiteBuild)."""
    from edgeship.runtime.serve_demo import ServeDemoConfig, build_site

    site_dir = tmp_path_factory.mktemp("phone_web_onnx") / "site"
    return build_site(ServeDemoConfig(run_dir=str(converted_run.out_dir), runtime="onnx",
                                      out=str(site_dir)))
