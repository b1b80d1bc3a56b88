"""The dsp kernel variant: edgeship's kernels for Cortex-M cores with the DSP extension."""

from edgeship.convert.codegen.kernels.variant import KernelVariant
from edgeship.convert.codegen.lowering import LoweredOp
from edgeship.convert.codegen.lowering.sparse import SparseRule, sparsify

DSP_RULE = SparseRule(0.25, "dsp dense ~1.3 cycles/MAC vs sparse ~4.5 per entry per two "
                            "pixels; and sparse bytes < dense")


def specialize(op: LoweredOp) -> LoweredOp:
    return sparsify(op, DSP_RULE) or op


DSP = KernelVariant("dsp", "dual 16-bit MACs (ACLE __smlad, __sxtb16) for Cortex-M4/M7/M33; "
                    "plain C where the core lacks them", fallback="portable",
                    specialize=specialize)
