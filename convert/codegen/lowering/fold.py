"""Constant folding: shape arithmetic evaluated at generation time."""
