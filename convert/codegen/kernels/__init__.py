"""Kernel variants: which C computes each kernel family, chosen per target at generation.

A lowered op names its kernel family ("conv_2d") and its arguments; a KernelVariant turns
that into the C call and supplies the C source of the families a model uses. Each variant's
sources are package data in kernels/<variant>/<family>.c, one file per family, starting
(after any leading comment) with the line `/* @section FAMILY [needs OTHER...] */`.

The interface a variant may extend (kernels/variant.py):
- `specialize(op) -> op`: run on every lowered op before memory planning; may swap the kernel
  family, its arguments and constants (weights re-laid out at generation time, see
  LoweredOp.linear) and ask for a scratch buffer (LoweredOp.scratch_bytes with a ScratchArg
  argument, planned inside the activation buffer, live during that op only).
- `fallback`: the variant whose C supplies the families this one has no file for.
- `prefix`: the prefix of its kernel functions.

Variants:
- "portable": TFLite's reference integer arithmetic in plain C99, any CPU.
- "dsp": edgeship's kernels for Cortex-M cores with the DSP extension (kernels/dsp_variant.py).
- "cmsis-nn": calls Arm's CMSIS-NN (CodegenConfig.cmsis_nn names it; kernels/cmsis_nn_variant.py).
A variant module defines its KernelVariant and is listed in _VARIANT_MODULES below.

"auto" (CodegenConfig.kernels) resolves per target: dsp on cores with the DSP extension
(DSP_CORES), portable otherwise or when no target is given.
"""

from importlib import import_module

from edgeship.convert.codegen.kernels.variant import PORTABLE, KernelVariant

# DSP_CORES: the cores whose instruction set has the DSP extension (SMLAD, SXTB16...), where
# `auto` picks dsp; each an edgeship.targets.Target with dsp=True, shared with profile.
from edgeship.targets import DSP_CORES

# Module (under kernels/) -> the name of its KernelVariant.
_VARIANT_MODULES = {"dsp_variant": "DSP", "cmsis_nn_variant": "CMSIS_NN"}

KERNEL_VARIANTS: dict[str, KernelVariant] = {"portable": PORTABLE}
for _module, _attribute in _VARIANT_MODULES.items():
    _variant = getattr(import_module(f"{__name__}.{_module}"), _attribute)
    KERNEL_VARIANTS[_variant.name] = _variant

KERNEL_CHOICES = ("auto", *KERNEL_VARIANTS)


def resolve_kernels(kernels: str, target: str | None) -> str:
    """The variant `kernels` names; for "auto", dsp on a DSP_CORES target, else portable."""
    if kernels != "auto":
        return kernel_variant(kernels).name
    return "dsp" if target in DSP_CORES and "dsp" in KERNEL_VARIANTS else "portable"


def kernel_variant(name: str) -> KernelVariant:
    """The registered variant called name (ValueError naming the known ones otherwise)."""
    if name not in KERNEL_VARIANTS:
        raise ValueError(f"unknown kernel variant {name!r}; known: {', '.join(KERNEL_VARIANTS)}")
    return KERNEL_VARIANTS[name]


__all__ = ["DSP_CORES", "KERNEL_CHOICES", "KERNEL_VARIANTS", "KernelVariant", "kernel_variant",
           "resolve_kernels"]
