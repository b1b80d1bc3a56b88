"""Per-layer quantization error, for `edgeship inspect`: defined in edgeship.layer_error (the core,
so convert's --activations auto ranks layers the same way without importing the runtime stage)."""

from edgeship.layer_error import LayerError, layer_errors, sqnr_db

__all__ = ["LayerError", "layer_errors", "sqnr_db"]
