"""Datasets with recorded preprocessing, the tutorial model zoo, and training."""
