"""ONNX Runtime on an emulated CPU: the int8 kernels of a machine this one is not.

`qemu-x86_64 -cpu Haswell` (Debian's qemu-user, QEMU 7.2+ emulates AVX2) runs this Python
with a CPU that has AVX2 but no VNNI, so ONNX Runtime picks its saturating u8 x s8 kernels
there, whatever the host has. Tests and benchmarks use it to measure what an AVX2-only
machine computes; the child reports the CPU features it saw, which proves the emulation.

    python -m edgeship.runtime.emulated_cpu IMAGES.npy MODEL.onnx OUT.npy [MODEL OUT ...]
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AVX2_ONLY_CPU = "Haswell"


@dataclass(frozen=True)
class EmulatedRun:
    """What ONNX Runtime computed on the emulated CPU.

    Attributes:
        cpu_model: the QEMU CPU model.
        features: edgeship.cpu_features.cpu_features() as seen inside the emulation.
        outputs: each model path's outputs on the images.
    """

    cpu_model: str
    features: dict
    outputs: dict


def qemu_path() -> str | None:
    """qemu-x86_64 where this host is x86-64 Linux and has it, else None."""
    if not sys.platform.startswith("linux") or os.uname().machine != "x86_64":
        return None
    return shutil.which("qemu-x86_64")


def run_onnx_emulated(models: list[Path], images: np.ndarray, cpu_model: str = AVX2_ONLY_CPU,
                      timeout_s: float = 600) -> EmulatedRun:
    """Run each .onnx model on `images` with ONNX Runtime (one thread) under QEMU.

    Raises:
        RuntimeError: qemu-x86_64 is missing, or the emulated run failed.
    """
    qemu = qemu_path()
    if qemu is None:
        raise RuntimeError("qemu-x86_64 is not installed (Debian/Ubuntu: apt-get install "
                           "qemu-user) or this is not x86-64 Linux")
    with tempfile.TemporaryDirectory(prefix="edgeship-emulated-") as work:
        work = Path(work)
        np.save(work / "images.npy", np.ascontiguousarray(images, np.float32))
        arguments = [str(work / "images.npy")]
        for index, model in enumerate(models):
            arguments += [str(model), str(work / f"out{index}.npy")]
        child = subprocess.run([qemu, "-cpu", cpu_model, sys.executable, "-m",
                                "edgeship.runtime.emulated_cpu", *arguments],
                               capture_output=True, text=True, timeout=timeout_s, check=False)
        if child.returncode != 0:
            raise RuntimeError(f"ONNX Runtime under qemu-x86_64 -cpu {cpu_model} failed: "
                               f"{child.stderr[-2000:]}")
        features = json.loads(child.stdout.strip().splitlines()[-1])
        outputs = {Path(model): np.load(work / f"out{index}.npy")
                   for index, model in enumerate(models)}
    return EmulatedRun(cpu_model=cpu_model, features=features, outputs=outputs)


def main(argv: list[str]) -> int:
    from edgeship.cpu_features import cpu_features
    from edgeship.runtime.backends import open_backend

    images = np.load(argv[0])
    for model, out in zip(argv[1::2], argv[2::2]):
        with open_backend("onnxruntime", Path(model)) as backend:
            np.save(out, backend.infer(images))
    print(json.dumps(cpu_features()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
