"""Activation functions as ops of their own (filled in by the op-coverage work)."""
