"""The CPU's integer SIMD features, read the way ONNX Runtime's kernels read them (CPUID).

Which int8 kernel ONNX Runtime picks on x86-64 decides whether an int8 model is computed
exactly: with VNNI (AVX512-VNNI or AVX-VNNI) the u8 x s8 dot products accumulate in 32 bits;
without it (AVX2, AVX512 without VNNI) `vpmaddubsw` adds each pair of products into a
saturating 16-bit sum. Reports record these flags so a number can be traced to its kernel.

CPUID is executed directly (a few bytes of machine code called through ctypes) on Linux
x86-64, because an emulator such as `qemu-x86_64 -cpu Haswell` answers CPUID for the CPU it
emulates while /proc/cpuinfo still describes the host. Elsewhere the flags come from
/proc/cpuinfo when there is one, and are "unknown" otherwise.
"""

import ctypes
import mmap
import platform
import sys
from functools import cache

# push rbx; mov eax, edi; mov ecx, esi; mov r8, rdx; cpuid;
# mov [r8], eax; mov [r8+4], ebx; mov [r8+8], ecx; mov [r8+12], edx; pop rbx; ret
_CPUID_CODE = bytes.fromhex("53 89f8 89f1 4989d0 0fa2 418900 41895804 41894808 4189500c 5b c3")
X86_FEATURES = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni")


def _x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def _cpuid_function():
    """A callable cpuid(leaf, subleaf) -> (eax, ebx, ecx, edx), or None where it cannot run."""
    if not (sys.platform.startswith("linux") and _x86_64()):
        return None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError, AttributeError):  # W^X policies refuse executable mappings
        return None
    page.write(_CPUID_CODE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    prototype = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32,
                                 ctypes.POINTER(ctypes.c_uint32))
    function = prototype(address)

    def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
        registers = (ctypes.c_uint32 * 4)()
        function(leaf, subleaf, registers)
        return tuple(registers)

    cpuid.page = page  # keep the code page mapped as long as the function lives
    return cpuid


def _features_from_cpuid(cpuid) -> dict[str, bool]:
    max_leaf = cpuid(0)[0]
    if max_leaf < 7:
        return {name: False for name in X86_FEATURES}
    _, ebx, ecx, _ = cpuid(7, 0)
    leaf7_sub1_eax = cpuid(7, 1)[0] if cpuid(7, 0)[0] >= 1 else 0
    return {"avx2": bool(ebx >> 5 & 1), "avx512f": bool(ebx >> 16 & 1),
            "avx512bw": bool(ebx >> 30 & 1), "avx512_vnni": bool(ecx >> 11 & 1),
            "avx_vnni": bool(leaf7_sub1_eax >> 4 & 1)}


def _proc_cpuinfo_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return None


@cache
def cpu_features() -> dict:
    """The integer SIMD features of this CPU and the int8 path ONNX Runtime takes on it.

    Returns:
        Plain JSON: "machine", "source" ("cpuid", "/proc/cpuinfo" or "unknown"), "avx2",
        "avx512" (AVX512F and BW), "vnni" (AVX512-VNNI or AVX-VNNI; None where unknown),
        and "int8_pair_sums": "saturating-int16" on x86-64 without VNNI, "exact-int32" with
        VNNI, "not-x86" or "unknown".
    """
    machine = platform.machine()
    features: dict[str, bool] | None = None
    source = "unknown"
    cpuid = _cpuid_function()
    if cpuid is not None:
        features, source = _features_from_cpuid(cpuid), "cpuid"
    elif _x86_64() and (flags := _proc_cpuinfo_flags()) is not None:
        features = {name: name in flags for name in X86_FEATURES}
        source = "/proc/cpuinfo"
    if not _x86_64():
        flags = _proc_cpuinfo_flags()
        return {"machine": machine, "source": "/proc/cpuinfo" if flags else "unknown",
                "avx2": False, "avx512": False, "vnni": False,
                "arm_dotprod": None if flags is None else "asimddp" in flags,
                "int8_pair_sums": "not-x86"}
    if features is None:
        return {"machine": machine, "source": source, "avx2": None, "avx512": None,
                "vnni": None, "int8_pair_sums": "unknown"}
    vnni = features["avx512_vnni"] or features["avx_vnni"]
    return {"machine": machine, "source": source, "avx2": features["avx2"],
            "avx512": features["avx512f"] and features["avx512bw"], "vnni": vnni,
            "avx512_vnni": features["avx512_vnni"], "avx_vnni": features["avx_vnni"],
            "int8_pair_sums": "exact-int32" if vnni else "saturating-int16"}
