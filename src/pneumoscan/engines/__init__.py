"""Inference engines: run a model file's network on prepared batches (PyTorch or onnxruntime)."""
