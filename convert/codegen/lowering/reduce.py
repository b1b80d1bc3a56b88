"""Reductions (filled in by the op-coverage work)."""
