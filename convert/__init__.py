"""Pruning, quantization-aware training, TFLite and ONNX export, the accuracy-drop report."""

from edgeship import callable_module

callable_module(__name__, "convert")
