"""Writing C source text: literals, names and header guards shared by codegen and embed."""

import re

import numpy as np

from edgeship.errors import UserInputError
from edgeship.quantization import C_TYPES

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# C type of each integer activation dtype generated C computes in (int16: 16x8 models).
ACTIVATION_CTYPES = {"int8": "int8_t", "int16": "int16_t"}
# C type of each dtype a model's input or output may have in firmware sources (the one table,
# edgeship.quantization.C_TYPES, that TensorInfo.ctype reads too).
IO_CTYPES = C_TYPES


def c_array_literal(values: np.ndarray, per_line: int = 24, indent: str = "    ") -> str:
    """Integers as a C initializer body, per_line values a line."""
    flat = [str(int(value)) for value in np.asarray(values).reshape(-1)]
    lines = [indent + ", ".join(flat[start:start + per_line])
             for start in range(0, len(flat), per_line)]
    return ",\n".join(lines)


def c_hex_bytes(data: bytes, per_line: int = 16, indent: str = "    ") -> str:
    """Bytes as a C initializer body in hex (0x1c, ...), per_line bytes a line."""
    return ",\n".join(indent + ", ".join(f"0x{byte:02x}" for byte in data[start:start + per_line])
                      for start in range(0, len(data), per_line))


def c_string(text: str) -> str:
    """A C string literal; non-ASCII and control characters as hex escapes."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + "".join(char if 32 <= ord(char) < 127 else f"\\x{ord(char):02x}\"\""
                         for char in escaped) + '"'


def c_float_literal(value: float) -> str:
    """A float32 value as a C float literal that reads back to the same float32 (nine
    significant digits; always with a point or exponent, as C needs before the f suffix).

    Raises:
        ValueError: an infinity or NaN, which have no literal.
    """
    single = np.float32(value)
    if not np.isfinite(single):
        raise ValueError(f"{value} has no C float literal")
    text = f"{float(single):.9g}"
    return f"{text}f" if any(mark in text for mark in ".e") else f"{text}.0f"


def c_float_array_literal(values: np.ndarray, per_line: int = 8, indent: str = "    ") -> str:
    """float32 values as a C initializer body, per_line values a line."""
    flat = [c_float_literal(value) for value in np.asarray(values, np.float32).reshape(-1)]
    lines = [indent + ", ".join(flat[start:start + per_line])
             for start in range(0, len(flat), per_line)]
    return ",\n".join(lines)


def c_io_array_literal(values: np.ndarray, per_line: int = 24, indent: str = "    ") -> str:
    """A model input's or output's values (IO_CTYPES) as a C initializer body."""
    if np.asarray(values).dtype == np.float32:
        return c_float_array_literal(values, indent=indent)
    return c_array_literal(values, per_line, indent)


def check_c_name(name: str) -> str:
    """The name itself when it is a C identifier, else UserInputError."""
    if not _IDENTIFIER.match(name or ""):
        raise UserInputError(f"--name must be a C identifier (letters, digits, _), got {name!r}")
    return name


def header_guard(file_stem: str) -> tuple[list[str], list[str]]:
    """(opening lines, closing lines) of an include guard for FILE_STEM.h."""
    macro = f"{file_stem.upper()}_H_"
    return [f"#ifndef {macro}", f"#define {macro}"], [f"#endif  /* {macro} */"]


EXTERN_C_OPEN = ["#ifdef __cplusplus", 'extern "C" {', "#endif"]
EXTERN_C_CLOSE = ["#ifdef __cplusplus", "}", "#endif"]
