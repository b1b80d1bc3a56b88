"""Build the profile firmware: the generated C of a model, compiled for one core and linked
into the bare-metal harness (harness/harness.c, harness/link.ld).

The generated NAME.c calls EDGESHIP_OP_HOOK(i) before op i and EDGESHIP_OP_HOOK(n_ops) after
the last; the build defines it as a call of the harness's edgeship_op_boundary, whose address
the emulator watches. Sources generated before codegen emitted the hook get it inserted here,
before each `/* op N: ... */` line of NAME_run.
"""

import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgeship.convert.c_source import IO_CTYPES
from edgeship.errors import MissingDependencyError, ToolFailureError
from edgeship.profile.targets import Target

MODEL_NAME = "model"
OPTIMIZATION = "-O2"
COMMON_FLAGS = ("-std=c99", OPTIMIZATION, "-ffunction-sections", "-fdata-sections",
                "-ffreestanding", "-fno-common")
HOOK_DEFINE = "-DEDGESHIP_OP_HOOK(i)=edgeship_op_boundary(i)"
_OP_LINE = re.compile(r"^(\s*)/\* op (\d+): ")


@dataclass(frozen=True)
class Firmware:
    """A linked profile program.

    Attributes:
        elf: the ELF file.
        compile_flags: every flag the model and harness were compiled with.
        link_flags: the link flags.
        compiler: `arm-none-eabi-gcc --version`'s first line.
        hook_inserted: True when the hook calls were inserted here (older generated C).
        harness_flash: bytes of flash the harness itself takes (vector table, start-up).
    """

    elf: Path
    compile_flags: tuple[str, ...]
    link_flags: tuple[str, ...]
    compiler: str
    hook_inserted: bool
    harness_flash: int


def harness_file(name: str) -> Path:
    """Path of a harness file shipped as package data."""
    return Path(str(resources.files("edgeship.profile").joinpath("harness", name)))


def insert_op_hooks(source: str, name: str = MODEL_NAME) -> str:
    """NAME.c with EDGESHIP_OP_HOOK calls before every op of NAME_run and after the last.

    Ops without code (a RESHAPE that aliases its input) get their boundary too, so every op
    of the graph has a row. Source that already calls the hook is returned unchanged.
    """
    if "EDGESHIP_OP_HOOK(" in source:
        return source
    lines = source.splitlines()
    start = next((index for index, line in enumerate(lines)
                  if line.startswith(f"int {name}_run(")), None)
    if start is None:
        raise ToolFailureError(f"the generated {name}.c has no {name}_run function")
    out, count, inside = lines[:start], 0, False
    for line in lines[start:]:
        match = _OP_LINE.match(line)
        if match:
            inside = True
            out.append(f"{match.group(1)}EDGESHIP_OP_HOOK({match.group(2)});")
            count = int(match.group(2)) + 1
        elif inside and line.strip() == "return 0;":
            out.append(f"  EDGESHIP_OP_HOOK({count});")
            inside = False
        out.append(line)
    prologue = ["#ifndef EDGESHIP_OP_HOOK", "#define EDGESHIP_OP_HOOK(i) ((void)0)", "#endif"]
    return "\n".join(prologue + out) + "\n"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingDependencyError(
            f"{name} is needed to build the profile firmware; install the Arm GNU toolchain "
            "(Debian/Ubuntu: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi; "
            "scripts/setup.sh does it)")
    return path


def _run(command: list[str], what: str) -> str:
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        diagnostic = next((line for line in completed.stderr.splitlines() if "error" in line),
                          completed.stderr.strip()[-300:])
        raise ToolFailureError(f"arm-none-eabi-gcc failed to {what}: {diagnostic}")
    return completed.stdout


def section_bytes(elf_path: Path, names: tuple[str, ...]) -> int:
    """Sum of the sizes of an ELF's (or object's) sections whose name starts with one of names."""
    from edgeship.deps import require

    elffile = require("elftools.elf.elffile")
    with open(elf_path, "rb") as handle:
        elf = elffile.ELFFile(handle)
        return sum(section["sh_size"] for section in elf.iter_sections()
                   if section["sh_flags"] & 2 and section.name.startswith(names))


def build_firmware(source_dir: Path, target: Target, work: Path,
                   library_sources: tuple[Path, ...] = (),
                   include_dirs: tuple[Path, ...] = (),
                   io_types: tuple[str, str] = ("int8", "int8")) -> Firmware:
    """Compile the generated model.c and the harness for the target and link them.

    Args:
        source_dir: folder with the generated model.h and model.c.
        target: the core.
        work: folder for the objects and the ELF.
        library_sources: other C files the generated code calls (CodegenResult.c_sources:
            CMSIS-NN's), compiled with the same flags and linked in.
        include_dirs: their include folders (CodegenResult.include_dirs).
        io_types: the model's input and output element types (c_source.IO_CTYPES: "int8",
            "int16", "uint8" or "float32").

    Raises:
        MissingDependencyError: no arm-none-eabi-gcc.
        ToolFailureError: the compiler or linker failed on generated code.
    """
    gcc = _tool("arm-none-eabi-gcc")
    model_source = (source_dir / f"{MODEL_NAME}.c").read_text()
    hooked = insert_op_hooks(model_source)
    build_source = work / f"{MODEL_NAME}_profiled.c"
    build_source.write_text(hooked)
    compile_flags = (*target.cpu_flags, *COMMON_FLAGS)
    model_object, harness_object = work / "model.o", work / "harness.o"
    includes = [f"-I{folder}" for folder in include_dirs]
    _run([gcc, *compile_flags, HOOK_DEFINE, "-include", str(harness_file("hook.h")),
          f"-I{source_dir}", *includes, "-c", str(build_source), "-o", str(model_object)],
         "compile the generated model")
    # Libraries build as their own projects build them: -ffreestanding would stop gcc from
    # inlining the 4-byte memcpy CMSIS-NN reads words with, turning each into a call.
    library_flags = [flag for flag in compile_flags if flag != "-ffreestanding"]
    library_objects = []
    for position, source in enumerate(library_sources):
        library_objects.append(work / f"library{position}_{source.stem}.o")
        _run([gcc, *library_flags, *includes, "-c", str(source), "-o",
              str(library_objects[-1])], f"compile {source.name}")
    io_defines = [f"-DEDGESHIP_{role}_T={IO_CTYPES[dtype]}"
                  for role, dtype in zip(("INPUT", "OUTPUT"), io_types)]
    _run([gcc, *compile_flags, *io_defines, f"-I{source_dir}", "-c",
          str(harness_file("harness.c")), "-o", str(harness_object)],
         "compile the profile harness")
    link_flags = (*target.cpu_flags, "-nostartfiles", "--specs=nano.specs",
                  "--specs=nosys.specs", "-Wl,--gc-sections", "-T", "link.ld")
    elf = work / "profile.elf"
    _run([gcc, *link_flags[:-1], str(harness_file("link.ld")), str(harness_object),
          str(model_object), *map(str, library_objects), "-o", str(elf)],
         "link the profile firmware")
    version = subprocess.run([gcc, "--version"], capture_output=True, text=True,
                             check=False).stdout.splitlines()
    harness_flash = section_bytes(harness_object, (".text", ".rodata", ".vectors", ".data"))
    return Firmware(elf=elf, compile_flags=(*compile_flags, HOOK_DEFINE), link_flags=link_flags,
                    compiler=version[0] if version else "arm-none-eabi-gcc",
                    hook_inserted=hooked != model_source, harness_flash=harness_flash)
