"""Pruning, quantization-aware training, TFLite and ONNX export, the accuracy-drop report."""
