"""Datasets with recorded preprocessing, the tutorial model zoo, and training."""

from edgeship import callable_module

callable_module(__name__, "train")
