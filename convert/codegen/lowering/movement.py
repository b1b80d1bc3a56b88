"""Ops that move values without arithmetic (filled in by the op-coverage work)."""
